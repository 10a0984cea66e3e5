"""One solve of a problem: train, then report y0 beside the baseline and the reference."""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

import torch

from bsde.equations.base import Equation
from bsde.problem import Problem
from bsde.runtime import resolve_device, set_threads
from bsde.simulation import simulate_paths
from bsde.trainer import LogEntry, train

BASELINE_PATHS = 1 << 16


@dataclass(frozen=True)
class Baseline:
    """Driver-free value e^{-rT} E[g(X_T)] by Monte Carlo, with the spread of the payoff."""

    value: float
    stderr: float
    payoff_var: float


def driver_free_baseline(equation: Equation, *, paths: int = BASELINE_PATHS, generator: torch.Generator,
                         device: torch.device, dtype: torch.dtype = torch.float64) -> Baseline:
    """What a solver stuck at Z = 0 would return: E[g(X_T)], discounted when f = -r y."""
    chunk = max(256, min(paths, (1 << 22) // equation.dim))
    total, total_sq, done = 0.0, 0.0, 0
    while done < paths:
        n = min(chunk, paths - done)
        sim = simulate_paths(equation.process, equation.x_start, equation.total_time, 1, n,
                             generator=generator, device=device, dtype=dtype)
        g = equation.terminal(sim.x[:, -1]).to(torch.float64)
        total += float(g.sum())
        total_sq += float(g.square().sum())
        done += n
    mean = total / paths
    var = max(total_sq / paths - mean * mean, 0.0) * paths / max(paths - 1, 1)
    discount = math.exp(-equation.discount_rate * equation.total_time)
    return Baseline(discount * mean, discount * math.sqrt(var / paths), var)


@dataclass
class SolveResult:
    """What a solve returns; ``to_dict`` is the CLI's JSON."""

    problem: str
    kind: str
    dim: int
    y0: float
    z0: list[float]
    baseline: float
    baseline_stderr: float
    reference: float | None
    reference_source: str
    rel_error: float | None
    iterations: int
    time_steps: int
    batch_size: int
    wall_s: float
    train_s: float
    iterations_per_s: float
    final_loss: float
    device: str
    dtype: str
    seed: int
    threads: int
    warnings: list[str] = field(default_factory=list)
    history: list[LogEntry] = field(default_factory=list)

    def to_dict(self, *, with_history: bool = True) -> dict[str, Any]:
        data = asdict(self)
        if not with_history:
            data.pop("history")
        return data


def trivial_solution_warning(y0: float, final_loss: float, baseline: Baseline) -> str | None:
    """Warn when y0 sits on the Z = 0 value while the loss is still near Var(g)."""
    near = abs(y0 - baseline.value) <= max(3 * baseline.stderr, 1e-3 * abs(baseline.value))
    if near and baseline.payoff_var > 0 and final_loss > 0.5 * baseline.payoff_var:
        return (
            f"y0 = {y0:.6g} is within a hair of the driver-free baseline {baseline.value:.6g} and the loss "
            f"({final_loss:.3g}) stays near Var g(X_T) ({baseline.payoff_var:.3g}): the networks may not have "
            "learned Z (trivial solution); try more iterations or another learning rate"
        )
    return None


def solve(
    problem: Problem, *, seed: int = 0, device: str = "auto", threads: int | None = None,
    on_log: Callable[[LogEntry], None] | None = None,
) -> SolveResult:
    """Solve ``problem`` with the deep BSDE method; reproducible for a given seed and device."""
    start = time.perf_counter()
    used_threads = set_threads(threads)
    dev = resolve_device(device)
    settings = problem.solver
    generator = torch.Generator(device=dev).manual_seed(seed)
    trained = train(problem.equation, settings, generator=generator, device=dev, on_log=on_log)
    baseline = driver_free_baseline(problem.equation, generator=torch.Generator(device=dev).manual_seed(seed + 1),
                                    device=dev, dtype=settings.torch_dtype)
    model = trained.model
    y0 = model.y0.item()
    final_loss = trained.history[-1].loss
    reference = problem.reference.value
    rel_error = None if reference in (None, 0) else abs(y0 - reference) / abs(reference)
    warning = trivial_solution_warning(y0, final_loss, baseline)
    return SolveResult(
        problem=problem.name, kind=problem.equation.kind, dim=problem.equation.dim, y0=y0,
        z0=[float(v) for v in model.z0.detach().cpu()], baseline=baseline.value,
        baseline_stderr=baseline.stderr, reference=reference, reference_source=problem.reference.source,
        rel_error=rel_error, iterations=settings.iterations, time_steps=settings.time_steps,
        batch_size=settings.batch_size, wall_s=time.perf_counter() - start, train_s=trained.train_s,
        iterations_per_s=settings.iterations / trained.train_s if trained.train_s > 0 else float("nan"),
        final_loss=final_loss, device=str(dev), dtype=settings.dtype, seed=seed, threads=used_threads,
        warnings=[warning] if warning else [], history=trained.history,
    )
