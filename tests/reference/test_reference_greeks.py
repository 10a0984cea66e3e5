"""Reference Greeks: closed form, the differentiated max-call integral, Monte Carlo, radial, central differences."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import special

import bsde
from bsde.errors import ProblemError
from bsde.reference.greeks import (at_point, black_scholes_greeks, central_differences, fallback_reason,
                                   greeks_method, max_call_greeks, radial_greeks, reference_greeks)
from bsde.reference.radial import solve_radial
from bsde.reference.semi_analytic import black_scholes_call, max_call_independent


@pytest.mark.parametrize("spot,strike,dividend", [(100.0, 100.0, 0.0), (85.0, 100.0, 0.02), (120.0, 90.0, 0.01)])
def test_black_scholes_greeks_are_derivatives_of_the_price(spot, strike, dividend):
    args = (strike, 0.05, dividend, 0.2, 1.0)
    delta, gamma = black_scholes_greeks(spot, *args)
    h = 1e-3 * spot
    up, mid, down = (black_scholes_call(s, *args) for s in (spot + h, spot, spot - h))
    assert delta == pytest.approx((up - down) / (2 * h), rel=1e-5)  # O(h^2): about 1e-6 here
    assert gamma == pytest.approx((up - 2 * mid + down) / (h * h), rel=1e-4)


def test_one_asset_max_call_takes_the_closed_form():
    result = reference_greeks(bsde.load_problem("max_call", {"equation.dim": 1}))
    d1 = 0.35  # (ln 1 + 0.05 + 0.02) / 0.2
    assert result.method == "semi-analytic" and not result.fallback  # the method named, as the CLI announces it
    assert result.details["formula"].startswith("Black-Scholes call")
    assert result.delta[0] == pytest.approx(special.ndtr(d1), rel=1e-12)
    assert result.gamma_diag[0] == pytest.approx(math.exp(-d1 * d1 / 2) / math.sqrt(2 * math.pi) / 20.0, rel=1e-12)
    assert result.value == pytest.approx(10.450583572185565, rel=1e-12)


def test_max_call_deltas_satisfy_euler_homogeneity():
    """The price is homogeneous of degree 1 in (x, K): sum_i x_i delta_i = P + K e^{-rT} P(max S_T > K)."""
    spots, vols = np.array([90.0, 100.0, 115.0, 105.0]), np.array([0.2, 0.3, 0.15, 0.25])
    strike, r, q, t = 100.0, 0.04, 0.01, 1.3
    delta, _, _ = max_call_greeks(spots, vols, strike, r, q, t, full=False)
    price, _ = max_call_independent(spots, vols, strike, r, q, t)
    d = (math.log(strike) - np.log(spots) - (r - q - 0.5 * vols**2) * t) / (vols * math.sqrt(t))
    exercise = 1.0 - np.prod(special.ndtr(d))
    assert spots @ delta == pytest.approx(price + strike * math.exp(-r * t) * exercise, rel=1e-8)


def test_max_call_gamma_by_finite_differences_of_the_semi_analytic_delta():
    spots, vols = np.array([95.0, 100.0, 110.0]), np.array([0.2, 0.3, 0.25])
    args = (100.0, 0.05, 0.0, 1.0)
    delta, gamma, _ = max_call_greeks(spots, vols, *args, full=True)
    assert np.allclose(gamma, gamma.T, rtol=1e-8)
    assert gamma[0, 1] < 0  # a rival asset rising makes asset 0 less likely to end as the maximum
    for j in range(3):
        h = 1e-3 * spots[j]
        up, down = spots.copy(), spots.copy()
        up[j] += h
        down[j] -= h
        column = (max_call_greeks(up, vols, *args, full=False)[0] - max_call_greeks(down, vols, *args, full=False)[0])
        assert np.allclose(column / (2 * h), gamma[:, j], rtol=1e-4, atol=1e-8)


def test_monte_carlo_greeks_agree_with_the_semi_analytic_ones():
    problem = bsde.load_problem("max_call", {"equation.dim": 3, "equation.x0": [95.0, 100.0, 105.0]})
    exact = reference_greeks(problem)
    mc = reference_greeks(problem, "mc", paths=1 << 17, seed=3)
    assert exact.method == "semi-analytic" and mc.method == "mc" and mc.error_kind == "95% CI half-width"
    for i in range(3):
        assert abs(mc.delta[i] - exact.delta[i]) < 4 * mc.delta_stderr[i]
        assert abs(mc.gamma_diag[i] - exact.gamma_diag[i]) < 4 * mc.gamma_diag_stderr[i]
        assert mc.delta_stderr[i] < 0.01 * exact.delta[i]
    data = mc.to_dict()
    assert data["delta_ci95"][0][0] < mc.delta[0] < data["delta_ci95"][0][1]
    # the value is bsde reference's with the same seed and paths, with its standard error (QA: another sample, bare)
    alone = bsde.reference(problem, "mc", paths=1 << 17, seed=3)
    assert (mc.value, mc.value_stderr) == (alone.value, alone.stderr) and abs(mc.value - exact.value) < 4 * alone.stderr


def test_correlated_assets_go_to_monte_carlo():
    problem = bsde.load_problem("max_call", {"equation.dim": 2, "equation.correlation": 0.5})
    assert greeks_method(problem) == ("mc", False)
    result = reference_greeks(problem, paths=1 << 16)
    # two identical assets: the same delta, each half the delta of E[max] seen through one asset's scale
    assert abs(result.delta[0] - result.delta[1]) < 4 * math.hypot(*result.delta_stderr)


def test_radial_greeks_are_derivatives_of_the_radial_value():
    """2 v_s x and 2 v_s I + 4 v_ss x x^T from the profile's spline against central differences of u(0, x0)."""
    problem = bsde.load_problem("hjb", {"equation.dim": 2, "equation.x0": [0.6, -0.3]})
    points, steps, h = 2000, 200, 0.03  # the grid moves with |x0|: differences see its error / h
    radial = radial_greeks(problem.equation, True, points, steps)
    assert radial.method == "radial" and not radial.fallback

    def value(x: list[float]) -> float:
        return solve_radial(at_point(problem, x).equation.radial_form(), points, steps)

    centre = value([0.6, -0.3])
    for i in range(2):
        up, down = [0.6, -0.3], [0.6, -0.3]
        up[i] += h
        down[i] -= h
        high, low = value(up), value(down)
        assert radial.delta[i] == pytest.approx((high - low) / (2 * h), rel=1e-3)
        assert radial.gamma_diag[i] == pytest.approx((high - 2 * centre + low) / h**2, rel=5e-3)
    assert np.allclose(radial.gamma, np.array(radial.gamma).T) and radial.gamma[0][1] != 0.0


