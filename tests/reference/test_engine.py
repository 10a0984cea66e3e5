import json

import pytest

import bsde
from bsde.errors import ProblemError
from bsde.reference import ReferenceResult, applicable_methods, cheap_method, reference


@pytest.mark.parametrize("name, overrides, auto, cheap", [
    ("max_call", {}, "semi-analytic", "semi-analytic"),
    ("max_call", {"equation.correlation": 0.3}, "mc", "mc"),
    ("hjb", {}, "semi-analytic", "semi-analytic"),
    ("allen_cahn", {}, "radial", "radial"),
    ("default_risk", {}, "mlp", None),
])
def test_auto_and_cheap_choices(name, overrides, auto, cheap):
    problem = bsde.load_problem(name, overrides)
    assert applicable_methods(problem)[0] == auto
    assert cheap_method(problem) == cheap


def test_applicable_lists():
    assert applicable_methods(bsde.load_problem("hjb")) == ["semi-analytic", "radial", "cole-hopf"]
    assert set(applicable_methods(bsde.load_problem("max_call"))) == {"semi-analytic", "mc", "mlp"}


def test_auto_runs_and_serialises():
    result = reference(bsde.load_problem("max_call", {"equation.dim": 3}))
    assert isinstance(result, ReferenceResult) and result.method == "semi-analytic"
    assert json.loads(json.dumps(result.to_dict()))["value"] == pytest.approx(result.value)


def test_paths_seed_and_progress_reach_the_method():
    calls = []
    problem = bsde.load_problem("hjb", {"equation.dim": 3})
    result = reference(problem, "cole-hopf", paths=512, seed=4, progress=lambda d, t: calls.append((d, t)))
    assert result.paths == 512 and calls[-1] == (512, 512)
    assert reference(problem, "cole-hopf", paths=512, seed=4).value == result.value


def test_inapplicable_method_is_an_error_not_a_fallback():
    with pytest.raises(ProblemError, match="applicable: semi-analytic, radial, cole-hopf"):
        reference(bsde.load_problem("hjb"), "mc")
    with pytest.raises(ProblemError, match="applicable: mc, mlp"):
        reference(bsde.load_problem("max_call", {"equation.correlation": 0.3}), "semi-analytic")


def test_unknown_method():
    with pytest.raises(ProblemError, match="unknown reference method 'bogus'"):
        reference(bsde.load_problem("hjb"), "bogus")


@pytest.mark.parametrize("name, overrides, expected", [
    ("hjb", {}, None),  # a cheap method applies: nothing to explain
    ("default_risk", {"equation.dim": 5}, "runs mlp (multilevel Picard iteration), which takes longer"),
    ("differing_rates", {"equation.dim": 5}, "no reference method applies to 'differing_rates'"),
])
def test_why_no_cheap_method(name, overrides, expected):
    from bsde.reference import why_no_cheap_method

    why = why_no_cheap_method(bsde.load_problem(name, overrides))
    assert why is None if expected is None else expected in why
