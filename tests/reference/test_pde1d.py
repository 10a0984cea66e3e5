"""The one-dimensional PDE solve against closed forms: Black-Scholes, and the exact solutions at d = 1."""

import math

import pytest
from scipy.stats import norm

import bsde
from bsde.equations import BlackScholesBarenblatt, BurgersType, DifferingRates, MaxCall, ReactionDiffusion
from bsde.errors import ProblemError
from bsde.reference import applicable_methods
from bsde.reference.exact import exact
from bsde.reference.pde1d import pde1d, solve_1d


def black_scholes_call(s, k, r, vol, t):
    d1 = (math.log(s / k) + (r + 0.5 * vol * vol) * t) / (vol * math.sqrt(t))
    return s * norm.cdf(d1) - k * math.exp(-r * t) * norm.cdf(d1 - vol * math.sqrt(t))


@pytest.mark.parametrize("eq", [
    BlackScholesBarenblatt(dim=1, x0=1.0),
    BurgersType(dim=1, x0=0.5, total_time=0.5),
    ReactionDiffusion(dim=1, x0=0.7),
], ids=lambda eq: eq.kind)
def test_against_exact_solutions(eq):
    result = pde1d(eq, points=600, steps=150)
    truth = exact(eq).value
    assert result.value == pytest.approx(truth, rel=1e-4)  # 600 points (the default is 2000)
    # the bar is the half-resolution difference: three times the error of a second-order scheme
    assert 0.2 * result.error_bar <= abs(result.value - truth) <= result.error_bar


def test_linear_driver_against_black_scholes():
    eq = MaxCall(dim=1, x0=100.0, rate=0.05, vol=0.2, strike=100.0, total_time=1.0)
    assert solve_1d(eq, 800, 200) == pytest.approx(black_scholes_call(100.0, 100.0, 0.05, 0.2, 1.0), rel=1e-4)


@pytest.mark.parametrize(("spot", "vol", "horizon"), [(80.0, 0.35, 2.0), (100.0, 0.2, 1.0), (130.0, 0.05, 1.0)])
def test_a_calls_error_bar_covers_its_error(spot, vol, horizon):
    """The payoff's kink: at S = 80, vol 0.35, T = 2 (dividend 0.02) a third of the half-resolution difference
    understated the error 3.2x; the whole difference covers it. Black-Scholes with a dividend as the truth."""
    rate, dividend, strike = 0.03, 0.02, 100.0
    eq = MaxCall(dim=1, x0=spot, rate=rate, dividend=dividend, vol=vol, strike=strike, total_time=horizon)
    result = pde1d(eq)
    forward = spot * math.exp(-dividend * horizon)
    truth = black_scholes_call(forward, strike * math.exp(-rate * horizon), 0.0, vol, horizon)
    assert abs(result.value - truth) <= result.error_bar


def test_differing_rates_with_one_rate_is_black_scholes_and_ignores_the_drift():
    """R^l = R^b = r: the call spread's Black-Scholes price at rate r, whatever the drift mu."""
    for mu in (0.0, 0.15):
        eq = DifferingRates(dim=1, x0=130.0, mu=mu, rate_lend=0.05, rate_borrow=0.05)
        spread = black_scholes_call(130.0, 120.0, 0.05, 0.2, 0.5) - 2 * black_scholes_call(130.0, 150.0, 0.05, 0.2, 0.5)
        assert solve_1d(eq, 800, 200) == pytest.approx(spread, rel=2e-4)


def test_differing_rates_lies_above_both_linear_prices():
    """The nonlinearity matters at x0 = 135: the value is 1.4% above the larger of the two Black-Scholes prices."""
    value = solve_1d(DifferingRates(dim=1, x0=135.0), 800, 200)
    linear = [black_scholes_call(135.0, 120.0, r, 0.2, 0.5) - 2 * black_scholes_call(135.0, 150.0, r, 0.2, 0.5)
              for r in (0.04, 0.06)]
    assert value > max(linear) * 1.01


