"""An estimate of |y0 - u(0, x0)| for every solve, and the value reported beside it.

Three bases, the first that applies:

- linear driver (f = -r y): the answer is e^{-rT} E g(X_T), whose Monte Carlo value (the baseline)
  is at hand: error = |y0 - baseline| + 2 stderr.
- driver concave (convex) in z: the control bound J >= u0 (<= u0) of :mod:`bsde.control_bound`. Where
  y0 lies beyond the bound, the bound is the better estimate and is reported; its own error J - u0 is
  second order in the error of Z while y0's is first order, so it is estimated by |y0 - J| (+ 2 stderr).
  Where y0 lies inside, y0 is kept and |J - y0| + 2 stderr bounds its error when y0 is on the far
  side of u0.
- otherwise: Richardson in the time step with the trained Z: the same paths marched with every other
  step (2 dt) move the implied y0 by D; for a scheme of order p the error at dt is about |D| / (2^p - 1)
  (p = 2 for the trapezoid, 1 for Euler), plus twice the standard error of the mean residual.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

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


def from_linear(y0: float, value: float, stderr: float) -> ErrorEstimate:
    return ErrorEstimate(y0, abs(y0 - value) + 2 * stderr, "Monte Carlo value of the linear problem")


def from_bound(y0: float, bound: ControlBound) -> ErrorEstimate:
    beyond = y0 > bound.value if bound.side == "upper" else y0 < bound.value
    error = abs(y0 - bound.value) + 2 * bound.stderr
    if beyond:
        return ErrorEstimate(bound.value, error, f"control {bound.side} bound (reported; deep BSDE y0 {y0:.6g})",
                             bound)
    return ErrorEstimate(y0, error, f"distance to the control {bound.side} bound", bound)


def _implied_shift(model: DeepBSDE, paths: Paths) -> tuple[float, float]:
    """(D, stderr): how far y0 moves when the paths are marched with 2 dt, and the mean residual's stderr."""
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
    return shift, stderr


def from_time_step(model: DeepBSDE, paths: Paths) -> ErrorEstimate:
    y0 = model.y_start.item()
    if model.time_steps % 2 or model.controlled:
        return ErrorEstimate(y0, math.nan, "none (needs an even number of steps and plain paths)")
    shift, stderr = _implied_shift(model, paths)
    order = 2 if model.scheme == "trapezoid" else 1
    return ErrorEstimate(y0, abs(shift) / (2**order - 1) + 2 * stderr,
                         f"Richardson in the time step (order {order}) and the residual's standard error")


def estimate(model: DeepBSDE, paths: Paths, *, linear_value: tuple[float, float] | None,
             generator: torch.Generator) -> ErrorEstimate:
    """The estimate for a trained ``model`` (in eval mode), on fresh plain ``paths``; see the module docstring."""
    y0 = model.y_start.item()
    if model.equation.driver_is_linear and linear_value is not None:
        return from_linear(y0, *linear_value)
    bound = control_bound(model, generator=generator)
    if bound is not None:
        return from_bound(y0, bound)
    return from_time_step(model, paths)
