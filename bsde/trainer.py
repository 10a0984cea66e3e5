"""Training loop: Adam on the terminal mismatch, validation on a fixed batch. Never prints."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable

import torch

from bsde.equations.base import Equation
from bsde.errors import TrainingError
from bsde.model import DeepBSDE, terminal_loss
from bsde.settings import SolverSettings
from bsde.simulation import Paths, simulate_paths


@dataclass(frozen=True)
class LogEntry:
    """One validation point: iteration, validation loss, y0, seconds since training began."""

    iteration: int
    loss: float
    y0: float
    elapsed_s: float


@dataclass
class TrainResult:
    model: DeepBSDE
    history: list[LogEntry] = field(default_factory=list)
    train_s: float = 0.0


def sample(equation: Equation, settings: SolverSettings, batch: int, generator: torch.Generator,
           device: torch.device) -> Paths:
    """A batch of forward paths on the solver's time grid."""
    return simulate_paths(
        equation.process, equation.x_start, equation.total_time, settings.time_steps, batch,
        generator=generator, device=device, dtype=settings.torch_dtype,
    )


def evaluate(model: DeepBSDE, paths: Paths) -> float:
    """Validation loss with the networks in inference mode (running batch-norm statistics)."""
    model.eval()
    with torch.no_grad():
        loss = terminal_loss(model(paths.x, paths.dw, paths.dt), model.equation.terminal(paths.x[:, -1]))
    model.train()
    return float(loss)


def train(
    equation: Equation, settings: SolverSettings, *, generator: torch.Generator, device: torch.device,
    on_log: Callable[[LogEntry], None] | None = None,
) -> TrainResult:
    """Fit Y_0, Z_0 and the step networks; returns the model and its validation history."""
    model = DeepBSDE(equation, settings.time_steps, settings.widths(equation.dim),
                     dtype=settings.torch_dtype, device=device, z_scale=settings.output_scale(equation.dim))
    model.reset_parameters(generator, settings.y0_init)
    valid = sample(equation, settings, settings.valid_size, generator, device)
    optimizer = torch.optim.Adam(model.parameters(), lr=settings.rate_at(0), eps=1e-8, fused=True)
    result = TrainResult(model)
    start = time.perf_counter()

    def log(iteration: int) -> None:
        entry = LogEntry(iteration, evaluate(model, valid), model.y0.item(), time.perf_counter() - start)
        if not (math.isfinite(entry.loss) and math.isfinite(entry.y0)):
            raise TrainingError(
                f"non-finite loss at iteration {iteration}"
                + (f" (last good y0 {result.history[-1].y0:.6g})" if result.history else "")
                + "; lower solver.learning_rate"
            )
        result.history.append(entry)
        if on_log is not None:
            on_log(entry)

    for iteration in range(settings.iterations):
        if iteration % settings.log_every == 0:
            log(iteration)
        for group in optimizer.param_groups:
            group["lr"] = settings.rate_at(iteration)
        paths = sample(equation, settings, settings.batch_size, generator, device)
        loss = terminal_loss(model(paths.x, paths.dw, paths.dt), equation.terminal(paths.x[:, -1]))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    log(settings.iterations)
    result.train_s = time.perf_counter() - start
    return result
