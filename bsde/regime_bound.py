"""A lower bound for a driver that is the largest of linear ones, f = max_k (-r_k y - c_k sum(z)) (differing rates).

Each piece lies below f, so by the comparison theorem the value of its linear BSDE,
    L_k = E[exp(-r_k T - c_k sum_i W_i(T) - d c_k^2 T / 2) g(X_T)]
(the discount times the Girsanov density of the drift -c_k on each coordinate of W), is at most u(0, x0); for
differing rates L_k is the Black-Scholes price at the rate R_k. The bound is the largest L_k, by Monte Carlo of
X_T in one exact step (antithetic pairs), with its standard error. The Richardson basis of the error estimate
is checked against it (bsde.error_estimate.with_bound).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch

from bsde.equations.base import Equation
from bsde.reference.sampling import DEVICE, antithetic_moments

REGIME_PATHS = 1 << 18


@dataclass(frozen=True)
class RegimeBound:
    """u(0, x0) >= value (+- stderr): the value of the piece ``piece`` of the driver held throughout."""

    value: float
    stderr: float
    paths: int
    piece: int
    side: Literal["lower"] = "lower"

    @property
    def source(self) -> str:
        """What the bound is, in words."""
        return f"the driver's linear piece {self.piece} held throughout, which lies below f"


def regime_bound(equation: Equation, *, paths: int = REGIME_PATHS, seed: int = 0) -> RegimeBound | None:
    """The lower bound of the module docstring; None where the driver is not a maximum of linear pieces, the process
    has no exact transition, or the values are not finite."""
    pieces = equation.linear_pieces
    if not pieces or not equation.process.exact:
        return None
    rates = torch.tensor([rate for rate, _ in pieces], dtype=torch.float64, device=DEVICE)
    slopes = torch.tensor([slope for _, slope in pieces], dtype=torch.float64, device=DEVICE)
    start = torch.tensor(equation.x_start, dtype=torch.float64, device=DEVICE)
    horizon, dim = equation.total_time, equation.dim

    def columns(normals: torch.Tensor) -> torch.Tensor:  # (n, K): each piece's deflated payoff
        terminal = equation.terminal(equation.process.transition(start, horizon, normals)).to(torch.float64)
        exponent = (rates * horizon + slopes * math.sqrt(horizon) * normals.sum(-1, keepdim=True)
                    + 0.5 * dim * slopes**2 * horizon)
        return torch.exp(-exponent) * terminal.unsqueeze(-1)

    moments = antithetic_moments(columns, paths, dim, generator=torch.Generator(device=DEVICE).manual_seed(seed))
    best = int(moments.mean.argmax())
    value, stderr = float(moments.mean[best]), math.sqrt(max(float(moments.cov[best, best]), 0.0) / moments.n)
    if not math.isfinite(value + stderr):
        return None
    return RegimeBound(value, stderr, 2 * moments.n, best)
