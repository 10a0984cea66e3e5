"""Time-dependent reaction-diffusion example (E, Han, Jentzen, Comm. Math. Stat. 5 (2017) 349, Sec. 4.7).

u_t + Lap u / 2 + min(1, (u - v(t, x))^2) = 0,  u(T, x) = 1 + kappa + sin(lam sum x),  X = x0 + W, with
v(t, x) = 1 + kappa + sin(lam sum x) exp(lam^2 d (t - T) / 2), which solves v_t + Lap v / 2 = 0. So u = v
(the reaction vanishes on the solution): the answer is also E g(X_T), and what the solver must learn is Z
(with Z = 0 the reaction term pulls y0 away from it).
"""

from __future__ import annotations

import math
from typing import Literal

from pydantic import Field

from bsde.equations.base import Equation, time_like
from bsde.processes import BrownianMotion


class ReactionDiffusion(Equation):
    """u_t + Lap u / 2 + min(1, (u - v)^2) = 0, v = 1 + kappa + sin(lam sum x) e^{lam^2 d (t - T)/2} = u."""

    kind: Literal["reaction_diffusion"] = "reaction_diffusion"
    kappa: float = Field(0.6, description="offset kappa")
    lam: float | None = Field(None, gt=0, description="frequency lambda; default 1/sqrt(dim)")

    has_exact_solution = True

    @property
    def frequency(self) -> float:
        return self.lam if self.lam is not None else 1.0 / math.sqrt(self.dim)

    @property
    def process(self) -> BrownianMotion:
        return BrownianMotion(1.0)

    def driver(self, t, x, y, z):
        return (y - self.exact_solution(t, x)).square().clamp(max=1.0)

    def terminal(self, x):
        return 1.0 + self.kappa + (self.frequency * x.sum(-1)).sin()

    def exact_solution(self, t, x):
        lam = self.frequency
        decay = (0.5 * lam * lam * self.dim * (time_like(t, x) - self.total_time)).exp()
        return 1.0 + self.kappa + (lam * x.sum(-1)).sin() * decay

    @property
    def driver_uses_z(self) -> bool:
        return False
