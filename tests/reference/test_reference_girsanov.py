"""The Girsanov reference: f = -r y + m . z on a Brownian motion or a GBM, against closed forms worked out by hand."""

import math

import numpy as np
import pytest
from scipy.integrate import quad
from scipy.stats import norm

import bsde
from bsde.errors import ProblemError
from bsde.reference import applicable_methods
from bsde.reference.girsanov import girsanov


def problem(driver: str, process: dict | None = None, params: dict | None = None, terminal: str = "sum(x ** 2)"):
    return bsde.problem_from_dict({"equation": {
        "kind": "custom", "dim": 10, "x0": 1.0, "total_time": 1.0, "params": params or {"m": 0.5, "r": 0.05},
        "process": process or {"kind": "brownian", "sigma": 0.4}, "terminal": terminal, "driver": driver}})


def exact(m: list[float], r: float = 0.0, sigma: float = 0.4, drift: float = 0.0, x0: float = 1.0) -> float:
    """e^{-rT} E |x0 + (b + sigma m) T + sigma W_T|^2 at T = 1: sum_i (x0 + b + sigma m_i)^2 + d sigma^2."""
    return math.exp(-r) * (sum((x0 + drift + sigma * mi) ** 2 for mi in m) + len(m) * sigma**2)


@pytest.mark.parametrize(("driver", "params", "drift", "expected"), [
    ("m * sum(z)", {"m": 0.5}, 0.0, exact([0.5] * 10)),                        # 16.0
    ("-r * y + m * sum(z)", {"m": 0.5, "r": 0.05}, 0.0, exact([0.5] * 10, r=0.05)),
    ("dot(c, z) - r * y", {"c": [0.1 * i - 0.4 for i in range(10)], "r": 0.02}, 0.3,
     exact([0.1 * i - 0.4 for i in range(10)], r=0.02, drift=0.3)),
])
def test_the_interval_holds_the_closed_form(driver, params, drift, expected):
    p = problem(driver, {"kind": "brownian", "sigma": 0.4, "drift": drift}, params)
    assert applicable_methods(p)[0] == "girsanov"
    result = bsde.reference(p, paths=1 << 18, seed=1)
    assert result.method == "girsanov" and result.ci95[0] < expected < result.ci95[1], (result.ci95, expected)
    assert result.details["rate"] == pytest.approx(params.get("r", 0.0))
    assert result.details["tail_share"] < 0.01 and result.caveat is None  # a light tail: about 2 ln(n) / n


@pytest.mark.parametrize(("driver", "process"), [
    ("m * sum(z) * x[0]", None),                                   # the coefficient of z depends on x
    ("-r * t * y + m * sum(z)", None),                             # a rate that changes with t
    ("m * sum(z) - r * y * y", None),                              # not linear in y
    ("m * norm(z)", None),                                         # not linear in z
    ("m * sum(z)", {"kind": "diffusion", "drift": "0.05 * x", "sigma": "0.2 * x"}),  # no exact transition
])
def test_other_drivers_are_not_girsanov(driver, process):
    assert "girsanov" not in applicable_methods(problem(driver, process))


def source_integral(m: list[float], r: float, a: float, sigma: float = 0.4) -> float:
    """int_0^1 e^{-rs} a E|X_s|^2 ds under the drift sigma m (x0 = 1): E|X_s|^2 = sum_i (1 + sigma m_i s)^2 + d sigma^2 s."""
    return quad(lambda s: math.exp(-r * s) * a * (sum((1 + sigma * v * s) ** 2 for v in m) + len(m) * sigma**2 * s),
                0.0, 1.0)[0]


C = [0.1 * i - 0.4 for i in range(10)]


@pytest.mark.parametrize(("driver", "params", "expected", "sampled"), [
    ("-r * y + m * sum(z) + 0.3", {"m": 0.5, "r": 0.05}, exact([0.5] * 10, r=0.05) + 0.3 * (1 - math.exp(-0.05)) / 0.05,
     False),
    ("m * sum(z) + 3 * t ** 2", {"m": 0.5}, exact([0.5] * 10) + 1.0, False),     # int_0^1 3 s^2 ds
    ("dot(c, z) - r * y + a * sum(x ** 2)", {"c": C, "r": 0.02, "a": 0.2},
     exact(C, r=0.02) + source_integral(C, 0.02, 0.2), True),
])
def test_a_source_term_adds_its_discounted_time_integral(driver, params, expected, sampled):
    """f = -r y + m . z + k(t, x): u = E[e^{-rT} g(X_T) + int_0^T e^{-rs} k(s, X_s) ds] under the drift b + sigma m,
    k of t alone integrated at x0, k of x along the paths (the integral by scipy's quad here)."""
    p = problem(driver, params=params)
    assert applicable_methods(p)[0] == "girsanov"
    result = bsde.reference(p, paths=1 << 18, seed=1)
    assert result.ci95[0] < expected < result.ci95[1], (result.ci95, expected)
    assert result.details["source"] == ("sampled along the paths" if sampled else "of t alone, at x0")
    assert result.details["quadrature_allowance"] < 1e-9  # polynomial in t: Gauss-Legendre is exact
    no_source = bsde.reference(problem(driver.rsplit(" + ", 1)[0], params=params), paths=1 << 18, seed=1)
    assert abs(result.value - no_source.value - (expected - exact(C if "c" in params else [0.5] * 10,
                                                                    r=params.get("r", 0.0)))) < 0.01


