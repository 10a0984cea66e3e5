"""An example with quadratically growing derivatives (E, Han, Jentzen, Comm. Math. Stat. 5 (2017) 349, Sec. 4.6).

u_t + Lap u / 2 + |grad u|^2 = psi(t, x),  u(T, x) = sin((|x|^2/d)^alpha),  X = x0 + W (so Z = grad u), with psi
chosen so that u(t, x) = sin(b^alpha), b = T - t + |x|^2/d, is the solution: the driver is
f = |z|^2 - (u_t + Lap u / 2 + |grad u|^2) evaluated on that u. With D = alpha b^{alpha-1} cos(b^alpha) = du/db:
u_t = -D, grad u = 2 D x / d, Lap u = 2 D + (4 |x|^2 / d^2) D', D' = dD/db. The driver is quadratic in z
(``z_hessian`` = -2), so the solver reports the corrected control bound (a lower bound here).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from bsde.equations.base import Equation, squared_norm, time_like
from bsde.processes import BrownianMotion


class QuadraticGradient(Equation):
    """u_t + Lap u / 2 + |grad u|^2 - psi = 0 with the solution u = sin((T - t + |x|^2/d)^alpha)."""

    kind: Literal["quadratic_gradient"] = "quadratic_gradient"
    alpha: float = Field(0.4, gt=0, lt=1, description="exponent alpha")

    has_exact_solution = True

    @property
    def process(self) -> BrownianMotion:
        return BrownianMotion(1.0)

    def _base(self, t, x):
        """b = T - t + |x|^2/d and |x|^2."""
        square = squared_norm(x)
        return self.total_time - time_like(t, x) + square / self.dim, square

    def driver(self, t, x, y, z):
        a, d = self.alpha, self.dim
        b, square = self._base(t, x)
        power = b.pow(a)
        first = a * b.pow(a - 1) * power.cos()  # D = du/db
        second = a * (a - 1) * b.pow(a - 2) * power.cos() - a * a * b.pow(2 * a - 2) * power.sin()  # D' = dD/db
        u_t = -first
        laplacian = 2 * first + 4 * square / d ** 2 * second
        grad_square = 4 * first.square() * square / d ** 2
        return squared_norm(z) - (u_t + 0.5 * laplacian + grad_square)

    def terminal(self, x):
        return (squared_norm(x) / self.dim).pow(self.alpha).sin()

    def exact_solution(self, t, x):
        return self._base(t, x)[0].pow(self.alpha).sin()

    @property
    def driver_uses_y(self) -> bool:
        return False

    def driver_z_gradient(self, t, x, z):
        return 2 * z

    @property
    def z_hessian(self) -> float:
        """f = |z|^2 - psi: grad_z^2 f = 2 I, c = -2 (convex: the control bound is a lower bound)."""
        return -2.0
