import math

import numpy as np
import pytest

import bsde
from bsde.errors import ProblemError
from bsde.reference.semi_analytic import black_scholes_call, max_call_independent, semi_analytic


def test_black_scholes_textbook_value():
    # Hull's example: S = K = 100, r = 5%, vol 20%, T = 1 -> 10.4506
    assert black_scholes_call(100, 100, 0.05, 0.0, 0.2, 1.0) == pytest.approx(10.450583572185565, rel=1e-12)


def test_black_scholes_put_call_parity_with_dividend():
    s, k, r, q, v, t = 95.0, 105.0, 0.03, 0.02, 0.3, 0.7
    call = black_scholes_call(s, k, r, q, v, t)
    put_via_symmetry = black_scholes_call(k, s, q, r, v, t)  # put-call symmetry: P(S, K, r, q) = C(K, S, q, r)
    assert call - put_via_symmetry == pytest.approx(s * math.exp(-q * t) - k * math.exp(-r * t), abs=1e-10)


@pytest.mark.parametrize("strike", [80.0, 100.0, 130.0])
def test_one_asset_is_black_scholes(strike):
    price, _ = max_call_independent(np.array([100.0]), np.array([0.25]), strike, 0.04, 0.01, 1.5)
    assert price == pytest.approx(black_scholes_call(100.0, strike, 0.04, 0.01, 0.25, 1.5), rel=1e-8)


def test_zero_strike_one_asset_is_discounted_forward():
    price, _ = max_call_independent(np.array([100.0]), np.array([0.2]), 0.0, 0.05, 0.02, 1.0)
    assert price == pytest.approx(100.0 * math.exp(-0.02), rel=1e-8)


def test_two_identical_assets_by_direct_quadrature():
    # P(max <= m) = Phi(d)^2: compare with the same integral done on the linear scale
    from scipy import integrate, special
    x, v, k, r, t = 100.0, 0.3, 110.0, 0.05, 1.0
    mu = math.log(x) + (r - 0.5 * v * v) * t

    def tail(m):
        return 1.0 - special.ndtr((math.log(m) - mu) / (v * math.sqrt(t))) ** 2

    direct = math.exp(-r * t) * integrate.quad(tail, k, 2000.0, epsrel=1e-12, limit=400)[0]
    price, _ = max_call_independent(np.array([x, x]), np.array([v, v]), k, r, 0.0, t)
    assert price == pytest.approx(direct, rel=1e-8)


def test_default_max_call_price():
    result = semi_analytic(bsde.load_problem("max_call").equation)
    assert result.value == pytest.approx(67.3397, abs=5e-4)
    assert result.stderr is None and result.method == "semi-analytic"


def test_rejects_correlation_and_other_payoffs():
    with pytest.raises(ProblemError, match="correlation"):
        semi_analytic(bsde.load_problem("max_call", {"equation.correlation": 0.2}).equation)
    with pytest.raises(ProblemError, match="max_call and hjb only"):
        semi_analytic(bsde.load_problem("allen_cahn").equation)


# --- hjb: the Cole-Hopf formula over the law of |X_T|^2 ---------------------------------------------------------


@pytest.mark.parametrize("lam", [1.0, 50.0, 1000.0])
def test_hjb_at_the_origin_against_an_independent_quadrature(lam):
    """x0 = 0, d = 100: the one-dimensional chi route against scipy's chi2 density (tests/conftest.py), from the
    published lam to lam = 1000 (where the radial solve refuses and the Cole-Hopf Monte Carlo has 5 effective paths);
    the QA's own values: 4.590162, 3.724176, -0.279729."""
    from conftest import hjb_by_quadrature

    result = semi_analytic(bsde.load_problem("hjb", {"equation.lam": lam}).equation)
    assert result.method == "semi-analytic" and result.details["quad_error"] < 1e-10
    assert result.value == pytest.approx(hjb_by_quadrature(lam, 100, 1.0), abs=1e-9)


@pytest.mark.parametrize("dim, x0", [(1, 0.7), (2, 1.0), (5, 0.4), (100, 0.3)])
def test_hjb_off_the_origin_is_exact_where_the_formula_closes(dim, x0):
    """lam = -1: u = ln E (1 + |X_T|^2) / 2 = ln((1 + |x0|^2 + 2 d T) / 2), the two-dimensional route (along x0 and
    across it) with no approximation to hide behind; T = 0.5 off the default."""
    equation = bsde.load_problem("hjb", {"equation.dim": dim, "equation.x0": x0, "equation.lam": -1.0,
                                         "equation.total_time": 0.5}).equation
    exact = math.log((1 + dim * x0 * x0 + 2 * dim * 0.5) / 2)
    assert semi_analytic(equation).value == pytest.approx(exact, abs=1e-10)


@pytest.mark.parametrize("overrides", [{"equation.dim": 5, "equation.x0": 1.0, "equation.lam": 2.0},
                                       {"equation.dim": 1, "equation.x0": 1.0, "equation.lam": 3.0},
                                       {"equation.x0": 0.5}])
def test_hjb_off_the_origin_agrees_with_the_radial_solve(overrides):
    """A PDE solve in |x|^2, an independent method, within its own error estimate."""
    from bsde.reference.radial import radial

    equation = bsde.load_problem("hjb", overrides).equation
    pde = radial(equation)
    assert abs(semi_analytic(equation).value - pde.value) < pde.details["error_estimate"]


def test_hjb_without_the_nonlinearity_is_the_mean_of_g():
    """lam = 0 is E g (integrated on its own form), the limit of small lam, on both sides of the switch to the
    expansion E g - (lam/2) Var g (the direct form, divided by a lam of 1e-12, was 1.8e-2 off: review)."""
    def value(lam: float) -> float:
        return semi_analytic(bsde.load_problem("hjb", {"equation.dim": 3, "equation.lam": lam}).equation).value

    zero = value(0.0)
    assert value(1e-12) == pytest.approx(zero, abs=1e-10)
    assert value(1e-7) == pytest.approx(zero, abs=1e-6)
    below, above = value(0.99e-5), value(1.01e-5)
    assert abs(below - above) < 1e-7 and below < zero


@pytest.mark.parametrize("overrides", [
    {"equation.x0": 1e6},  # |x0| = 1e7 at d = 100: a peak far narrower than the grid (a crash, review)
    {"equation.dim": 2, "equation.x0": [1.0, 0.0], "equation.lam": 1e4},
    {"equation.dim": 2, "equation.x0": 0.5, "equation.lam": 3000.0},
    {"equation.dim": 2, "equation.lam": 1e5},
    {"equation.dim": 5, "equation.x0": 3.0, "equation.total_time": 1e-11},
])
def test_hjb_at_extreme_settings_is_a_number_between_its_bounds(overrides):
    """For lam > 0, -(1/lam) ln E exp(-lam g) lies between min g = ln(1/2) and E g (Jensen); at lam = -1 (exact)
    the same route holds to 1e-10 relative, here at |x0| = 1e7."""
    equation = bsde.load_problem("hjb", overrides).equation
    result = semi_analytic(equation)
    mean = semi_analytic(bsde.load_problem("hjb", {**overrides, "equation.lam": 0.0}).equation).value
    assert math.log(0.5) - 1e-12 <= result.value <= mean + 1e-9 and result.details["quad_error"] < 1e-8
    if overrides.get("equation.x0") == 1e6:
        exact = bsde.load_problem("hjb", {**overrides, "equation.lam": -1.0}).equation
        assert semi_analytic(exact).value == pytest.approx(math.log((1 + 100 * 1e12 + 200) / 2), rel=1e-10)
