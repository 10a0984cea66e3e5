"""Scale cases of ``bsde bench``: one subprocess per (problem, dim), so peak memory is per case.

The parent runs ``python -m bsde.bench.worker --problem hjb --dim 1000 ...`` and reads the one
JSON object the child prints on stdout; the child times a short training run and reports its
own peak resident memory (``VmHWM``) and, on CUDA, ``torch.cuda.max_memory_allocated``.
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass, replace

import torch

from bsde.bench.cases import PLAIN, Timing, matmul_floor, network_flops, time_training
from bsde.errors import BSDEError
from bsde.memory import check_fits, estimate
from bsde.problem import load_problem
from bsde.runtime import keep_freed_memory, proc_field, resolve_device, set_threads

CASE_TIMEOUT_S = 900


@dataclass(frozen=True)
class ScaleResult:
    """Case (d) at one dimension; ``error`` says why a case has no numbers."""

    problem: str
    dim: int
    hidden: list[int]
    parameters: int | None = None
    flops_per_iteration: int | None = None
    timing: Timing | None = None
    peak_rss_mb: float | None = None
    cuda_peak_mb: float | None = None
    estimated_mb: float | None = None
    error: str | None = None
    floor: Timing | None = None        # the iteration's network matmuls alone, in blocks alternating with it
    floor_ratio: Timing | None = None  # iteration block / the floor block before it
    dtype: str | None = None           # solver.dtype as run (None: not resolved, the case failed early)


@dataclass(frozen=True)
class ScaleFit:
    """How cost grows with d: t ~ d^time_exponent (least squares over the dims measured)."""

    problem: str
    dims: list[int]
    time_exponent: float | None
    time_ratio_per_10x: list[float]     # between consecutive dims, normalised to a factor 10 in d
    memory_exponent: float | None       # of the peak memory above the smallest case's
    parameter_exponent: float | None
    dtype: str | None = None


def _peak_rss_mb() -> float:
    high_water = proc_field("/proc/self/status", "VmHWM")  # "123456 kB"
    if high_water is not None:
        return int(high_water.split()[0]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def measure(problem_name: str, dim: int, device: str, threads: int | None, warmup: int, iterations: int,
            dtype: str | None = None) -> ScaleResult:
    """In the child: time ``warmup`` + ``iterations`` training iterations of ``problem_name`` at ``dim``
    (in ``dtype``; None: the problem's own for the device)."""
    set_threads(threads)
    dev = resolve_device(device)
    problem = load_problem(problem_name, {"equation.dim": dim, **PLAIN, **({"solver.dtype": dtype} if dtype else {})})
    problem = replace(problem, solver=problem.solver.for_device(dev.type))
    need_bytes = estimate(problem).total
    keep_freed_memory(dev, need_bytes)  # as solve does
    hidden, dtype = problem.solver.widths(dim), problem.solver.dtype
    need = need_bytes / 2**20
    try:
        check_fits(problem, dev)
    except BSDEError as exc:
        return ScaleResult(problem_name, dim, hidden, estimated_mb=need, error=str(exc), dtype=dtype)
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    measured = time_training(problem, dev, warmup=warmup, blocks=iterations, block=1, floor=matmul_floor(problem, dev))
    cuda_peak = torch.cuda.max_memory_allocated(dev) / 2**20 if dev.type == "cuda" else None
    return ScaleResult(problem_name, dim, hidden, measured.parameters, network_flops(problem), measured.timing,
                       _peak_rss_mb(), cuda_peak, need, floor=measured.floor, floor_ratio=measured.floor_ratio,
                       dtype=dtype)


def run_case(problem_name: str, dim: int, device: torch.device, threads: int, warmup: int,
             iterations: int, dtype: str | None = None) -> ScaleResult:
    """In the parent: :func:`measure` in a fresh interpreter; failures become ``error``."""
    command = [sys.executable, "-m", "bsde.bench.worker", "--problem", problem_name, "--dim", str(dim),
               "--device", str(device), "--threads", str(threads), "--warmup", str(warmup),
               "--iterations", str(iterations), *(["--dtype", dtype] if dtype else [])]
    hidden = load_problem(problem_name, {"equation.dim": dim}).solver.widths(dim)
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=CASE_TIMEOUT_S,
                              cwd=tempfile.gettempdir())  # not a source checkout: import the installed bsde
    except subprocess.TimeoutExpired:
        return ScaleResult(problem_name, dim, hidden, error=f"timed out after {CASE_TIMEOUT_S} s", dtype=dtype)
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        tail = (done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[-1]
        return ScaleResult(problem_name, dim, hidden, error=f"worker failed (exit {done.returncode}): {tail}",
                           dtype=dtype)
    data = json.loads(lines[-1])
    for key in ("timing", "floor", "floor_ratio"):
        if data.get(key) is not None:
            data[key] = Timing(**data[key])
    return ScaleResult(**data)


def _slope(xs: list[float], ys: list[float]) -> float | None:
    """Least-squares slope of log10 y against log10 x."""
    points = [(math.log10(x), math.log10(y)) for x, y in zip(xs, ys) if x > 0 and y > 0]
    if len(points) < 2:
        return None
    mx = sum(p[0] for p in points) / len(points)
    my = sum(p[1] for p in points) / len(points)
    sxx = sum((p[0] - mx) ** 2 for p in points)
    return sum((p[0] - mx) * (p[1] - my) for p in points) / sxx if sxx > 0 else None


def fit(problem_name: str, results: list[ScaleResult]) -> ScaleFit:
    """Growth of time, memory and parameters with d over the successful cases of ``problem_name`` (one dtype's)."""
    done = sorted((r for r in results if r.problem == problem_name and r.timing is not None), key=lambda r: r.dim)
    dims = [r.dim for r in done]
    times = [r.timing.median_s for r in done]
    ratios = [(t2 / t1) ** (1 / math.log10(d2 / d1)) for d1, d2, t1, t2 in zip(dims, dims[1:], times, times[1:])]
    memory = [r.cuda_peak_mb if r.cuda_peak_mb is not None else r.peak_rss_mb for r in done]
    floor = min(memory, default=0.0)
    above = [m - floor for m in memory]
    return ScaleFit(problem_name, dims, _slope(dims, times), ratios, _slope(dims[1:], above[1:]),
                    _slope(dims, [r.parameters for r in done]), done[0].dtype if done else None)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bsde.bench.worker", description=__doc__)
    parser.add_argument("--problem", required=True)
    parser.add_argument("--dim", type=int, required=True)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--iterations", type=int, default=10)
    parser.add_argument("--dtype", default=None, help="solver.dtype (default: the problem's own for the device)")
    args = parser.parse_args(argv)
    result = measure(args.problem, args.dim, args.device, args.threads, args.warmup, args.iterations, args.dtype)
    sys.stdout.write(json.dumps(asdict(result), allow_nan=False) + "\n")


if __name__ == "__main__":
    main()
