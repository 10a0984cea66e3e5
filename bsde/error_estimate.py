"""An estimate of |y0 - u(0, x0)| for every solve, and the value reported beside it.

Three bases, the first that applies:

- linear driver (f = -r y): the answer is e^{-rT} E g(X_T), whose Monte Carlo value (the baseline)
  is at hand: error = |y0 - baseline| + 2 stderr.
- driver quadratic in z (HJB): the learned control samples the exponential (Cole-Hopf) representation
  u0 = -(1/c) ln E_Q exp(-c S) of :mod:`bsde.control_bound`, exact up to Monte Carlo error whatever the
  error of Z; that value is reported (the deep BSDE y0, first order in the error of Z, is kept beside
  it, and the bound J beside both). Its error is estimated as 2 standard errors (delta method); where the
  weights exp(-c S) are degenerate (fewer than DEGENERATE_FRACTION of the paths effective, a control far
  from the optimal one: hjb at lam 50 after 2000 iterations had 39 of 6550) that standard error misses
  the error several-fold (the log of a heavy-tailed mean is biased), and the estimate is the distance
  |J - V| to the bound instead, when larger (it covered the error 1.7-8x in those cases).
- otherwise: Richardson in the time step with the trained Z: the same paths marched with every other
  step (2 dt) move the implied y0 by D; for a scheme of order p the error at dt is about |D| / (2^p - 1)
  (p = 2 for the trapezoid, 1 for Euler), plus the y0 shift that would zero the mean residual
  Y_N - g(X_N) on fresh paths (zero at the optimum of y0: it catches a y0 still converging) and twice
  that shift's standard error.

The Richardson basis adds the optimisation noise: the standard deviation of y0 over the validation points
of the last quarter of training (a stand-in for the spread over seeds, which one solve cannot see). The
other two need none: they evaluate the trained model afresh, and their Monte Carlo error is counted.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, replace
from typing import Callable

import torch

from bsde.control_bound import ControlBound, control_bound
from bsde.model import DeepBSDE
from bsde.simulation import Paths


@dataclass(frozen=True)
class ErrorEstimate:
    """The reported y0, its estimated error, how it was estimated, and the control bound where there is one."""

    y0: float
    error: float
    basis: str
    bound: ControlBound | None = None
    #: False where no basis applies (error is NaN by design), True where one does (a NaN error is then an overflow)
    applies: bool = True


def from_linear(y0: float, value: float, stderr: float) -> ErrorEstimate:
    return ErrorEstimate(y0, abs(y0 - value) + 2 * stderr, "Monte Carlo value of the linear problem")


#: below this fraction of effective paths, the importance weights of the sampled value count as degenerate
DEGENERATE_FRACTION = 0.1


#: the relative resolution of the sampled value, whose paths are float32 (bsde.control_bound): its error is at
#: least this fraction of it (far from x0 = 0 the float32 states lose the increments' last digits)
FLOAT32_RESOLUTION = 1e-6


def from_bound(bound: ControlBound) -> ErrorEstimate:
    sampled = (f"control {bound.side} bound {bound.value:.6g}; value sampled under the learned control "
               f"({bound.paths} paths, {bound.effective_paths:.0f} effective")
    error, basis = 2 * bound.exponential_stderr, f"{sampled}; 2 standard errors)"
    if error < FLOAT32_RESOLUTION * abs(bound.exponential):
        error = FLOAT32_RESOLUTION * abs(bound.exponential)
        basis = f"{sampled}; 1e-6 of it, the resolution of its float32 paths, above 2 standard errors)"
    if bound.effective_paths < DEGENERATE_FRACTION * bound.paths and abs(bound.value - bound.exponential) > error:
        error, basis = abs(bound.value - bound.exponential), f"{sampled}: too few for its standard error, so its " \
                                                              "distance to the bound)"
    return ErrorEstimate(bound.exponential, error, basis, bound)


def _implied_shift(model: DeepBSDE, paths: Paths) -> tuple[float, float, float]:
    """(D, R, stderr): how far y0 moves when the paths are marched with 2 dt, how far it would move to make
    the mean residual Y_N - g(X_N) zero on these paths (the optimum of y0 has it zero), and R's stderr."""
    x, dw, dt = paths.x, paths.dw, paths.dt
    with torch.no_grad():
        z = model.gradients(x)
        terminal = model.equation.terminal(x[:, -1])
        fine = model.march(x, dw, dt, z) - terminal
        coarse = model.march(x[:, ::2], dw[:, 0::2] + dw[:, 1::2], 2 * dt, z[:, ::2]) - terminal
        h = 1e-4 * max(1.0, abs(model.y_start.item()))
        bumped = model.march(x, dw, dt, z, y_start=model.y_start + h) - terminal
    slope = float((bumped - fine).mean()) / h  # d mean(Y_N) / d y0
    slope = slope if math.isfinite(slope) and abs(slope) > 1e-12 else 1.0
    shift = -float((coarse - fine).mean()) / slope
    stderr = float(fine.std()) / math.sqrt(fine.numel()) / abs(slope)
    return shift, -float(fine.mean()) / slope, stderr


def from_time_step(model: DeepBSDE, paths: Paths) -> ErrorEstimate:
    y0 = model.y_start.item()
    if model.time_steps % 2:
        return ErrorEstimate(y0, math.nan, "none (Richardson needs an even number of steps)", applies=False)
    shift, residual, stderr = _implied_shift(model, paths)
    order = 2 if model.scheme == "trapezoid" else 1
    return ErrorEstimate(y0, abs(shift) / (2**order - 1) + abs(residual) + 2 * stderr,
                         f"Richardson in the time step (order {order}), the mean residual and its standard error")


def optimisation_noise(history: list[tuple[int, float]], iterations: int) -> float:
    """Standard deviation of y0 over the (iteration, y0) validation points of the last quarter of training."""
    late = [y0 for iteration, y0 in history if iteration >= 0.75 * iterations]
    return statistics.stdev(late) if len(late) >= 3 else 0.0


def estimate(model: DeepBSDE, paths: Callable[[], Paths], *, linear_value: tuple[float, float] | None,
             generator: torch.Generator, history: list[tuple[int, float]], iterations: int) -> ErrorEstimate:
    """The estimate for a trained ``model`` (in eval mode); see the module docstring.

    ``paths()`` draws fresh plain paths (only the Richardson basis needs them); ``history`` holds
    (iteration, y0) at the validation points of a run of ``iterations``.
    """
    if model.equation.driver_is_linear and linear_value is not None:
        return from_linear(model.y_start.item(), *linear_value)
    if (bound := control_bound(model, generator=generator)) is not None:
        return from_bound(bound)
    found = from_time_step(model, paths())
    return replace(found, error=found.error + optimisation_noise(history, iterations))
