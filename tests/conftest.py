"""Shared fixtures: seeded generators and a tiny problem that trains in well under a second."""

from __future__ import annotations

import pytest
import torch

import bsde

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