def test_the_central_difference_fallback_is_flagged():
    problem = bsde.load_problem("hjb", {"equation.dim": 2, "equation.x0": [0.6, -0.3]})
    fallback = reference_greeks(problem, "cole-hopf", paths=1 << 12, seed=1)
    assert fallback.method == "central-differences" and fallback.fallback and fallback.details["of"] == "cole-hopf"
    assert fallback.delta_error is None and fallback.error_kind == "none"  # no error bar
    assert fallback.to_dict()["fallback"] is True


def test_central_differences_of_a_deterministic_method_are_accurate():
    problem = bsde.load_problem("max_call", {"equation.dim": 2})
    exact = reference_greeks(problem)
    fallback = central_differences(problem, "semi-analytic", paths=None, seed=0)
    assert np.allclose(fallback.delta, exact.delta, rtol=1e-4)
    assert np.allclose(fallback.gamma_diag, exact.gamma_diag, rtol=1e-3)


@pytest.mark.parametrize("seed", [1, 2])
def test_central_differences_of_an_euler_monte_carlo_hold_its_level(seed):
    """QA: a GBM written as a diffusion (Euler Monte Carlo, step halving) got gamma 7.5x Black-Scholes' on seed 1
    (levels 8, 16 at one bump, 8 at the others) and < 0 on seed 2; every point now runs the level x0 reached.
    Against Black-Scholes (delta 0.51912, gamma 0.016152), within the 8 steps' Euler bias and the noise."""
    problem = bsde.problem_from_dict({"equation": {
        "kind": "custom", "dim": 1, "total_time": 0.75, "x0": 95.0, "params": {"K": 100.0, "r": 0.04},
        "process": {"kind": "diffusion", "drift": "0.04 * x", "sigma": "0.3 * x"}, "terminal": "relu(x[0] - K)",
        "driver": "-r * y"}})
    delta, gamma = black_scholes_greeks(95.0, 100.0, 0.04, 0.0, 0.3, 0.75)
    found = reference_greeks(problem, "mc", seed=seed)
    assert found.fallback and "at every point" in found.details["euler_steps"]
    assert found.delta[0] == pytest.approx(delta, rel=0.03) and found.gamma_diag[0] == pytest.approx(gamma, rel=0.1)


def test_a_digital_gets_central_differences_not_a_pathwise_zero():
    """Pathwise derivatives miss a jump (a digital's delta would be 0 +- 0); against the closed form
    e^{-rT} phi(d2) / (S vol sqrt T) of a cash-or-nothing call."""
    spot, strike, rate, dividend, vol, total_time = 100.0, 110.0, 0.05, 0.01, 0.2, 1.0
    problem = bsde.problem_from_dict({"equation": {
        "kind": "custom", "dim": 1, "x0": spot, "total_time": total_time, "params": {"K": strike, "r": rate},
        "terminal": "where(x[0] > K, 1.0, 0.0)", "driver": "-r * y",
        "process": {"kind": "gbm", "drift": rate, "vol": vol, "dividend": dividend}}})
    assert greeks_method(problem, "mc") == ("mc", True)
    assert fallback_reason(problem, "mc") == "the payoff jumps, which pathwise Greeks miss"
    found = reference_greeks(problem, "mc", paths=1 << 20, seed=0)
    d2 = (math.log(spot / strike) + (rate - dividend - vol * vol / 2) * total_time) / (vol * math.sqrt(total_time))
    exact = math.exp(-rate * total_time - d2 * d2 / 2) / math.sqrt(2 * math.pi) / (spot * vol * math.sqrt(total_time))
    assert found.fallback and found.delta[0] == pytest.approx(exact, rel=0.03)  # 0.35% off at seed 0
    alone = bsde.reference(problem, "mc", paths=1 << 20, seed=0)  # the value keeps its error bar (QA: null)
    assert (found.value, found.value_stderr) == (alone.value, alone.stderr)


def test_methods_for_greeks():
    assert greeks_method(bsde.load_problem("max_call")) == ("semi-analytic", False)
    assert greeks_method(bsde.load_problem("hjb")) == ("radial", False)  # auto: hjb's value is semi-analytic
    with pytest.raises(ProblemError, match="semi-analytic has no Greeks for hjb"):  # asked for by name: no stand-in
        greeks_method(bsde.load_problem("hjb"), "semi-analytic")
    assert greeks_method(bsde.load_problem("default_risk")) == ("mlp", True)
    assert greeks_method(bsde.load_problem("hjb"), "cole-hopf") == ("cole-hopf", True)
    with pytest.raises(ProblemError, match="does not apply"):
        greeks_method(bsde.load_problem("hjb"), "mc")