def test_a_source_far_from_smooth_in_t_widens_the_interval_by_its_quadrature_change():
    """A step of 5 at t = 0.37: Gauss-Legendre misses it by 0.17 on 16 nodes; the change from 8 nodes covers it."""
    result = bsde.reference(problem("m * sum(z) + where(t < 0.37, 5, 0)", params={"m": 0.5}), paths=1 << 16, seed=1)
    expected = exact([0.5] * 10) + 5 * 0.37
    assert abs(result.value - expected) > 10 * result.stderr  # the quadrature's error, not the sampling's
    assert result.ci95[0] < expected < result.ci95[1]
    assert result.details["quadrature_allowance"] > abs(result.value - expected)


def test_a_source_that_vanishes_at_the_grid_times_is_integrated():
    """sin(8 pi t)^2 is 0 at t = k / 4 (QA: the reference dropped it, 10% off); its integral is 1/2, discounted here."""
    result = bsde.reference(problem("-r * y + m * sum(z) + sin(8 * pi * t) ** 2", params={"m": 0.5, "r": 0.05,
                                                                                          "pi": math.pi}),
                            paths=1 << 16, seed=1)
    expected = exact([0.5] * 10, r=0.05) + quad(lambda s: math.exp(-0.05 * s) * math.sin(8 * math.pi * s) ** 2, 0, 1,
                                                limit=200)[0]
    assert result.details["source"] == "of t alone, at x0"
    assert result.ci95[0] < expected < result.ci95[1], (result.ci95, expected)


def test_without_z_it_is_plain_monte_carlo_and_girsanov_says_why():
    assert applicable_methods(problem("-r * y"))[0] == "mc"
    with pytest.raises(ProblemError, match="girsanov applies to a Brownian motion"):
        girsanov(problem("m * norm(z)").equation)


def test_a_gbm_priced_under_its_real_drift_with_the_market_price_of_risk_is_black_scholes():
    """dS = mu S dt + vol S dW with f = -r y - theta z, theta = (mu - r) / vol: the risk-neutral call price."""
    mu, r, vol, strike = 0.12, 0.03, 0.25, 95.0
    p = bsde.problem_from_dict({"equation": {
        "kind": "custom", "dim": 1, "x0": 100.0, "total_time": 1.0, "params": {"r": r, "theta": (mu - r) / vol},
        "process": {"kind": "gbm", "drift": mu, "vol": vol}, "terminal": f"maximum(x[0] - {strike}, 0)",
        "driver": "-r * y - theta * sum(z)"}})
    d1 = (math.log(100.0 / strike) + r + vol * vol / 2) / vol
    call = 100.0 * norm.cdf(d1) - strike * math.exp(-r) * norm.cdf(d1 - vol)
    result = girsanov(p.equation, paths=1 << 18, seed=0)
    assert result.ci95[0] < call < result.ci95[1] and result.stderr < 0.002 * call, (result.ci95, call)
    assert result.details["z_coefficients"] == [pytest.approx(-(mu - r) / vol)]


@pytest.mark.parametrize("correlation", [0.4, [[1.0, 0.3, -0.2], [0.3, 1.0, 0.5], [-0.2, 0.5, 1.0]]])
def test_on_a_correlated_gbm_each_asset_drifts_by_vol_times_the_root_of_c_times_m(correlation):
    """E sum(X_T) = sum_i x0_i e^{(mu - q_i + vol_i (C^{1/2} m)_i) T}, with C^{1/2} the symmetric root (numpy's)."""
    vol, dividend, m, x0, mu, horizon = [0.1, 0.2, 0.3], [0.0, 0.01, 0.02], [0.3, -0.2, 0.5], [90.0, 100.0, 110.0], \
        0.05, 2.0
    matrix = np.array(correlation) if isinstance(correlation, list) else (1 - correlation) * np.eye(3) + correlation
    values, vectors = np.linalg.eigh(matrix)
    shift = np.array(vol) * (vectors @ np.diag(np.sqrt(values)) @ vectors.T @ np.array(m))
    expected = sum(x * math.exp((mu - q + s) * horizon) for x, q, s in zip(x0, dividend, shift))
    p = bsde.problem_from_dict({"equation": {
        "kind": "custom", "dim": 3, "x0": x0, "total_time": horizon, "params": {"c": m},
        "process": {"kind": "gbm", "drift": mu, "vol": vol, "dividend": dividend, "correlation": correlation},
        "terminal": "sum(x)", "driver": "dot(c, z)"}})
    assert applicable_methods(p)[0] == "girsanov"
    result = bsde.reference(p, paths=1 << 18, seed=2)
    assert result.method == "girsanov" and result.ci95[0] < expected < result.ci95[1], (result.ci95, expected)


def test_too_few_paths_names_the_option():
    with pytest.raises(ProblemError, match=r"^paths: girsanov needs at least 64 \(32 antithetic pairs; .*\), got 3$"):
        bsde.reference(problem("m * sum(z)"), paths=3)
