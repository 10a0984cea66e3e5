"""Multidimensional Burgers-type equation (E, Han, Jentzen, Comm. Math. Stat. 5 (2017) 349, Sec. 4.5).

u_t + (d^2/2) Lap u + (u - (2 + d)/(2d)) d sum_i u_{x_i} = 0,  X = x0 + d W,  so Z = d grad u and
f = (y - (2 + d)/(2d)) sum(z). Exact solution u(t, x) = s(t + sum(x)/d) with the logistic s(a) = e^a/(1 + e^a):
u_t = s', (d^2/2) Lap u = (d/2) s'', sum(z) = s', and s'' = s'(1 - 2s) make the residual vanish (the
diffusion d is what this driver needs; any other sigma leaves a residual).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from bsde.equations.base import MAX_DIM, Equation, time_like
from bsde.processes import BrownianMotion


class BurgersType(Equation):
    """u_t + (d^2/2) Lap u + (u - (2+d)/(2d)) d sum grad u = 0; u = s(t + sum x / d), s the logistic function."""

    kind: Literal["burgers_type"] = "burgers_type"
    dim: int = Field(50, ge=1, le=MAX_DIM, description="number of space dimensions d (also the diffusion coefficient)")
    total_time: float = Field(0.2, gt=0, description="horizon T")

    has_exact_solution = True

    @property
    def process(self) -> BrownianMotion:
        return BrownianMotion(float(self.dim))

    def driver(self, t, x, y, z):
        return (y - (2.0 + self.dim) / (2.0 * self.dim)) * z.sum(-1)

    def terminal(self, x):
        return (self.total_time + x.sum(-1) / self.dim).sigmoid()

    def exact_solution(self, t, x):
        return (time_like(t, x) + x.sum(-1) / self.dim).sigmoid()
