"""Shared fixtures: seeded generators and a tiny problem that trains in well under a second."""

from __future__ import annotations

import os

import pytest
import torch

import bsde


def _pin_xdist_worker() -> None:
    """Under pytest-xdist (``-n W`` on a large machine) give each worker two cores of its own, as CI's machine
    has: the solves (and their subprocesses) thread over the cores they may run on, which W workers would
    otherwise each take all of."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    if worker.startswith("gw") and hasattr(os, "sched_setaffinity"):
        cores = sorted(os.sched_getaffinity(0))
        if len(cores) >= 4:
            first = 2 * int(worker[2:]) % len(cores)
            os.sched_setaffinity(0, {cores[first], cores[(first + 1) % len(cores)]})


_pin_xdist_worker()
torch.set_num_threads(2)

#: dim 2, 5 steps, batch 8: small enough for subprocess tests on a shared 2-core machine
TINY = {
    "equation.dim": 2, "solver.time_steps": 5, "solver.batch_size": 8, "solver.valid_size": 8,
    "solver.log_every": 10, "solver.iterations": 60,
}


def tiny_args(**changes: object) -> list[str]:
    """``--set`` arguments for the tiny problem, with some keys changed."""
    settings = {**TINY, **changes}
    return [arg for key, value in settings.items() for arg in ("--set", f"{key}={value}")]


@pytest.fixture
def tiny() -> bsde.Problem:
    return bsde.load_problem("hjb", TINY)


@pytest.fixture
def generator() -> torch.Generator:
    return torch.Generator().manual_seed(1234)


def hjb_by_quadrature(lam: float, dim: int, total_time: float) -> float:
    """hjb at x0 = 0, independently: u0 = -(1/lam) ln E ((1 + |X_T|^2) / 2)^(-lam), |X_T|^2 = 2 T chi2(dim),
    one quadrature in log space (scipy's chi2 log-density)."""
    import math

    import numpy as np
    from scipy import integrate, stats

    def log_integrand(q):
        return -lam * np.log((1 + 2 * total_time * q) / 2) + stats.chi2.logpdf(q, dim)

    grid = np.geomspace(1e-12, dim + 40 * math.sqrt(2 * dim), 100001)  # log-spaced: at large lam the peak is
    values = log_integrand(grid)  # narrow and close to 0
    peak, where = float(values.max()), float(grid[values.argmax()])
    pieces = (0.0, where / 2, where, 2 * where, grid[-1])
    mass = sum(integrate.quad(lambda q: np.exp(log_integrand(q) - peak), low, high, limit=500, epsabs=0,
                              epsrel=1e-10)[0] for low, high in zip(pieces, pieces[1:]))
    return -(math.log(mass) + peak) / lam
