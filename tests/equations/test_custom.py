"""kind: custom: a problem written in YAML behaves as the same problem written in Python."""

from __future__ import annotations

import json
import math
import pickle

import numpy as np
import pytest
import torch

import bsde
from bsde.equations.custom import Custom
from bsde.equations.functions import CustomEquation
from bsde.probing import verify_flags
from bsde.problem import problem_from_dict
from bsde.processes import GBM, BrownianMotion, Diffusion

SQRT2 = repr(math.sqrt(2.0))


def custom(equation: dict, solver: dict | None = None) -> bsde.Problem:
    return problem_from_dict({"equation": {"kind": "custom", **equation}, "solver": solver or {}})


def test_basket_put_file():
    problem = bsde.load_problem("basket_put")
    eq = problem.equation
    assert isinstance(eq, Custom) and isinstance(eq, CustomEquation)
    assert eq.dim == 5 and eq.x_start == (100.0,) * 5
    assert isinstance(eq.process, GBM) and eq.process.full_correlation
    assert eq.process.correlation_entry(1, 2) == 0.4 and eq.process.vol == (0.1, 0.2, 0.3, 0.25, 0.15)
    assert eq.driver_is_linear and eq.discount_rate == pytest.approx(0.05)
    assert eq.driver_uses_y and not eq.driver_uses_z and eq.z_hessian is None and not eq.controllable
    x = torch.tensor(np.random.default_rng(0).uniform(60, 140, size=(32, 5)))
    torch.testing.assert_close(eq.terminal(x), (100.0 - x.mean(-1)).clamp(min=0.0))
    y = torch.randn(32, dtype=torch.float64)
    torch.testing.assert_close(eq.driver(0.5, x, y, torch.zeros_like(x)), -0.05 * y)
    verify_flags(eq)  # probing the compiled driver agrees with what the syntax tree said


def test_shown_as_its_yaml_and_read_back():
    problem = bsde.load_problem("basket_put", {"equation.params.K": 90.0})
    shown = problem.to_dict()["equation"]
    assert list(shown) == ["kind", "dim", "total_time", "x0", "params", "process", "terminal", "driver"]
    assert shown["terminal"] == "relu(K - mean(x))" and shown["params"] == {"K": 90.0, "r": 0.05}
    assert shown["process"]["kind"] == "gbm" and len(shown["process"]["correlation"]) == 5
    json.dumps(problem.to_dict(), allow_nan=False)  # checkpoints and reports store it as JSON
    again = problem_from_dict(problem.to_dict())
    assert again.equation == problem.equation


def test_pickles_as_text():
    eq = bsde.load_problem("basket_put").equation
    again = pickle.loads(pickle.dumps(eq))
    assert again == eq and again.terminal_fn.text == "relu(K - mean(x))"
    x = torch.full((2, 5), 95.0, dtype=torch.float64)
    torch.testing.assert_close(again.terminal(x), eq.terminal(x))


def test_overrides_recompile():
    problem = bsde.load_problem("basket_put", {"equation.params.K": 110.0, "equation.driver": "-0.01 * y"})
    x = torch.full((1, 5), 100.0, dtype=torch.float64)
    assert problem.equation.terminal(x).item() == pytest.approx(10.0)
    assert problem.equation.discount_rate == pytest.approx(0.01)


HJB_YAML = {"dim": 4, "x0": 0.0, "params": {"lam": 1.0}, "process": {"kind": "brownian", "sigma": SQRT2},
            "terminal": "log((1 + sum(x ** 2)) / 2)", "driver": "-lam / 2 * sum(z ** 2)"}
ALLEN_CAHN_YAML = {"dim": 4, "total_time": 0.3, "process": {"kind": "brownian", "sigma": SQRT2},
                   "terminal": "1 / (2 + 0.4 * sum(x ** 2))", "driver": "y - y ** 3"}


