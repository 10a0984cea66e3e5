"""A one-sided Monte Carlo bound on u(0, x0) from the learned Z, and the correction it carries with it.

For f(z) = -(c/2)|z|^2 + (linear in z) (``Equation.z_hessian`` = c > 0: concave), the tangent
f(Z^) + b . (z - Z^), b = grad_z f(Z^), lies above f, so by the comparison theorem the linear BSDE with
that driver bounds Y from above; by Girsanov its value is

    J = E_Q[S],  S = g(X_T) + int_0^T (f(Z^) - b . Z^) dt - int_0^T Z^ . dW^Q,   dX = mu dt + sigma (b dt + dW^Q),

with Z^ = the trained Z_n evaluated on the controlled paths (linear in t between Z_n and Z_{n+1}, held
over sub-steps of dt / K; any adapted Z^ gives a valid bound). For HJB this is the cost of the feedback
control a = -sqrt(lam/2) Z^. Along these paths Ito's formula for u gives, with e = Z* - Z^,

    S = u0 + (c/2) int |e|^2 dt + int e . dW^Q,

so J - u0 = (c/2) E int |e|^2 dt (second order in the error of Z, where the deep BSDE y0 is first order)
and, by the Ito isometry, Var S = E int |e|^2 dt + (higher order). Hence J - (c/2) Var S is u0 up to
third-order terms: the bound measures its own excess. The stochastic integral in S has mean zero and
removes most of the spread of g(X_T). c < 0 (convex f) gives a lower bound the same way. Offered where
f is of that form, does not use y, and the process steps exactly under a control (``process.steerable``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch

from bsde.equations.base import Equation
from bsde.model import DeepBSDE, terminal_z

BOUND_SUBSTEPS = 16


def bound_paths(dim: int) -> int:
    """Paths for the bound: about 2^17 / d (a constant cost per network layer), between 2^10 and 2^16."""
    return min(1 << 16, max(1 << 10, (1 << 17) // dim))


@dataclass(frozen=True)
class ControlBound:
    """J = value +- stderr, its side, the variance of its samples S, and the corrected value
    J - (c/2) Var S +- corrected_stderr (u0 to third order in the error of Z; see the module docstring)."""

    value: float
    stderr: float
    side: Literal["upper", "lower"]
    paths: int
    substeps: int
    variance: float
    corrected: float
    corrected_stderr: float


def bound_side(equation: Equation) -> Literal["upper", "lower"] | None:
    """'upper' for a driver concave in z, 'lower' for convex, None where the bound does not apply."""
    if not equation.controllable:
        return None
    return "upper" if equation.z_hessian > 0 else "lower"


def control_bound(model: DeepBSDE, *, generator: torch.Generator, paths: int | None = None,
                  substeps: int = BOUND_SUBSTEPS, interpolate: bool = True) -> ControlBound | None:
    """J for the trained ``model`` (see the module docstring), or None where no bound applies."""
    equation = model.equation
    side = bound_side(equation)
    if side is None:
        return None
    paths = paths or bound_paths(equation.dim)
    like = model.y0  # the run's dtype and device
    process, steps = equation.process, model.time_steps
    h = equation.total_time / (steps * substeps)
    x = torch.as_tensor(equation.x_start, dtype=like.dtype, device=like.device).expand(paths, -1).clone()
    cost = torch.zeros(paths, dtype=like.dtype, device=like.device)
    was_training = model.training
    model.eval()
    for n in range(steps):
        for k in range(substeps):
            t = (n * substeps + k) * h
            with torch.no_grad():
                z = model.z_at(n, x)
                if interpolate and k:  # linear in t between Z_n and Z_{n+1} (Z_N = sigma^T grad g)
                    following = model.z_at(n + 1, x) if n + 1 < steps else terminal_z(equation, x)
                    z = torch.lerp(z, following, k / substeps)
                b = equation.driver_z_gradient(t, x, z)
                cost += h * (equation.driver(t, x, cost.new_zeros(()), z) - (b * z).sum(-1))
                dw = math.sqrt(h) * torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)
                cost -= (z * dw).sum(-1)  # a mean-zero control variate: Z^ . dW^Q cancels most of g's spread
                x = process.step(t, x, h, dw, control=b)
    with torch.no_grad():
        total = (cost + equation.terminal(x)).to(torch.float64)
    model.train(was_training)
    variance = float(total.var())
    # the corrected value is the mean of S_i - (c/2)(S_i - mean S)^2; its spread gives its standard error
    corrected = total - 0.5 * equation.z_hessian * (total - total.mean()).square() * paths / (paths - 1)
    return ControlBound(float(total.mean()), math.sqrt(variance / paths), side, paths, substeps, variance,
                        float(corrected.mean()), float(corrected.std()) / math.sqrt(paths))
