"""Path moments against closed forms: Brownian motion and geometric Brownian motion.

Tolerances are 5 standard errors of the Monte Carlo estimate (false-alarm rate < 1e-6 per check).
"""

import math

import pytest
import torch

from bsde.processes import GBM, BrownianMotion
from bsde.simulation import simulate_paths

N = 100_000


def test_shapes_dtype_and_seed():
    gen = lambda: torch.Generator().manual_seed(7)  # noqa: E731
    a = simulate_paths(BrownianMotion(1.0), (0.0, 1.0, 2.0), 2.0, 8, 16, generator=gen(), dtype=torch.float32)
    b = simulate_paths(BrownianMotion(1.0), (0.0, 1.0, 2.0), 2.0, 8, 16, generator=gen(), dtype=torch.float32)
    assert a.x.shape == (16, 9, 3) and a.dw.shape == (16, 8, 3) and a.x.dtype == torch.float32
    assert a.dt == 0.25
    assert torch.equal(a.x, b.x) and torch.equal(a.dw, b.dw)
    assert torch.equal(a.x[:, 0], torch.tensor([[0.0, 1.0, 2.0]]).expand(16, 3))
    torch.testing.assert_close(a.x[:, 1:] - a.x[:, :-1], a.dw)  # sigma = 1


def test_brownian_moments():
    sigma, horizon, steps, x0 = math.sqrt(2), 0.5, 5, (1.0, -2.0)
    p = simulate_paths(BrownianMotion(sigma), x0, horizon, steps, N, generator=torch.Generator().manual_seed(0))
    t = torch.arange(steps + 1, dtype=torch.float64) * horizon / steps
    var = sigma**2 * t
    mean_err = (p.x.mean(0) - torch.tensor(x0)).abs()
    assert (mean_err[1:] <= 5 * torch.sqrt(var[1:, None] / N)).all()
    # variance: stderr of the sample variance ~ var * sqrt(2 / N)
    assert ((p.x.var(0)[1:] - var[1:, None]).abs() <= 5 * var[1:, None] * math.sqrt(2 / N)).all()
    # increments: mean 0, variance dt, uncorrelated across steps and coordinates
    dt = horizon / steps
    assert (p.dw.var(0) - dt).abs().max() <= 5 * dt * math.sqrt(2 / N)
    cov = (p.dw[:, 0, 0] * p.dw[:, 1, 0]).mean() / dt
    assert abs(cov) <= 5 / math.sqrt(N)


@pytest.mark.parametrize("rho", [0.0, 0.4, -0.2])
def test_gbm_moments(rho):
    """E X_T = x0 e^{mu T}; log X_T has variance vol^2 T; log-correlations equal rho."""
    vol = (0.1, 0.3, 0.5)
    mu, horizon, x0 = 0.04, 2.0, (90.0, 100.0, 110.0)
    p = simulate_paths(GBM(mu, vol, rho), x0, horizon, 4, N, generator=torch.Generator().manual_seed(1))
    xt = p.x[:, -1]
    mean = torch.tensor(x0, dtype=torch.float64) * math.exp(mu * horizon)
    sd = mean * torch.sqrt(torch.exp(torch.tensor(vol, dtype=torch.float64) ** 2 * horizon) - 1)
    assert ((xt.mean(0) - mean).abs() <= 5 * sd / math.sqrt(N)).all()
    logs = torch.log(xt)
    lv = torch.tensor(vol, dtype=torch.float64) ** 2 * horizon
    assert ((logs.var(0) - lv).abs() <= 5 * lv * math.sqrt(2 / N)).all()
    corr = torch.corrcoef(logs.T)
    assert (corr[0, 1] - rho).abs() < 5 * (1 - rho**2) / math.sqrt(N)
    # exactness on the grid: each step is log-normal with the right drift
    step = torch.log(p.x[:, 2] / p.x[:, 1])
    expected = (mu - 0.5 * torch.tensor(vol, dtype=torch.float64) ** 2) * horizon / 4
    assert ((step.mean(0) - expected).abs() <= 5 * torch.sqrt(lv / 4 / N)).all()


def test_bad_sizes_raise():
    with pytest.raises(ValueError, match="steps and batch"):
        simulate_paths(BrownianMotion(1.0), (0.0,), 1.0, 0, 4, generator=torch.Generator())
