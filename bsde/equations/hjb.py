"""Hamilton-Jacobi-Bellman equation of linear-quadratic-Gaussian control (Han, Jentzen, E 2018).

u_t + Lap u - lam |grad u|^2 = 0,  u(T, x) = ln((1 + |x|^2) / 2),  X = x0 + sqrt(2) W.
With Z = sqrt(2) grad u the driver is f = -(lam / 2) |Z|^2.
"""

from __future__ import annotations

import math
from typing import ClassVar, Literal

from pydantic import Field

from bsde.equations.base import Equation, RadialForm, squared_norm
from bsde.processes import BrownianMotion

SIGMA = math.sqrt(2.0)


class HJB(Equation):
    """LQG control: u_t + Lap u - lam |grad u|^2 = 0, g = ln((1+|x|^2)/2)."""

    kind: Literal["hjb"] = "hjb"
    lam: float = Field(1.0, description="control cost weight lambda")

    published: ClassVar = (4.5901, "Han, Jentzen, E, PNAS 115 (2018) 8505, Fig. 3 (dim 100, lam 1)")

    @property
    def process(self) -> BrownianMotion:
        return BrownianMotion(SIGMA)

    def driver(self, t, x, y, z):
        return -0.5 * self.lam * squared_norm(z)

    @property
    def driver_uses_y(self) -> bool:
        return False

    @property
    def driver_uses_z(self) -> bool:
        return self.lam != 0

    @property
    def driver_is_linear(self) -> bool:
        """At lam = 0 the driver is 0 = -0 y: the heat equation, u0 = E g(X_T)."""
        return self.lam == 0

    def driver_z_gradient(self, t, x, z):
        return -self.lam * z

    @property
    def z_hessian(self) -> float | None:
        """f = -(lam/2)|z|^2: grad_z^2 f = -lam I (none at lam = 0: the heat equation, f = 0)."""
        return self.lam if self.lam != 0 else None

    def terminal(self, x):
        return ((1.0 + squared_norm(x)) / 2.0).log()

    def radial_form(self) -> RadialForm | None:
        import numpy as np

        r0 = math.sqrt(sum(v * v for v in self.x_start))
        lam = self.lam
        return RadialForm(
            dim=self.dim, sigma=SIGMA, total_time=self.total_time, r0=r0,
            terminal=lambda r: np.log((1.0 + r * r) / 2.0),
            driver=lambda y, zn: -0.5 * lam * zn * zn,
        )
