"""Property tests of the loader: any mapping or override gives a Problem or a ProblemError, nothing else."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import bsde
from bsde.equations import EQUATIONS
from bsde.problem import SECTIONS, parse_override
from bsde.settings import SolverSettings

KEYS = sorted({name for model in EQUATIONS.values() for name in model.model_fields}
              | set(SolverSettings.model_fields) | {"value", "source", "stderr", "boundaries", "values"})
NAMES = st.sampled_from([*KEYS, *SECTIONS, "kind", "bogus"]) | st.text(max_size=6)
SCALARS = (st.none() | st.booleans() | st.integers(-10**20, 10**20) | st.floats(allow_nan=True, allow_infinity=True)
           | st.text(max_size=8) | st.sampled_from([*EQUATIONS, "float32", "float64"]))
VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(NAMES, inner, max_size=4),
                      max_leaves=10)
EQUATION = st.fixed_dictionaries({"kind": st.sampled_from([*EQUATIONS, "nope"])},
                                  optional={k: VALUES for k in ("dim", "x0", "total_time", "vol", "correlation", "lam")})
RAW = st.dictionaries(st.sampled_from([*SECTIONS, "other"]), VALUES, max_size=4) | st.fixed_dictionaries(
    {"equation": EQUATION}, optional={"solver": st.dictionaries(NAMES, VALUES, max_size=4), "presets": VALUES})
FAST = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def outcome(build: Any) -> None:
    try:
        problem = build()
    except bsde.ProblemError as exc:
        message = str(exc)
        assert message and "\n" not in message
        return
    assert isinstance(problem, bsde.Problem)
    assert problem.equation.dim >= 1 and problem.solver.batch_size >= 2


@FAST
@given(RAW)
def test_problem_from_dict_returns_problem_or_problem_error(raw: dict[str, Any]) -> None:
    outcome(lambda: bsde.problem_from_dict(raw))


@FAST
@given(st.dictionaries(st.sampled_from([f"{s}.{k}" for s in SECTIONS for k in KEYS[:12]]) | st.text(max_size=12),
                       VALUES, max_size=3))
def test_overrides_return_problem_or_problem_error(overrides: dict[str, Any]) -> None:
    outcome(lambda: bsde.load_problem("hjb", overrides))


@FAST
@given(st.text(max_size=30))
def test_set_text_parses_or_raises_problem_error(text: str) -> None:
    outcome(lambda: bsde.load_problem("max_call", dict([parse_override(text)])))
