"""The memory estimate grows with the problem and refuses what cannot fit, before allocating."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

import bsde
from bsde import memory
from bsde.memory import available, check_fits, estimate

CPU = torch.device("cpu")


def test_estimate_counts_paths_and_grows_with_batch() -> None:
    small = bsde.load_problem("hjb", {"equation.dim": 10, "solver.batch_size": 64})
    big = bsde.load_problem("hjb", {"equation.dim": 10, "solver.batch_size": 128})
    need = estimate(small)
    assert need.paths == 8 * 64 * (2 * 20 + 1) * 10  # X (N+1) and dW (N) per path, float64
    assert estimate(big).total - need.total == 64 * need.per_path
    single = bsde.load_problem("hjb", {"equation.dim": 10, "solver.batch_size": 64, "solver.dtype": "float32"})
    assert estimate(single).total < 0.6 * need.total


def _mem_available() -> int:
    """MemAvailable from /proc/meminfo in bytes, read here independently of bsde.memory."""
    line = next(line for line in Path("/proc/meminfo").read_text().splitlines() if line.startswith("MemAvailable:"))
    number, unit = line.split()[1:3]
    assert unit == "kB"
    return int(number) * 1024


@pytest.mark.skipif(not Path("/proc/meminfo").exists(), reason="needs Linux /proc/meminfo")
def test_available_memory_is_memavailable_or_the_cgroup_room(monkeypatch: pytest.MonkeyPatch) -> None:
    slack = 256 << 20  # other processes allocate and free between the reads
    before = _mem_available()
    measured = available(CPU)
    after = _mem_available()
    assert measured is not None and 0 < measured <= max(before, after) + slack  # never more than MemAvailable
    monkeypatch.setattr(memory, "_cgroup_available", lambda: None)  # no cgroup limit: MemAvailable itself
    before = _mem_available()
    free = available(CPU)
    after = _mem_available()
    assert free is not None and min(before, after) - slack <= free <= max(before, after) + slack
    monkeypatch.setattr(memory, "_cgroup_available", lambda: 1 << 20)  # a tighter cgroup wins
    assert available(CPU) == 1 << 20
    monkeypatch.setattr(memory, "_meminfo_available", lambda: None)
    monkeypatch.setattr(memory, "_cgroup_available", lambda: None)
    assert available(CPU) is None  # the platform does not say


def test_refusal_suggests_a_batch_size_that_fits(tiny: bsde.Problem) -> None:
    need = estimate(tiny)
    free = math.ceil((need.total - 4 * need.per_path) / 0.9) + 1  # room for batch_size - 4 paths
    with pytest.raises(bsde.ProblemError, match=r"lower solver.batch_size to 4 or less.*float32"):
        check_fits(tiny, CPU, free=free)
    assert check_fits(tiny, CPU, free=10 * need.total) == need


def test_absurd_problem_is_refused_by_the_api() -> None:
    huge = bsde.load_problem("hjb", {"equation.dim": 10**6, "solver.batch_size": 10**5})
    with pytest.raises(bsde.ProblemError, match="solver.batch_size"):
        bsde.solve(huge, device="cpu")


def test_a_validation_batch_that_does_not_fit_is_named() -> None:
    large = bsde.load_problem("hjb", {"equation.dim": 10, "solver.valid_size": 10**9})
    with pytest.raises(bsde.ProblemError, match=r"lower solver.valid_size \(its 1000000000 paths need"):
        check_fits(large, CPU, free=10**9)


def test_a_region_refit_on_more_paths_than_fit_is_refused_before_training() -> None:
    """solver.refit_paths over a region: the refit keeps 3 d + 4 numbers per path (bsde.refit)."""
    box = {"equation.dim": 1, "solver.region": {"low": 80, "high": 120}}
    region = bsde.load_problem("max_call", {**box, "solver.refit_paths": 10**6})
    need = memory.check_refit_fits(region, CPU, free=10**12)
    assert need == 10**6 * (3 * 1 + 4) * 8
    with pytest.raises(bsde.ProblemError, match=r"solver.refit_paths=1000000 over a region keeps about 53.4 MiB .*"
                                                r"lower solver.refit_paths"):
        check_fits(region, CPU, free=need)  # training fits in that; the refit does not (headroom)
    assert memory.check_refit_fits(bsde.load_problem("max_call", box), CPU, free=1) == 0  # the default is bounded
    point = bsde.load_problem("max_call", {"equation.dim": 1, "solver.refit": True, "solver.refit_paths": 10**9})
    assert memory.check_refit_fits(point, CPU, free=1) == 0  # a point's refit streams its paths
