"""Deep BSDE y0 against independent references, on cases whose answer is far from the driver-free baseline.

Each reference is computed here by a method that shares no code with the solver: the Cole-Hopf
formula by Monte Carlo (HJB), the Black-Scholes formula and the one-dimensional integral for the
call on the maximum, and the radial PDE solve (Allen-Cahn). Tolerances are stated per case: the
solver's own bias at these short settings (Euler steps, few iterations) plus 4 standard errors of
the reference, and each case asserts that the trivial Z = 0 answer (the baseline) lies outside them.
"""

import math

import pytest
import torch
from scipy.stats import norm

import bsde
from bsde.reference.radial import radial

FAST = {"solver.iterations": 600, "solver.y0_init": "baseline", "solver.log_every": 1000,
        "solver.learning_rate": {"boundaries": [300, 500], "values": [0.02, 0.005, 0.001]}}


def cole_hopf(dim: int, lam: float, horizon: float, paths: int = 1 << 20, seed: int = 0) -> tuple[float, float]:
    """u(0, 0) = -(1/lam) ln E exp(-lam g(sqrt(2 T) N)), g = ln((1 + |x|^2) / 2); value and stderr (delta method)."""
    gen = torch.Generator().manual_seed(seed)
    weights = []
    for _ in range(paths // 65536):
        x = math.sqrt(2 * horizon) * torch.randn(65536, dim, generator=gen, dtype=torch.float64)
        weights.append(torch.exp(-lam * torch.log((1 + x.square().sum(-1)) / 2)))
    w = torch.cat(weights)
    mean, stderr = w.mean().item(), w.std().item() / math.sqrt(w.numel())
    return -math.log(mean) / lam, stderr / mean / lam


def test_hjb_large_lambda_against_cole_hopf():
    """100-d HJB with lam = 10: the answer sits 2.4% below the baseline; we ask for 0.6% (twice the README's 0.3%)."""
    problem = bsde.load_problem("hjb", {"equation.lam": 10.0, "solver.dtype": "float32", **FAST,
                                        "solver.iterations": 1200,
                                        "solver.learning_rate": {"boundaries": [600, 1000],
                                                                 "values": [0.02, 0.005, 0.001]}})
    value, stderr = cole_hopf(100, 10.0, 1.0)
    result = bsde.solve(problem, seed=0)
    tolerance = 0.006 * value + 4 * stderr
    assert abs(result.baseline - value) > 2 * tolerance  # the trivial solution would fail
    assert abs(result.y0 - value) < tolerance, (result.y0, value, stderr)


@pytest.mark.parametrize("dim, lam, x0", [(20, 5.0, 0.0), (5, 2.0, 0.5), (20, 10.0, 0.0)])
def test_hjb_off_the_published_point_with_default_settings(dim, lam, x0):
    """Strongly nonlinear HJB at small d (the deep BSDE y0 alone is 3-11% off here, and the value less
    (lam/2) Var S that the solver reported before was 1.4% off at d = 20, lam = 10): the reported value is
    within 0.6% of the radial solve, twice the 0.3% the README claims; the baseline is 5-30% away."""
    problem = bsde.load_problem("hjb", {"equation.dim": dim, "equation.lam": lam, "equation.x0": x0})
    reference = radial(problem.equation)
    result = bsde.solve(problem, seed=0)
    assert abs(result.baseline - reference.value) > 0.05 * reference.value
    assert abs(result.y0 - reference.value) < 0.006 * reference.value, (result.y0, reference.value)
    assert result.error_estimate < 0.006 * reference.value  # the estimate says so too (coverage: the slow grid test)


def test_allen_cahn_learns_z_where_the_z_0_value_is_off():
    """Allen-Cahn is nearly trivial: a solver that learns no Z ends 0.1% from the answer at d = 10 and 0.02% at
    the published 100-d point (bsde.trivial.zero_z_value), so a 1% check there proves nothing. At d = 2, T = 1
    the Z = 0 value is 0.8% off: the solve must be much closer than that to the radial reference."""
    problem = bsde.load_problem("allen_cahn", {"equation.dim": 2, "equation.total_time": 1.0, **FAST})
    reference = radial(problem.equation)
    result = bsde.solve(problem, seed=0)
    trivial = abs(result.zero_z_value - reference.value)
    assert trivial > 0.005 * reference.value  # the check can fail
    assert abs(result.y0 - reference.value) < min(0.3 * trivial, 0.003 * reference.value), (
        result.y0, reference.value, result.zero_z_value)


def black_scholes_call(s: float, k: float, r: float, q: float, vol: float, t: float) -> float:
    d1 = (math.log(s / k) + (r - q + 0.5 * vol * vol) * t) / (vol * math.sqrt(t))
    return s * math.exp(-q * t) * norm.cdf(d1) - k * math.exp(-r * t) * norm.cdf(d1 - vol * math.sqrt(t))


def black_scholes_delta(s: float, k: float, r: float, vol: float, t: float) -> float:
    return norm.cdf((math.log(s / k) + (r + 0.5 * vol * vol) * t) / (vol * math.sqrt(t)))


@pytest.mark.parametrize("seed", [0, 1])
def test_max_call_one_asset_learns_the_hedge(seed):
    """d = 1 is a plain call. Its driver is linear, so y0 is right whatever Z is (a Z = 0 solver passes a
    price test); what the training has to get right is Z_0 = vol S_0 delta. We ask 3% (seen: under 1%)."""
    problem = bsde.load_problem("max_call", {"equation.dim": 1, "solver.time_steps": 10, **FAST})
    result = bsde.solve(problem, seed=seed)
    hedge = 0.2 * 100.0 * black_scholes_delta(100.0, 100.0, 0.05, 0.2, 1.0)
    assert abs(result.z0[0] - hedge) < 0.03 * hedge, (result.z0, hedge)
    price = black_scholes_call(100.0, 100.0, 0.05, 0.0, 0.2, 1.0)
    assert abs(result.y0 - price) <= result.error_estimate, (result.y0, price, result.error_estimate)


def test_max_call_two_assets_hedge_against_monte_carlo():
    """d = 2 with different vols: Z_0 = (vol_i S_i dV/dS_i) against pathwise Monte Carlo deltas computed here
    (2^21 paths): 5% + 4 stderr each. Z = 0 would fail by 100%."""
    problem = bsde.load_problem("max_call", {"equation.dim": 2, "equation.vol": [0.2, 0.3],
                                             "solver.time_steps": 10, **FAST})
    gen = torch.Generator().manual_seed(5)
    z = torch.randn(1 << 21, 2, generator=gen, dtype=torch.float64)
    vol = torch.tensor([0.2, 0.3], dtype=torch.float64)
    s = 100.0 * torch.exp((0.05 - 0.5 * vol**2) + vol * z)
    top = s.amax(-1, keepdim=True)
    # pathwise delta of max(max S - K, 0): dS_T/dS_0 = S_T / S_0 on the asset that is the maximum, above K
    pathwise = math.exp(-0.05) * (s == top) * (top > 100.0) * s / 100.0
    hedge = 0.2 * 100.0 * pathwise.mean(0) * torch.tensor([1.0, 1.5], dtype=torch.float64)
    stderr = 0.2 * 100.0 * pathwise.std(0) / math.sqrt(z.shape[0]) * torch.tensor([1.0, 1.5], dtype=torch.float64)
    result = bsde.solve(problem, seed=0)
    learned = torch.tensor(result.z0, dtype=torch.float64)
    assert bool(((learned - hedge).abs() < 0.05 * hedge + 4 * stderr).all()), (result.z0, hedge.tolist())


def test_default_risk_small_dim_against_multilevel_picard():
    """Default risk (f depends on y through the piecewise intensity) at d = 5 against the MLP reference
    (an independent method sharing no code with the solver): 0.5% + 4 stderr (seen: 0.1%). This checks the
    two methods agree, not that Z is learned: the Z = 0 value is 0.09% off here (the driver-free E g, 2.8%
    away, is not what a solver stuck at Z = 0 returns); the next test does that."""
    problem = bsde.load_problem("default_risk", {"equation.dim": 5, "solver.time_steps": 20, **FAST})
    reference = bsde.reference(problem, method="mlp")
    result = bsde.solve(problem, seed=0)
    tolerance = 0.005 * reference.value + 4 * reference.stderr
    assert abs(result.baseline - reference.value) > 2 * tolerance
    assert abs(result.y0 - reference.value) < tolerance, (result.y0, reference.value, reference.stderr)


def test_default_risk_learns_z_where_the_z_0_value_is_off():
    """At d = 1, sigma = 0.5, T = 2 a solver that learns no Z ends 1% from the answer (at the published point
    0.01%); the solve must be much closer to the 1-d PDE solve (pde-1d, no code shared with the solver)."""
    problem = bsde.load_problem("default_risk", {"equation.dim": 1, "equation.sigma": 0.5, "equation.total_time": 2.0,
                                                 **FAST})
    reference = bsde.reference(problem, method="pde-1d").value
    result = bsde.solve(problem, seed=0)
    trivial = abs(result.zero_z_value - reference)
    assert trivial > 0.007 * reference  # the check can fail
    assert abs(result.y0 - reference) < 0.4 * trivial, (result.y0, reference, result.zero_z_value)
