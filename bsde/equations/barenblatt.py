"""Black-Scholes-Barenblatt equation (Raissi, "Forward-backward stochastic neural networks", 2018).

u_t + (sigma^2/2) sum_i x_i^2 u_{x_i x_i} - r (u - x . grad u) = 0,  u(T, x) = |x|^2,  dX = sigma diag(X) dW.
The diffusion is diag(sigma x), so Z = sigma^T grad u has z_i = sigma x_i u_{x_i}, x . grad u = sum(z) / sigma,
and the driver is f = -r (y - sum(z) / sigma). (Writing r (u - sum x_i z_i), as some ports do, multiplies each
term by a stray sigma x_i^2.) Exact solution u(t, x) = exp((r + sigma^2)(T - t)) |x|^2.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from bsde.equations.base import Equation, Vector, broadcast, given_values, squared_norm, time_like
from bsde.processes import GBM


class BlackScholesBarenblatt(Equation):
    """u_t + (sigma^2/2) sum x_i^2 u_ii - r (u - x . grad u) = 0, g = |x|^2; u = e^{(r + sigma^2)(T - t)} |x|^2."""

    kind: Literal["black_scholes_barenblatt"] = "black_scholes_barenblatt"
    x0: Vector | Literal["alternating"] = Field(
        "alternating", description="starting point: a number, a list of dim numbers, or 'alternating' = "
        "(1, 0.5, 1, 0.5, ...) as Raissi")
    rate: float = Field(0.05, description="interest rate r")
    sigma: float = Field(0.4, gt=0, description="volatility sigma of every coordinate")

    has_exact_solution = True

    @model_validator(mode="after")
    def _check_x0(self) -> Any:  # replaces the base check: 'alternating' is a starting point too
        if self.x0 != "alternating" and any(v <= 0 for v in given_values(self.x0, self.dim, "x0")):
            raise ValueError(f"x0: values must be positive (the process is geometric), got {self.x0}")
        return self

    @property
    def x_start(self) -> tuple[float, ...]:
        if self.x0 == "alternating":
            return tuple(1.0 if i % 2 == 0 else 0.5 for i in range(self.dim))
        return broadcast(self.x0, self.dim, "x0")

    @property
    def process(self) -> GBM:
        return GBM(0.0, self.sigma)

    def driver(self, t, x, y, z):
        return -self.rate * (y - z.sum(-1) / self.sigma)

    def terminal(self, x):
        return squared_norm(x)

    def exact_solution(self, t, x):
        growth = (self.rate + self.sigma ** 2) * (self.total_time - time_like(t, x))
        return growth.exp() * squared_norm(x)

