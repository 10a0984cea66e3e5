"""Forward SDE paths: pure functions of (process, x0, horizon, sizes, generator).

Returned ``x`` has shape (batch, steps + 1, dim) and ``dw`` (batch, steps, dim): the
independent Brownian increments that drive the BSDE's Z . dW term.
"""

from __future__ import annotations

import functools
import math
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import torch

from bsde.processes import Process, uniform_correlation_root  # noqa: F401 (uniform_correlation_root: old home)


@dataclass(frozen=True)
class Paths:
    """x: (batch, steps+1, dim) states; dw: (batch, steps, dim) increments; dt: step size."""

    x: torch.Tensor
    dw: torch.Tensor
    dt: float


#: one random stream, or one per equal block of rows (the fixed shards of a batch)
Streams = torch.Generator | Sequence[torch.Generator]


def standard_normals(shape: tuple[int, ...], generator: Streams, *, device: torch.device | str,
                     dtype: torch.dtype) -> torch.Tensor:
    """N(0, 1) samples; with a sequence of generators, the k-th of its equal blocks of rows from the k-th.

    On the CPU, from PARALLEL_DRAW_FROM numbers, the blocks are drawn by up to torch's thread count of threads
    at once (torch's normal sampler is serial): the same numbers, in about half the time on 2 cores.
    """
    if isinstance(generator, torch.Generator):
        return torch.randn(shape, generator=generator, device=device, dtype=dtype)
    rows, rest = divmod(shape[0], len(generator))
    if rest:
        raise ValueError(f"{shape[0]} rows do not split into {len(generator)} equal blocks")
    out = torch.empty(shape, device=device, dtype=dtype)

    def draw(blocks: range) -> None:
        for k in blocks:
            torch.randn((rows, *shape[1:]), generator=generator[k], device=device, dtype=dtype,
                        out=out[k * rows:(k + 1) * rows])

    workers = min(torch.get_num_threads(), len(generator)) if out.device.type == "cpu" else 1
    if workers < 2 or out.numel() < PARALLEL_DRAW_FROM:
        draw(range(len(generator)))
        return out
    groups = [range(len(generator))[w::workers] for w in range(workers)]
    pending = [_draw_pool().submit(draw, group) for group in groups[1:]]
    draw(groups[0])
    for job in pending:
        job.result()
    return out


#: fewer numbers than this (about 2 ms of drawing) are drawn in one thread: after a parallel operation torch's
#: OpenMP threads spin a while on the other cores, which a second drawing thread would have to share
PARALLEL_DRAW_FROM = 1 << 19


@functools.cache
def _draw_pool() -> ThreadPoolExecutor:
    """The threads that draw blocks of normals beside the caller's (one fewer than the cores); a forked child
    makes its own (it inherits the pool but not its threads)."""
    return ThreadPoolExecutor(max(1, (os.cpu_count() or 2) - 1), thread_name_prefix="bsde-normals")


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_draw_pool.cache_clear)


def brownian_increments(
    batch: int, steps: int, dim: int, dt: float, *,
    generator: Streams, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float64,
    float32_normals: bool = False,
) -> torch.Tensor:
    """dW ~ N(0, dt I): (batch, steps, dim); ``generator`` may be one per equal block of rows.

    ``float32_normals`` draws the standard normals in float32 and widens them: 6x cheaper on CPU
    for float64 runs, at a 6e-8 relative rounding of each draw (what training needs, not what a
    reference price needs).
    """
    draw_dtype = torch.float32 if float32_normals else dtype
    normals = standard_normals((batch, steps, dim), generator, device=device, dtype=draw_dtype)
    if draw_dtype == dtype:
        return normals.mul_(math.sqrt(dt))
    # a one-element tensor (not a 0-dim one) takes part in type promotion: one pass widens and scales, in dtype
    return torch.mul(normals, torch.full((1,), math.sqrt(dt), device=device, dtype=dtype))


def states_from_increments(process: Process, x0: torch.Tensor, dw: torch.Tensor, dt: float, *,
                           generator: torch.Generator | None = None) -> torch.Tensor:
    """The path X (batch, steps+1, dim) that the increments dw (batch, steps, dim) drive (``process.states``)."""
    return process.states(x0, dw, dt, generator=generator)


def simulate_paths(
    process: Process, x0: torch.Tensor | tuple[float, ...], total_time: float, steps: int, batch: int, *,
    generator: Streams, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float64,
    float32_normals: bool = False,
) -> Paths:
    """Simulate ``batch`` paths of the forward SDE on a uniform grid of ``steps`` steps, from x0 (dim,) or from
    one starting point per path (batch, dim)."""
    if steps < 1 or batch < 1:
        raise ValueError(f"steps and batch must be positive, got steps={steps}, batch={batch}")
    x0 = torch.as_tensor(x0, device=device, dtype=dtype)
    dt = total_time / steps
    dw = brownian_increments(batch, steps, x0.shape[-1], dt, generator=generator, device=device, dtype=dtype,
                             float32_normals=float32_normals)
    return Paths(states_from_increments(process, x0, dw, dt, generator=generator), dw, dt)


def check_finite_states(x: torch.Tensor, dt: float) -> None:
    """A one-line ProblemError naming ``equation.process`` where simulated states X (paths, N+1, d) are not finite:
    an Euler step can leave the process's domain (QA: a CIR's sqrt(x) went negative on a third of the paths, and
    the error blamed g or f, whichever read X first)."""
    from bsde.errors import ProblemError

    finite = torch.isfinite(x).flatten(2).all(-1)  # (paths, N+1)
    if bool(finite.all()):
        return
    bad = ~finite.all(-1)
    path = int(bad.nonzero()[0, 0])
    step = int((~finite[path]).nonzero()[0, 0])
    before = x[path, max(step - 1, 0)].tolist()
    shown = ", ".join(f"{value:.4g}" for value in before[:3]) + (", ..." if len(before) > 3 else "")
    raise ProblemError(f"equation.process: the simulated states are not finite on {int(bad.sum())} of {len(x)} paths "
                       f"(the first at t = {step * dt:.4g}, from X = [{shown}]): its drift or sigma is not finite "
                       "there, where an Euler step left the domain (sqrt(x) below 0, say: guard it, sqrt(relu(x)))")
