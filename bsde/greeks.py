"""Greeks from the forward process: grad u = sigma^{-T} Z, and pathwise / likelihood-ratio weights of a transition.

delta:   Z = sigma(x)^T grad u  =>  grad u(x) = sigma(x)^{-T} Z  (:func:`gradient_from_z`);
one exact transition X = X(x0, xi) over a time h, with diagonal Jacobian w = dX/dx0 and score
s = grad_{x0} log p(X | x0):  grad E[phi(X)] = E[w o grad phi(X)]  (pathwise), and for q_i = w_i d_i phi(X)
d_j E[q_i] = E[q_i s_j] + E[d_j q_i |X fixed]  (likelihood ratio on the pathwise delta: the "mixed" gamma).
The reference Greeks use it over [0, T] with phi = g; a point solve's gamma over the first step with the
trained grad u(t_1, .) = sigma^{-T} Z_1 (:func:`first_step_greeks`).

The process-specific pieces (w, s, d log w / dx0 and sigma^{-T}) are small functions here, for the processes
of ``bsde.processes`` that have them, next to each other so that they are easy to move onto the process objects.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch

from bsde.processes import GBM, BrownianMotion, Diffusion, Process

#: above this dimension a gamma is its diagonal only (a full d x d Hessian is kept up to here)
GAMMA_FULL_MAX_DIM = 100
#: above this dimension a point solve computes no gamma (the first-step estimate needs paths of d numbers)
GAMMA_MAX_DIM = 10_000
#: float64 numbers held per chunk of first-step paths
CHUNK_ELEMENTS = 1 << 22


def inverse_correlation_root(v: torch.Tensor, rho: float) -> torch.Tensor:
    """C^{-1/2} v along the last axis for C = (1 - rho) I + rho 11^T, in O(dim).

    C^{1/2} = a I + c 11^T (see ``uniform_correlation_root``), whose inverse is (I - c/(a + c d) 11^T) / a.
    """
    if rho == 0.0:
        return v
    d = v.shape[-1]
    a = math.sqrt(1.0 - rho)
    c = (math.sqrt(1.0 - rho + rho * d) - a) / d
    return (v - (c / (a + c * d)) * v.sum(-1, keepdim=True)) / a


def _inverse_correlation_root(process: GBM, w: torch.Tensor) -> torch.Tensor:
    """C^{-1/2} w along the last axis, C^{1/2} the symmetric root of the correlation (see ``GBM``)."""
    if not process.full_correlation:
        return inverse_correlation_root(w, process.correlation)
    return w @ process._tensor("inverse root", w)  # symmetric


def gradient_from_z(process: Process, x: torch.Tensor, z: torch.Tensor, t: float | None = None,
                    over: float | None = None) -> torch.Tensor:
    """grad u = sigma(t, x)^{-T} z along the last axis: the inverse of ``process.diffusion_transpose``.

    Brownian: z / sigma; GBM (sigma^T v = C^{1/2} (vol x o v)): C^{-1/2} z / (vol x); a diagonal Diffusion:
    z / sigma(t, x), or with ``over`` (the step that z hedges, as one Z_n . dW_n) z / ``Diffusion.mean_sigma``
    (the inverse of ``step_transpose``); any other process: the d x d system sigma^T v = z, its matrix built from
    ``diffusion_transpose`` (small d only). A zero volatility makes its coordinates infinite or NaN
    (Z does not see them).
    """
    if isinstance(process, BrownianMotion):
        return z / process.sigma
    if isinstance(process, GBM):
        vol = torch.tensor(process.vols(x.shape[-1]), device=x.device, dtype=x.dtype)
        return _inverse_correlation_root(process, z) / (vol * x)
    if isinstance(process, Diffusion):
        return z / (process.sigma(t, x) if over is None else process.mean_sigma(t or 0.0, x, over))
    d = x.shape[-1]
    eye = torch.eye(d, device=x.device, dtype=x.dtype)
    # row j of the batch below is sigma^T e_j, column j of sigma^T: the batch is sigma itself
    sigma = process.diffusion_transpose(x.unsqueeze(-2).expand(*x.shape[:-1], d, d), eye.expand(*x.shape[:-1], d, d), t)
    return torch.linalg.solve(sigma.transpose(-1, -2), z)


def diffusion_times(process: Process, x: torch.Tensor, v: torch.Tensor, t: float | None = None) -> torch.Tensor:
    """sigma(t, x) v along the last axis: the adjoint of ``diffusion_transpose`` (by autograd of <v, sigma^T q>)."""
    with torch.enable_grad():
        probe = torch.zeros_like(x, requires_grad=True)
        (out,) = torch.autograd.grad((v.detach() * process.diffusion_transpose(x.detach(), probe, t)).sum(), probe)
    return out


# ------------------------------------------------------------------ one transition: pathwise and likelihood ratio
#: the processes whose exact transition is coordinatewise in x0 (a diagonal Jacobian) with a known score
TRANSITION_GREEKS = (BrownianMotion, GBM)


def transition_weights(process: Process, x0: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """w = dX/dx0 (diagonal) of the exact transition from x0 to x: 1 (Brownian), x / x0 (GBM)."""
    if isinstance(process, BrownianMotion):
        return torch.ones_like(x)
    if isinstance(process, GBM):
        return x / x0
    raise TypeError(f"no pathwise weights for process {type(process).__name__}")


def weight_slope(process: Process, x0: torch.Tensor) -> torch.Tensor:
    """d log w_i / d x0_i with X fixed: 0 (Brownian), -1 / x0_i (GBM)."""
    if isinstance(process, BrownianMotion):
        return torch.zeros_like(x0)
    if isinstance(process, GBM):
        return -1.0 / x0
    raise TypeError(f"no pathwise weights for process {type(process).__name__}")


def transition_score(process: Process, x0: torch.Tensor, h: float, normals: torch.Tensor) -> torch.Tensor:
    """s = grad_{x0} log p(X | x0) for X driven by the standard normals over time h: sigma(x0)^{-T} xi / sqrt h.

    Brownian (X = x0 + drift h + sigma sqrt(h) xi): xi / (sigma sqrt h); GBM (log X = log x0 + m + vol o C^{1/2}
    xi sqrt h, a Gaussian with covariance h diag(vol) C diag(vol) in log x): C^{-1/2} xi / (vol x0 sqrt h).
    """
    if not isinstance(process, TRANSITION_GREEKS):
        raise TypeError(f"no likelihood ratio for process {type(process).__name__}")
    return gradient_from_z(process, x0, normals) / math.sqrt(h)


@dataclass(frozen=True)
class Greeks:
    """delta (d,) and gamma ((d, d), or (d,) its diagonal above GAMMA_FULL_MAX_DIM) with their standard errors."""

    delta: torch.Tensor
    delta_stderr: torch.Tensor
    gamma: torch.Tensor
    gamma_stderr: torch.Tensor
    pairs: int

    @property
    def gamma_diag(self) -> torch.Tensor:
        return self.gamma.diagonal() if self.gamma.ndim == 2 else self.gamma

    @property
    def gamma_diag_stderr(self) -> torch.Tensor:
        return self.gamma_stderr.diagonal() if self.gamma_stderr.ndim == 2 else self.gamma_stderr


def transition_greeks(process: Process, x0: torch.Tensor, h: float, gradient_at: Callable[[torch.Tensor], torch.Tensor],
                      *, discount: float, pairs: int, generator: torch.Generator,
                      full: bool | None = None) -> Greeks:
    """grad and Hessian in x0 of discount * E[phi(X_h)] from grad phi alone, with antithetic pairs.

    delta = discount E[w o grad phi(X)];  gamma_ij = discount (E[q_i s_j] + delta_ij E[q_i] d log w_i / dx0_i),
    q = w o grad phi(X). Per pair (xi, -xi): the delta sample is (q+ + q-)/2 and, s being odd in xi, the gamma
    sample ((q+ - q-)/2) s(xi)^T + diag((q+ + q-)/2 o d log w); standard errors over pairs. ``full``: the whole
    Hessian (default: up to GAMMA_FULL_MAX_DIM), else its diagonal.
    """
    d = x0.shape[-1]
    full = d <= GAMMA_FULL_MAX_DIM if full is None else full
    slope = weight_slope(process, x0)
    chunk = max(16, CHUNK_ELEMENTS // (8 * d))
    kw = {"dtype": x0.dtype, "device": x0.device}
    sums = {k: torch.zeros(d, d, **kw) if full and k.startswith("g") else torch.zeros(d, **kw)
            for k in ("d1", "d2", "g1", "g2")}
    done = 0
    while done < pairs:
        n = min(chunk, pairs - done)
        # drawn where the generator is (a CPU generator gives the same numbers whatever device computes)
        normals = torch.randn(n, d, generator=generator, dtype=x0.dtype, device=generator.device).to(x0.device)
        plus, minus = process.transition(x0, h, normals), process.transition(x0, h, -normals)
        q_plus = transition_weights(process, x0, plus) * gradient_at(plus)
        q_minus = transition_weights(process, x0, minus) * gradient_at(minus)
        mean, half = 0.5 * (q_plus + q_minus), 0.5 * (q_plus - q_minus)
        score = transition_score(process, x0, h, normals)
        sums["d1"] += mean.sum(0)
        sums["d2"] += mean.square().sum(0)
        diagonal = half * score  # the sample's gamma is half s^T + diag(mean o slope): sums by matmul, not (n, d, d)
        extra = mean * slope
        if full:
            sums["g1"] += half.T @ score + torch.diag(extra.sum(0))
            sums["g2"] += half.square().T @ score.square() + torch.diag((2 * diagonal * extra + extra.square()).sum(0))
        else:
            sums["g1"] += (diagonal + extra).sum(0)
            sums["g2"] += (diagonal + extra).square().sum(0)
        done += n

    def moments(first: torch.Tensor, second: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean = first / pairs
        var = (second / pairs - mean.square()).clamp(min=0.0) * pairs / max(pairs - 1, 1)
        return discount * mean, discount * (var / pairs).sqrt()

    delta, delta_err = moments(sums["d1"], sums["d2"])
    gamma, gamma_err = moments(sums["g1"], sums["g2"])
    if full:  # the estimator is not symmetric sample by sample; its mean is
        gamma, gamma_err = 0.5 * (gamma + gamma.T), 0.5 * (gamma_err + gamma_err.T)
    return Greeks(delta, delta_err, gamma, gamma_err, pairs)


def first_step_pairs(dim: int) -> int:
    """Antithetic pairs for a point solve's first-step Greeks: about 2^21 / d, between 2^10 and 2^16."""
    return min(1 << 16, max(1 << 10, (1 << 21) // dim))


def first_step_greeks(model, *, generator: torch.Generator, pairs: int | None = None) -> Greeks:
    """A point solve's Greeks at x0 through its first step: u(0, x0) ~ e^{-r dt} E[u(t_1, X_1)].

    grad u(t_1, .) = sigma^{-T} Z_1 is the trained step network at t_1 (inference mode); for a driver
    f = -r y the relation is exact up to the network's error, for other drivers it leaves O(dt).
    Needs at least 2 time steps (Z_1 a network).
    """
    equation = model.equation
    if model.time_steps < 2:
        raise ValueError("first-step Greeks need at least 2 time steps (Z_1 is a network)")
    dt = equation.total_time / model.time_steps
    like = model.y0
    x0 = torch.as_tensor(equation.x_start, dtype=like.dtype, device=like.device)
    process = equation.process

    def gradient_at(x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return gradient_from_z(process, x, model.z_at(1, x), dt)

    discount = math.exp(-equation.discount_rate * dt) if equation.driver_is_linear else 1.0
    was_training = model.training
    model.eval()
    try:
        return transition_greeks(process, x0, dt, gradient_at, discount=discount,
                                 pairs=pairs or first_step_pairs(equation.dim), generator=generator)
    finally:
        model.train(was_training)
