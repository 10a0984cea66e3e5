import pytest
import torch

import bsde
from bsde.errors import ProblemError
from bsde.reference import applicable_methods
from bsde.reference.cole_hopf import cole_hopf, cole_hopf_estimate
from bsde.reference.radial import radial


@pytest.mark.parametrize("dim, lam, x0", [(5, 1.0, 1.0), (5, 10.0, 0.5), (100, 1.0, 0.3), (100, 10.0, 0.0)])
def test_agrees_with_radial(dim, lam, x0):
    eq = bsde.load_problem("hjb", {"equation.dim": dim, "equation.lam": lam, "equation.x0": x0}).equation
    mc = cole_hopf(eq, paths=1 << 16 if dim == 100 else 1 << 18, seed=1)
    pde = radial(eq, points=4000, steps=1000)
    assert abs(mc.value - pde.value) < 4 * mc.stderr + pde.details["error_estimate"]


def test_lam_zero_is_plain_expectation_and_continuous():
    g = bsde.load_problem("hjb", {"equation.dim": 3}).equation.terminal
    plain, _ = cole_hopf_estimate(g, (0.5, 0.0, 0.0), 2 ** 0.5, 1.0, 0.0, paths=1 << 14,
                                  generator=torch.Generator().manual_seed(0))
    tiny, _ = cole_hopf_estimate(g, (0.5, 0.0, 0.0), 2 ** 0.5, 1.0, 1e-7, paths=1 << 14,
                                 generator=torch.Generator().manual_seed(0))
    assert tiny == pytest.approx(plain, abs=1e-5)


def test_seeded_and_reported():
    eq = bsde.load_problem("hjb", {"equation.dim": 4}).equation
    a, b = cole_hopf(eq, paths=1000, seed=7), cole_hopf(eq, paths=1000, seed=7)
    assert a.value == b.value and a.ci95[0] < a.value < a.ci95[1] and a.paths == 1000


def test_rejects_other_problems():
    with pytest.raises(ProblemError, match="the driver -\\(lam/2\\)\\|z\\|\\^2 alone"):
        cole_hopf(bsde.load_problem("allen_cahn").equation)


def custom_hjb(driver: str, drift: float = 0.0, x0: float = 0.5) -> bsde.Problem:
    """The shipped hjb's equation written as a user would, at d = 10 (its g, sigma = sqrt 2, lam = 1)."""
    return bsde.problem_from_dict({"equation": {
        "kind": "custom", "dim": 10, "x0": x0, "params": {"lam": 1.0},
        "process": {"kind": "brownian", "sigma": 2 ** 0.5, "drift": drift},
        "terminal": "log(0.5 * (1 + sum(x ** 2)))", "driver": driver}})


@pytest.mark.parametrize("driver", ["-lam / 2 * sum(z ** 2)", "-0.5 * dot(z, z)"])
def test_a_users_quadratic_driver_gets_cole_hopf(driver):
    """A custom -(lam/2)|z|^2 on a Brownian motion is the Cole-Hopf case: the engine picks it, and its interval holds
    the shipped hjb's semi-analytic value (an independent quadrature); with a drift b, that value at x0 + b T."""
    problem = custom_hjb(driver)
    assert applicable_methods(problem) == ["cole-hopf"]
    exact = bsde.reference(bsde.load_problem("hjb", {"equation.dim": 10, "equation.x0": 0.5})).value
    mc = bsde.reference(problem, paths=1 << 18)
    assert mc.method == "cole-hopf" and mc.ci95[0] < exact < mc.ci95[1], (mc.ci95, exact)
    drifted = bsde.reference(custom_hjb(driver, drift=-0.2, x0=0.7), paths=1 << 18)
    assert drifted.ci95[0] < exact < drifted.ci95[1], (drifted.ci95, exact)  # x0 + b T = 0.5


@pytest.mark.parametrize("driver", ["-lam / 2 * sum(z ** 2) + 0.1 * sum(z)", "-lam / 2 * sum(z ** 2) + 0.01",
                                    "-lam / 2 * sum(z ** 2) - 0.05 * y", "-lam / 2 * sum(z ** 2) + 0.1 * x[0]"])
def test_cole_hopf_needs_the_quadratic_alone(driver):
    """A term linear in z, a constant, y or x break the transform: no cole-hopf (the flags alone say -(c/2)|z|^2
    + linear for the first, which is not enough)."""
    assert "cole-hopf" not in applicable_methods(custom_hjb(driver))


def test_degenerate_weights_carry_a_caveat():
    """lam = 50 at d = 100: a handful of effective paths, and the interval missed the value by 28 standard errors;
    lam = 25 with 236 of 2^20 effective: 6.6 (QA); the result says so under 1000. lam = 1: no caveat."""
    strong = cole_hopf(bsde.load_problem("hjb", {"equation.lam": 50.0}).equation, paths=1 << 15)
    assert strong.details["effective_paths"] < 100 and "weights are degenerate" in strong.caveat
    medium = cole_hopf(bsde.load_problem("hjb", {"equation.lam": 15.0}).equation, paths=1 << 16, seed=3)
    assert 100 < medium.details["effective_paths"] < 1000 and "weights are degenerate" in medium.caveat
    mild = cole_hopf(bsde.load_problem("hjb").equation, paths=1 << 15)
    assert mild.details["effective_paths"] > 1 << 14 and mild.caveat is None
