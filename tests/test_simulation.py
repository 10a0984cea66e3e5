"""Path moments against closed forms: Brownian motion and geometric Brownian motion.

Tolerances are 5 standard errors of the Monte Carlo estimate (false-alarm rate < 1e-6 per check).
"""

import math

import pytest
import torch

from bsde.processes import GBM, BrownianMotion
from bsde.runtime import using_threads
from bsde.simulation import PARALLEL_DRAW_FROM, simulate_paths, standard_normals

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


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_blocks_of_normals_do_not_depend_on_threads(threads):
    """Each block from its own stream, whichever thread draws it: the same numbers as one block after another."""
    shape = (8, 20, 4000)
    assert math.prod(shape) >= PARALLEL_DRAW_FROM  # so that more than one thread draws
    streams = lambda: [torch.Generator().manual_seed(100 + k) for k in range(4)]  # noqa: E731
    expected = torch.cat([torch.randn((2, 20, 4000), generator=g, dtype=torch.float32) for g in streams()])
    with using_threads(threads):
        got = standard_normals(shape, streams(), device="cpu", dtype=torch.float32)
    assert torch.equal(got, expected)
    with pytest.raises(ValueError, match="equal blocks"):
        standard_normals((7, 2), streams(), device="cpu", dtype=torch.float32)


FORKED_DRAW = """
import os, sys, torch
from bsde.runtime import using_threads
from bsde.simulation import standard_normals
streams = lambda: [torch.Generator().manual_seed(k) for k in range(4)]
with using_threads(2):
    parent = standard_normals((8, 20, 4000), streams(), device="cpu", dtype=torch.float32)  # the threads start
    pid = os.fork()
    if pid == 0:  # the child exits 0 only if it draws the same numbers
        try:
            os._exit(0 if torch.equal(standard_normals((8, 20, 4000), streams(), device="cpu", dtype=torch.float32),
                                      parent) else 1)
        finally:
            os._exit(2)
_, status = os.waitpid(pid, 0)
sys.exit(os.waitstatus_to_exitcode(status))
"""


@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="needs os.fork")
def test_blocks_of_normals_in_a_forked_child():
    """A child forked after the drawing threads started gets threads of its own, not a pool that never answers
    (in a fresh interpreter: forking this one, with every earlier test's threads, could hang on their locks)."""
    import subprocess
    import sys

    try:
        done = subprocess.run([sys.executable, "-c", FORKED_DRAW], capture_output=True, text=True, timeout=120)
    except subprocess.TimeoutExpired:
        pytest.fail("the forked child's draw did not finish in 120 s")
    assert done.returncode == 0, done.stderr
