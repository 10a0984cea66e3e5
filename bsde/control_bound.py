"""A one-sided Monte Carlo bound on u(0, x0) from the learned Z, for drivers concave or convex in z.

For f = f(z) concave in z, the tangent f(Z^) + b . (z - Z^) with b = grad_z f(Z^) lies above f, so
by the comparison theorem the linear BSDE with that driver bounds Y from above; by Girsanov its value is

    J = E_Q[ g(X_T) + int_0^T (f(Z^) - b . Z^) dt ],   dX = sigma (b dt + dW^Q),

with Z^ = the trained Z_n evaluated on the controlled paths (held over sub-steps of dt / K). For HJB,
f = -(lam/2)|z|^2, this is the cost of the feedback control a = -sqrt(lam/2) Z^ and
J - u0 = (lam/2) E_Q int |Z^ - Z*|^2 dt: second order in the error of Z, where y0 is first order.
A convex f gives a lower bound the same way. The bound is exact (up to its Monte Carlo error) when f
depends on z only and the diffusion is a constant sigma (``ScaledBrownian``); otherwise it is not offered.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch

from bsde.equations.base import Equation
from bsde.model import DeepBSDE

BOUND_SUBSTEPS = 16


def bound_paths(dim: int) -> int:
    """Paths for the bound: about 2^18 / d (a constant cost per network layer), between 2^10 and 2^16."""
    return min(1 << 16, max(1 << 10, (1 << 18) // dim))


@dataclass(frozen=True)
class ControlBound:
    """value +- stderr, and whether it bounds u(0, x0) from above or below."""

    value: float
    stderr: float
    side: Literal["upper", "lower"]
    paths: int
    substeps: int


def bound_side(equation: Equation) -> Literal["upper", "lower"] | None:
    """'upper' for a driver concave in z, 'lower' for convex, None where the bound does not apply."""
    if not equation.controllable:
        return None
    return "upper" if equation.z_curvature == "concave" else "lower"


def control_bound(model: DeepBSDE, *, generator: torch.Generator, paths: int | None = None,
                  substeps: int = BOUND_SUBSTEPS) -> ControlBound | None:
    """J for the trained ``model`` (see the module docstring), or None where no bound applies."""
    equation = model.equation
    side = bound_side(equation)
    if side is None:
        return None
    paths = paths or bound_paths(equation.dim)
    ref = model.y0
    sigma, steps = equation.process.sigma, model.time_steps
    h = equation.total_time / (steps * substeps)
    x = torch.as_tensor(equation.x_start, dtype=ref.dtype, device=ref.device).expand(paths, -1).clone()
    cost = torch.zeros(paths, dtype=ref.dtype, device=ref.device)
    was_training = model.training
    model.eval()
    for n in range(steps):
        for k in range(substeps):
            t = (n * substeps + k) * h
            with torch.no_grad():
                z = model.z_at(n, x)
                b = equation.driver_z_gradient(t, x, z)
                cost += h * (equation.driver(t, x, cost.new_zeros(()), z) - (b * z).sum(-1))
                noise = torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)
                x = x + sigma * (b * h + math.sqrt(h) * noise)
    with torch.no_grad():
        total = (cost + equation.terminal(x)).to(torch.float64)
    model.train(was_training)
    return ControlBound(float(total.mean()), float(total.std()) / math.sqrt(paths), side, paths, substeps)
