"""Allen-Cahn equation (Han, Jentzen, E 2018).

u_t + Lap u + u - u^3 = 0,  u(T, x) = 1 / (2 + 0.4 |x|^2),  X = x0 + sqrt(2) W;  f = y - y^3.
"""

from __future__ import annotations

import math
from typing import ClassVar, Literal

from pydantic import Field

from bsde.equations.base import Equation, RadialForm, squared_norm
from bsde.processes import BrownianMotion

SIGMA = math.sqrt(2.0)


class AllenCahn(Equation):
    """u_t + Lap u + u - u^3 = 0, g = 1/(2 + 0.4|x|^2)."""

    kind: Literal["allen_cahn"] = "allen_cahn"
    total_time: float = Field(0.3, gt=0, description="horizon T")

    published: ClassVar = (0.052802, "Han, Jentzen, E, PNAS 115 (2018) 8505, Fig. 4 (dim 100, T 0.3)")

    @property
    def process(self) -> BrownianMotion:
        return BrownianMotion(SIGMA)

    def driver(self, t, x, y, z):
        return y - y.pow(3)

    def terminal(self, x):
        return 1.0 / (2.0 + 0.4 * squared_norm(x))

    @property
    def driver_uses_z(self) -> bool:
        return False

    def radial_form(self) -> RadialForm:
        r0 = math.sqrt(sum(v * v for v in self.x_start))
        return RadialForm(
            dim=self.dim, sigma=SIGMA, total_time=self.total_time, r0=r0,
            terminal=lambda r: 1.0 / (2.0 + 0.4 * r * r),
            driver=lambda y, zn: y - y ** 3,
        )
