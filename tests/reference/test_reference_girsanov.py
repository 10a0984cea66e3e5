"""The Girsanov reference: f = -r y + m . z on a Brownian motion or a GBM, against closed forms worked out by hand."""

import math

import numpy as np
import pytest
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


@pytest.mark.parametrize(("driver", "process"), [
    ("m * sum(z) * x[0]", None),                                   # the coefficient of z depends on x
    ("m * sum(z) + 0.1", None),                                    # a constant term
    ("m * sum(z) - r * y * y", None),                              # not linear in y
    ("m * norm(z)", None),                                         # not linear in z
    ("m * sum(z)", {"kind": "diffusion", "drift": "0.05 * x", "sigma": "0.2 * x"}),  # no exact transition
])
def test_other_drivers_are_not_girsanov(driver, process):
    assert "girsanov" not in applicable_methods(problem(driver, process))


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