@pytest.mark.parametrize(("yaml", "builtin"), [
    (HJB_YAML, {"kind": "hjb", "dim": 4, "lam": 1.0}),
    (ALLEN_CAHN_YAML, {"kind": "allen_cahn", "dim": 4}),
])
def test_same_problem_as_the_builtin(yaml, builtin):
    """The flags read off the text are the built-in's, and a short solve follows the same trajectory."""
    solver = {"iterations": 40, "time_steps": 5, "batch_size": 16, "valid_size": 32, "log_every": 20}
    mine, theirs = custom(yaml, solver), problem_from_dict({"equation": builtin, "solver": solver})
    a, b = mine.equation, theirs.equation
    assert (a.driver_uses_y, a.driver_uses_z, a.driver_is_linear, a.z_hessian, a.controllable) == \
           (b.driver_uses_y, b.driver_uses_z, b.driver_is_linear, b.z_hessian, b.controllable)
    ours, reference = bsde.solve(mine, seed=3, device="cpu", threads=1), bsde.solve(theirs, seed=3, device="cpu",
                                                                                     threads=1)
    assert ours.y0 == pytest.approx(reference.y0, rel=1e-9)


@pytest.mark.parametrize(("driver", "linear", "rate", "uses_y", "uses_z", "c"), [
    ("0", True, 0.0, False, False, None),
    ("-r * y", True, 0.05, True, False, None),
    ("-r * y + 0.1 * sum(z)", False, 0.0, True, True, None),
    ("-0.5 * sum(z ** 2) + x[0]", False, 0.0, False, True, 1.0),
    ("-(1 - 2/3) * where(y < 50, 0.2, 0.02) * y - 0.02 * y", False, 0.0, True, False, None),
])
def test_flags_from_the_text_and_probing_agree(driver, linear, rate, uses_y, uses_z, c):
    eq = custom({"dim": 3, "x0": 1.0, "params": {"r": 0.05}, "process": {"kind": "brownian", "sigma": 1.0},
                 "terminal": "sum(x)", "driver": driver}).equation
    assert (eq.driver_is_linear, eq.discount_rate, eq.driver_uses_y, eq.driver_uses_z, eq.z_hessian) == \
           (linear, pytest.approx(rate), uses_y, uses_z, c)
    verify_flags(eq)


def test_diffusion_process_moves_as_written():
    """dX = mu X dt + s X dW by Euler-Maruyama (10 substeps): E X_T = x0 e^{mu T} (within 5 standard errors)."""
    eq = custom({"dim": 2, "x0": [1.0, 2.0], "params": {"mu": 0.1, "s": [0.2, 0.3]},
                 "process": {"kind": "diffusion", "drift": "mu * x", "sigma": "s * x", "substeps": 10},
                 "terminal": "sum(x)"}).equation
    assert isinstance(eq.process, Diffusion) and eq.process.substeps == 10
    gen = torch.Generator().manual_seed(0)
    n, steps, dt = 40_000, 4, 0.25
    dw = torch.randn(n, steps, 2, generator=gen, dtype=torch.float64) * math.sqrt(dt)
    x = eq.process.states(torch.tensor([1.0, 2.0], dtype=torch.float64), dw, dt, generator=gen)
    end = x[:, -1]
    expected = torch.tensor([1.0, 2.0], dtype=torch.float64) * math.exp(0.1)
    stderr = end.std(0) / math.sqrt(n)
    assert ((end.mean(0) - expected).abs() < 5 * stderr).all(), (end.mean(0), expected, stderr)
    # the diagonal sigma is what Z = sigma^T grad u uses
    v = torch.ones(3, 2, dtype=torch.float64)
    torch.testing.assert_close(eq.process.diffusion_transpose(end[:3], v, 0.0), end[:3] * torch.tensor([0.2, 0.3],
                                                                                                     dtype=torch.float64))


def test_brownian_with_drift():
    eq = custom({"dim": 2, "process": {"kind": "brownian", "sigma": 0.5, "drift": 1.0}, "terminal": "x[0]"}).equation
    assert eq.process == BrownianMotion(0.5, 1.0)
    per_coordinate = {"kind": "brownian", "sigma": 0.5, "drift": [1.0, -1.0]}
    eq = custom({"dim": 2, "process": per_coordinate, "terminal": "x[0]"}).equation
    assert eq.process.drift == (1.0, -1.0) and eq.model_dump()["process"]["drift"] == [1.0, -1.0]
    with pytest.raises(bsde.ProblemError, match="process.drift: expected a number or a list of dim = 3 numbers"):
        custom({"dim": 3, "process": per_coordinate, "terminal": "x[0]"})


