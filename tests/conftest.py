"""Shared fixtures: float64 CPU, one thread per test process, seeded generators."""

import pytest
import torch

torch.set_num_threads(2)


@pytest.fixture
def generator() -> torch.Generator:
    return torch.Generator().manual_seed(1234)
