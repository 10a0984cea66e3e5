"""How much memory a solve needs, checked against what the machine has before allocating.

The estimate counts, in bytes of the solver dtype:

* training paths: X (batch, N+1, d) and dW (batch, N, d), and the same for the fixed
  validation batch;
* parameters, their gradients and Adam's two moment buffers (4 x parameters), plus the
  batch-norm running statistics;
* activations of the N - 1 stacked step networks kept for the backward pass, about
  ``ACTIVATION_COPIES`` tensors of (N - 1, batch, width) per layer width, and the Z tensor
  (N, batch, d);
* the driver-free baseline's largest chunk of one-step paths;
* what an iteration frees and allocates again (training paths, activations, gradients) once more:
  a heap that keeps freed memory for reuse (:func:`bsde.runtime.keep_freed_memory`) holds about
  that much besides, fragmented (measured: 1.35x the rest at d = 10,000).

It is an estimate (other temporaries and the interpreter are not modelled), so a run is refused
only when the estimate exceeds ``HEADROOM`` of the memory available.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from bsde.errors import ProblemError
from bsde.problem import Problem
from bsde.refit import region_numbers_per_path

ACTIVATION_COPIES = 4  # linear output, batch-norm output, relu output, gradient buffer
HEADROOM = 0.9


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes by kind; ``per_path`` is what one more path of the training batch adds."""

    paths: int
    validation: int
    parameters: int
    activations: int
    baseline: int
    per_path: int
    reuse: int = 0  # the heap's second copy of what an iteration allocates afresh

    @property
    def total(self) -> int:
        return self.paths + self.validation + self.parameters + self.activations + self.baseline + self.reuse


def estimate(problem: Problem) -> MemoryEstimate:
    """Memory one solve of ``problem`` needs (see the module docstring for what is counted)."""
    settings, dim = problem.solver, problem.equation.dim
    steps = settings.time_steps
    nets = max(steps - 1, 1)
    item = torch.finfo(settings.torch_dtype).bits // 8
    widths = [dim, *settings.widths(dim), dim]
    weights = nets * sum(a * b for a, b in zip(widths, widths[1:]))
    norms = nets * 2 * sum(widths)  # gamma, beta (and as many running statistics)
    params = 1 + dim + weights + norms
    path_floats = (2 * steps + 1) * dim  # X and dW of one path
    fresh = item * (path_floats + ACTIVATION_COPIES * nets * sum(widths) + 2 * steps * dim)  # per path and iteration
    return MemoryEstimate(
        paths=item * settings.batch_size * path_floats,
        validation=item * settings.valid_size * (path_floats + 2 * nets * max(widths)),
        parameters=item * (4 * params + norms),
        activations=(fresh - item * path_floats) * settings.batch_size,
        baseline=item * 3 * dim * max(256, min(1 << 16, (1 << 22) // dim)),  # solve.driver_free_baseline chunk
        per_path=2 * fresh,
        reuse=fresh * settings.batch_size + item * params,  # paths and activations, gradients
    )


def _read_int(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def _meminfo_available() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _cgroup_available() -> int | None:
    """Limit minus usage of this process's memory cgroup (v2, then v1), if it has a limit."""
    root = Path("/sys/fs/cgroup")
    for limit_file, usage_file in (("memory.max", "memory.current"),
                                   ("memory/memory.limit_in_bytes", "memory/memory.usage_in_bytes")):
        limit, usage = _read_int(root / limit_file), _read_int(root / usage_file)
        if limit is not None and usage is not None and limit < 1 << 60:
            return max(limit - usage, 0)
    return None


def available(device: torch.device) -> int | None:
    """Bytes free for a new allocation on ``device``; None when the platform does not say."""
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        return int(free)
    known = [b for b in (_meminfo_available(), _cgroup_available()) if b is not None]
    return min(known) if known else None


def _size(num_bytes: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if abs(num_bytes) < 1024 or unit == "PiB":
            return f"{num_bytes:.3g} {unit}"
        num_bytes /= 1024
    return f"{num_bytes:.3g} PiB"  # pragma: no cover


def check_fits(problem: Problem, device: torch.device, *, free: int | None = None) -> MemoryEstimate:
    """Raise :class:`ProblemError` before any allocation when a solve (or its refit: :func:`check_refit_fits`)
    would not fit in memory.

    ``free`` overrides the measured available bytes (for tests).
    """
    problem = replace(problem, solver=problem.solver.for_device(device.type))
    need = estimate(problem)
    free = available(device) if free is None else free
    check_refit_fits(problem, device, free=free)
    if free is None or need.total <= HEADROOM * free:
        return need
    settings = problem.solver
    budget = HEADROOM * free - (need.total - need.per_path * settings.batch_size)
    fitting = math.floor(budget / need.per_path) if need.per_path else 0
    if need.validation >= need.total / 2:  # the validation batch, not the training one, is what does not fit
        advice = f"lower solver.valid_size (its {settings.valid_size} paths need {_size(need.validation)})"
    elif fitting >= 2:
        advice = f"lower solver.batch_size to {min(fitting, settings.batch_size - 1)} or less"
    else:
        advice = "even solver.batch_size=2 does not fit; lower equation.dim, solver.time_steps or solver.hidden"
    if settings.dtype == "float64":
        advice += ", or use solver.dtype=float32 (half the memory)"
    raise ProblemError(
        f"{problem.source}: needs about {_size(need.total)} of memory (solver.batch_size={settings.batch_size}, "
        f"equation.dim={problem.equation.dim}, solver.time_steps={settings.time_steps}) but {device.type} has "
        f"{_size(free)} available; {advice}"
    )


def check_refit_fits(problem: Problem, device: torch.device, *, free: int | None = None) -> int:
    """Raise :class:`ProblemError` before training when a region's refit on ``solver.refit_paths`` paths would not
    fit in memory (:func:`bsde.refit.region_numbers_per_path` numbers per path); returns the bytes it needs (0
    where nothing is checked: no region, or the default path count, which is bounded; a point's refit streams)."""
    settings = problem.solver.for_device(device.type)
    if settings.region is None or settings.refit_paths is None:  # refit_paths is only accepted with a refit
        return 0
    item = torch.finfo(settings.torch_dtype).bits // 8
    need = settings.refit_paths * region_numbers_per_path(problem.equation.dim) * item
    free = available(device) if free is None else free
    if free is not None and need > HEADROOM * free:
        raise ProblemError(f"{problem.source}: solver.refit_paths={settings.refit_paths} over a region keeps about "
                           f"{_size(need)} but {device.type} has {_size(free)} available; lower solver.refit_paths")
    return need

