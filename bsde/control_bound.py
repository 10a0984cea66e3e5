"""u(0, x0) from the learned Z by importance sampling, and the one-sided bound that comes with it.

For f(z) = -(c/2)|z|^2 + (linear in z) (``Equation.z_hessian`` = c != 0), the learned Z defines a feedback
control; under the measure Q it induces (dX = mu dt + sigma (b dt + dW^Q), b = grad_z f(Z^)) the sample

    S = g(X_T) + int_0^T (f(Z^) - b . Z^) dt - int_0^T Z^ . dW^Q

has two uses, with Z^ = the trained Z_n evaluated on the controlled paths (linear in t between Z_n and
Z_{n+1}, Z_N = sigma grad g, held over sub-steps of dt / K; any adapted Z^ will do):

- the bound J = E_Q[S]: the tangent f(Z^) + b . (z - Z^) lies above a concave f, so by the comparison
  theorem J >= u0 (c > 0; a lower bound for c < 0). For HJB it is the cost of the control
  a = -sqrt(lam/2) Z^. By Ito's formula S = u0 + (c/2) int |e|^2 dt + int e . dW^Q with e = Z* - Z^, so
  J - u0 = (c/2) E int |e|^2 dt: second order in the error of Z.
- the value V = -(1/c) ln E_Q[exp(-c S)] = u0. By the same formula exp(-c (S - u0)) is the Girsanov
  density dP/dQ, exactly so in discrete time as well: for HJB, f(Z^) - b . Z^ = (c/2)|Z^|^2 and
  exp(c sum Z^ . dW^Q - (c^2/2) sum |Z^|^2 h) is the likelihood ratio of the Gaussian increments
  dW^P = dW^Q + b h, which drive the uncontrolled process (a steerable process steps exactly, so X_T is
  its exact law). So V is the Cole-Hopf formula u0 = -(1/c) ln E exp(-c g(X_T)) sampled where the learned
  control sends the paths: no time discretisation error (where the terms of f linear in z depend on x, they
  enter as an Euler sum on the sub-step grid, an error of order dt / K; a source k(t, x) = f(t, x, 0, 0) enters
  by the trapezoid rule on that grid, an error of order (dt / K)^2), and a Monte
  Carlo error that vanishes as Z^ -> Z* (the zero-variance change of measure). Its expansion
  in cumulants, J - (c/2) Var S + ..., is where the earlier second-order correction came from.

Paths come in batches of ``bound_paths(d)``, more of them until the standard error of V is below
``BOUND_TOLERANCE`` |V| or ``BOUND_BATCHES`` batches are spent. Offered where f is of that form, does not
use y, and the process steps exactly under a control (``process.steerable``). The paths are simulated in
float32: its rounding (1e-7) is far below the Monte Carlo error.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch

from bsde.equations.base import Equation
from bsde.model import DeepBSDE, terminal_z

BOUND_SUBSTEPS = 16
#: batches of bound_paths(d) are added until the standard error of the value is below this fraction of it
BOUND_TOLERANCE = 1e-3
BOUND_BATCHES = 8
#: fewer effective paths than this and the sampled value V is a few paths' own (QA: quadratic_gradient at d = 1, whose
#: source is not integrable at t = T, x = 0, gave 363 and 932 for u = 0.888 on 1 effective path of 458752):
#: bsde.error_estimate reports the march's y0 instead, checked against the bound J
COLLAPSED_PATHS = 16


def bound_paths(dim: int) -> int:
    """Paths per batch: about 2^17 / d (a constant cost per network layer), between 2^10 and 2^16."""
    return min(1 << 16, max(1 << 10, (1 << 17) // dim))


@dataclass(frozen=True)
class ControlBound:
    """J = value +- stderr (the bound) and its side, the variance of the samples S, and the importance-sampled
    value V = exponential +- exponential_stderr (u0 up to Monte Carlo error; see the module docstring) with the
    effective number of paths of its weights."""

    value: float
    stderr: float
    side: Literal["upper", "lower"]
    paths: int
    substeps: int
    variance: float
    exponential: float
    exponential_stderr: float
    effective_paths: float

    @property
    def source(self) -> str:
        """What the bound is, in words."""
        return "control of the learned Z"

    @property
    def collapsed(self) -> bool:
        """Whether the sampled value rests on fewer than ``COLLAPSED_PATHS`` effective paths (J still holds)."""
        return self.effective_paths < COLLAPSED_PATHS


def bound_side(equation: Equation) -> Literal["upper", "lower"] | None:
    """'upper' for a driver concave in z, 'lower' for convex, None where the bound does not apply."""
    if not equation.controllable:
        return None
    return "upper" if equation.z_hessian > 0 else "lower"


def exponential_mean(samples: torch.Tensor, c: float) -> tuple[float, float, float]:
    """(-(1/c) ln mean exp(-c S), its delta-method standard error, the effective sample size of the weights)."""
    exponent = -c * samples.to(torch.float64)
    weights = torch.exp(exponent - exponent.max())
    mean = float(weights.mean())
    value = -(math.log(mean) + float(exponent.max())) / c
    stderr = float(weights.std()) / mean / abs(c) / math.sqrt(samples.numel())
    effective = float(weights.sum()) ** 2 / float(weights.square().sum())
    return value, stderr, effective


def step_controls(model: DeepBSDE, dtype: torch.dtype):
    """Z_n(x) for n = 0..N as callables in ``dtype`` (Z_0 constant, Z_N = sigma grad g)."""
    equation, nets = model.equation, model.nets
    start = model.z_start.detach().to(dtype)
    steps = [lambda x: start.expand(x.shape[0], -1)]
    steps += [nets.folded(n - 1, scale=model.z_scale, dtype=dtype) for n in range(1, model.time_steps)]
    steps.append(lambda x: terminal_z(equation, x))
    return steps


def controlled_samples(model: DeepBSDE, controls, paths: int, substeps: int, interpolate: bool,
             generator: torch.Generator, dtype: torch.dtype,
             refinement: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """S for ``paths`` paths under the control Z^ of ``controls`` corrected by ``refinement`` (see
    ``refine``), float64, and the regressors of the next refinement: int Z^ . dW^Q and int (X - x0) . dW^Q
    over each step, (paths, 2 N)."""
    equation, steps = model.equation, model.time_steps
    process = equation.process
    h = equation.total_time / (steps * substeps)
    device = model.y0.device
    start = torch.as_tensor(equation.x_start, dtype=dtype, device=device)
    x = start.expand(paths, -1).clone()
    cost = torch.zeros(paths, dtype=dtype, device=device)
    regressors = torch.zeros(paths, steps, 2, dtype=dtype, device=device)
    root_h = math.sqrt(h)
    zero, no_z = cost.new_zeros(()), torch.zeros_like(x)
    with torch.no_grad():
        source = equation.driver(0.0, x, zero, no_z)  # k(t, x) = f(t, x, 0, 0): HJB's is 0
        for n in range(steps):
            for k in range(substeps):
                t = (n * substeps + k) * h
                base = controls[n](x)
                if interpolate and k:  # linear in t between Z_n and Z_{n+1}
                    base = torch.lerp(base, controls[n + 1](x), k / substeps)
                dw = torch.randn(x.shape, generator=generator, dtype=dtype, device=device).mul_(root_h)
                offset = x - start
                z = base if refinement is None else base * (1 + refinement[n, 0]) + refinement[n, 1] * offset
                b = equation.driver_z_gradient(t, x, z)
                # f(Z^) - b . Z^ dt, and the mean-zero Z^ . dW^Q that cancels most of g's spread
                cost += h * (equation.driver(t, x, zero, z) - (b * z).sum(-1)) - (z * dw).sum(-1)
                regressors[:, n, 0] += (base * dw).sum(-1)
                regressors[:, n, 1] += (offset * dw).sum(-1)
                x = process.step(t, x, h, dw, control=b)
                # the source by the trapezoid, not the left point above: an error of order h^2, not h (QA: a
                # source k(t, x) left the value 1.1-1.8 standard errors low)
                ahead = equation.driver(t + h, x, zero, no_z)
                cost += (0.5 * h) * (ahead - source)
                source = ahead
        return (cost + equation.terminal(x)).to(torch.float64), regressors.reshape(paths, -1).to(torch.float64)


def refine(samples: torch.Tensor, regressors: torch.Tensor) -> torch.Tensor:
    """The step-wise correction (alpha_n, beta_n) of the control Z^ -> (1 + alpha_n) Z^ + beta_n (X - x0), (N, 2).

    S - u0 = int e . dW^Q + (second order) with e = Z* - Z^, so the least-squares coefficients of S on the
    regressors int_n Z^ . dW^Q and int_n (X - x0) . dW^Q project e onto those two directions step by step:
    one policy-iteration step within the span of the learned control and the state.
    """
    design = torch.cat([torch.ones_like(samples).unsqueeze(1), regressors], dim=1)
    # on the CPU: torch's CUDA lstsq has only 'gels', without the rank cutoff that the Z_0 column needs at x0 = 0
    # (it is about 0 there); a (paths, 2N + 1) system is cheap anywhere
    solution = torch.linalg.lstsq(design.cpu(), samples.cpu().unsqueeze(1), driver="gelsd").solution
    return solution[1:, 0].reshape(-1, 2).to(samples.device)


def control_bound(model: DeepBSDE, *, generator: torch.Generator, paths: int | None = None,
                  substeps: int = BOUND_SUBSTEPS, interpolate: bool = True, tolerance: float = BOUND_TOLERANCE,
                  batches: int = BOUND_BATCHES, refined: bool = True) -> ControlBound | None:
    """J and V for the trained ``model`` (see the module docstring), or None where they do not apply.

    Draws batches of ``paths`` (default ``bound_paths(d)``) until the standard error of V is below
    ``tolerance`` |V|, at most ``batches`` of them. A collapsed V does not stop them: the refined controls can
    mend it (hjb at lam 50, float32, 300 iterations: 4, 4, 9, 24 and 51 effective paths over 5 batches).
    """
    equation = model.equation
    side = bound_side(equation)
    if side is None:
        return None
    batch = paths or bound_paths(equation.dim)
    c = equation.z_hessian
    was_training = model.training
    model.eval()
    controls = step_controls(model, torch.float32)
    drawn: list[torch.Tensor] = []
    correction = None
    for _ in range(max(1, batches)):
        samples, regressors = controlled_samples(model, controls, batch, substeps, interpolate, generator,
                                                 torch.float32, correction)
        if not bool(torch.isfinite(samples).all() & torch.isfinite(regressors).all()):
            model.train(was_training)  # the learned control overflows (a diverged run): no bound to give
            return None
        drawn.append(samples)
        total = torch.cat(drawn)
        value, stderr, effective = exponential_mean(total, c)
        if stderr <= tolerance * abs(value):
            break
        if refined and batch >= 16 * regressors.shape[1]:  # each batch's samples refine the next one's control
            update = refine(samples, regressors).to(torch.float32)
            if correction is None:
                drawn = []  # the first batch only steers: the value pools the batches under refined controls
            correction = update if correction is None else correction + update
    model.train(was_training)
    n = total.numel()
    variance = float(total.var())
    return ControlBound(float(total.mean()), math.sqrt(variance / n), side, n, substeps, variance,
                        value, stderr, effective)