def test_applies_in_one_dimension_only():
    assert "pde-1d" in applicable_methods(bsde.load_problem("differing_rates", {"equation.dim": 1}))
    assert "pde-1d" in applicable_methods(bsde.load_problem("default_risk", {"equation.dim": 1}))
    assert "pde-1d" not in applicable_methods(bsde.load_problem("differing_rates"))
    with pytest.raises(ProblemError, match="pde-1d applies to dim = 1"):
        pde1d(DifferingRates(dim=2))
    with pytest.raises(ProblemError, match=r"method 'pde-1d' does not apply .*\(dim is 100, not 1\)"):  # says why (QA)
        bsde.reference(bsde.load_problem("differing_rates"), "pde-1d")


def test_engine_runs_it_for_one_dimensional_problems():
    result = bsde.reference(bsde.load_problem("differing_rates", {"equation.dim": 1}))
    assert result.method == "pde-1d" and result.error_bar < 1e-4 * result.value
    assert result.details["coarse_points"] == result.details["points"] // 2


@pytest.mark.parametrize("strike", [105.0, 120.0])
def test_a_digitals_error_bar_covers_its_error(strike):
    """A jump in the payoff: 8-point Gauss cell averages put it at the same wrong place at both resolutions
    (QA: K = 105 was 85 bars off, 3.6e-4); the adaptive cell average finds it. e^{-rT} N(d2) as the truth."""
    rate, vol = 0.05, 0.2
    eq = bsde.custom_equation(dim=1, x0=100.0, process=bsde.GBM(rate, vol),
                              terminal=lambda x: (x[..., -1] > strike).double(), driver=lambda t, x, y, z: -rate * y)
    truth = math.exp(-rate) * norm.cdf((math.log(100.0 / strike) + rate - 0.5 * vol * vol) / vol)
    result = pde1d(eq)
    assert abs(result.value - truth) <= result.error_bar < 1e-4


def test_newton_that_does_not_converge_is_an_error_not_a_value():
    """A driver growing like x^2 |z|^2 at the grid's far ends (QA: -3919 +- 3.4e3 was returned for u0 = 0.314)."""
    eq = bsde.custom_equation(dim=1, x0=0.3, process=bsde.BrownianMotion(0.8),
                              terminal=lambda x: (1 + x.square().sum(-1)).log(),
                              driver=lambda t, x, y, z: -0.5 * (1 + x[..., 0] ** 2) * z.square().sum(-1))
    with pytest.raises(ProblemError, match="pde-1d: Newton's method did not converge at t = "):
        solve_1d(eq, 400, 100)


def test_cell_averages_cost_the_same_at_any_price_scale(monkeypatch):
    """Splits relative to a cell's own mean never stopped where g's rounding (x ~ 1e8) exceeded it (review: 64
    million cells); relative to max |g| and the cell's weight, a call's kink costs the same at any scale."""
    from bsde.reference import pde1d as module

    counted, rule = [], module._Problem._rule
    monkeypatch.setattr(module._Problem, "_rule", lambda self, low, high: counted.append(low.size) or rule(
        self, low, high))
    values = []
    for spot in (100.0, 1e8):
        counted.clear()
        eq = MaxCall(dim=1, x0=spot, rate=0.05, vol=0.2, strike=1.0123457 * spot, total_time=1.0)
        values.append(solve_1d(eq, 800, 50) / spot)
        assert sum(counted) < 5 * 801, sum(counted)
    assert values[0] == pytest.approx(values[1], rel=1e-10)


@pytest.mark.parametrize("terminal, driver, what", [
    ("log(x[0])", "-0.1 * y", r"equation\.terminal: g is not finite at x = -2 "),
    ("x[0]", "-0.1 * y + 0 * sqrt(x[0])", r"equation\.driver: f at t = 0\.9995 is not finite at x = -1\.988 "),
])
def test_a_grid_where_g_or_f_is_not_finite_is_a_problem_error_naming_the_key(terminal, driver, what):
    """The grid spans x0 +- 12 standard deviations: from x0 = 10 (sigma 1) it crosses 0, where log and sqrt are not
    finite although the paths almost never go there (QA: scipy's 'array must not contain infs or NaNs', exit 1)."""
    problem = bsde.problem_from_dict({"equation": {
        "kind": "custom", "dim": 1, "x0": 10.0, "total_time": 1.0, "process": {"kind": "brownian", "sigma": 1.0},
        "terminal": terminal, "driver": driver}})
    with pytest.raises(ProblemError, match="pde-1d: " + what + "on its grid"):
        pde1d(problem.equation)