SMALL = {"solver.iterations": 3, "solver.time_steps": 4, "solver.batch_size": 8, "solver.valid_size": 8}


@pytest.mark.parametrize("changes", [{}, {"equation.process": {"kind": "diffusion", "drift": "r * x",
                                                                 "sigma": "0.2 * x", "substeps": 2}}],
                         ids=["gbm-matrix", "diffusion"])
def test_every_tensor_names_its_device(changes):
    """The compiled expressions make their constants on the input's device (tests/test_device.py's guard)."""
    from test_device import assert_on_device

    problem = bsde.load_problem("basket_put", {**SMALL, **changes})
    results = []
    assert_on_device(lambda: results.append(bsde.solve(problem, device="cpu", threads=1)))
    assert math.isfinite(results[0].y0)
    assert_on_device(lambda: bsde.reference(problem, "mc", paths=256))


GEOMETRIC_CALL = {"dim": 4, "x0": [90.0, 100.0, 110.0, 105.0], "params": {"K": 100.0, "r": 0.03},
                  "process": {"kind": "gbm", "drift": 0.03, "vol": [0.2, 0.25, 0.3, 0.15], "correlation": 0.4,
                              "dividend": [0.0, 0.01, 0.02, 0.0]},
                  "terminal": "relu(exp(mean(log(x))) - K)", "driver": "-r * y",
                  "closed_form": {"name": "geometric_basket_call", "strike": 100}}


def test_declared_closed_form_agrees_with_monte_carlo():
    problem = custom(GEOMETRIC_CALL)
    assert problem.to_dict()["equation"]["closed_form"] == {"name": "geometric_basket_call", "strike": 100.0}
    exact = bsde.reference(problem)
    assert exact.method == "closed-form"
    mc = bsde.reference(problem, "mc", paths=1 << 18)
    assert abs(mc.value - exact.value) < 4 * mc.stderr, (exact.value, mc.value, mc.stderr)
    # a closed form that is not the terminal condition is refused, not used
    wrong = custom({**GEOMETRIC_CALL, "closed_form": {"name": "geometric_basket_call", "strike": 90}})
    with pytest.raises(bsde.ProblemError, match="differs from the terminal condition"):
        bsde.reference(wrong, "closed-form")
    assert "closed_form" not in bsde.load_problem("basket_put").to_dict()["equation"]


def test_started_elsewhere_keeps_the_texts():
    """Greeks and regions re-validate an equation at another x0 from its fields (bsde.region.with_start)."""
    from pydantic import ValidationError

    from bsde.region import with_start

    eq = bsde.load_problem("basket_put").equation
    moved = with_start(eq, [90.0] * 5)
    assert moved.x_start == (90.0,) * 5 and moved.terminal_fn == eq.terminal_fn and moved.process == eq.process
    assert moved.model_dump()["terminal"] == "relu(K - mean(x))" and moved.discount_rate == eq.discount_rate
    with pytest.raises(ValidationError, match="positive"):
        with_start(eq, [-1.0] * 5)


@pytest.mark.parametrize("overrides, message", [
    ({"equation.params.k": 50.0}, r"equation.params.k .*not used by the terminal, the driver or the process; did you "
                                  r"mean 'K'\?"),
    ({"equation.params.Kk": 50.0}, "did you mean 'K'"),
    ({"equation.params.K": True}, r"equation.params.K .*expected a number or a list of dim numbers, got True"),
    ({"equation.params": {"K": [True, 1.0, 1.0, 1.0, 1.0], "r": 0.05}}, "equation.params.K .*got \\[True"),
    ({"equation.params": [1, 2]}, "equation.params .*expected a mapping of names to numbers"),
])
def test_misspelt_or_boolean_params_are_refused(overrides, message):
    """A misspelt param through --set used to add an unused param and leave the real one as it was: the price
    silently kept K = 100 (QA); true is not a number here either."""
    with pytest.raises(bsde.ProblemError, match=message):
        bsde.load_problem("basket_put", overrides)


def test_an_unused_param_unlike_any_used_one_passes():
    """A driver overridden to a literal leaves its rate unused: not an error (nothing was misspelt)."""
    problem = bsde.load_problem("basket_put", {"equation.driver": "-0.01 * y", "equation.params.note": 3.0})
    assert problem.equation.discount_rate == pytest.approx(0.01)
