"""Pricing with different interest rates for borrowing and lending (Bergman 1995; E, Han, Jentzen 2017).

dX_i = mu X_i dt + sigma X_i dW_i;  a hedge holding x . grad u in the assets keeps u - x . grad u in cash,
lent at R^l or borrowed at R^b >= R^l:
    u_t + (sigma^2/2) sum_i x_i^2 u_{x_i x_i} + max(R^b (x . grad u - u), R^l (x . grad u - u)) = 0,
    u(T, x) = max(max_i x_i - K1, 0) - 2 max(max_i x_i - K2, 0).
With z_i = sigma x_i u_{x_i} (so x . grad u = sum(z)/sigma) and the drift mu x . grad u of X taken out:
    f = -R^l y - (mu - R^l) sum(z)/sigma + (R^b - R^l) max(0, sum(z)/sigma - y).
No closed form; f lies above both linear drivers R (sum(z)/sigma - y) - mu sum(z)/sigma (R = R^l, R^b), so u
is at least the larger of the two Black-Scholes prices (comparison theorem).
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field, model_validator

from bsde.equations.base import Equation, Vector, given_values
from bsde.processes import GBM


class DifferingRates(Equation):
    """Call combination max(M - K1, 0) - 2 max(M - K2, 0), M = max_i x_i, hedged at lending/borrowing rates R^l <= R^b."""

    kind: Literal["differing_rates"] = "differing_rates"
    x0: Vector = Field(100.0, description="initial asset prices")
    total_time: float = Field(0.5, gt=0, description="horizon T")
    mu: float = Field(0.06, description="drift mu of the assets")
    sigma: float = Field(0.2, gt=0, description="volatility sigma of every asset")
    rate_lend: float = Field(0.04, description="lending rate R^l")
    rate_borrow: float = Field(0.06, description="borrowing rate R^b (at least R^l)")
    strike_low: float = Field(120.0, description="strike K1 of the call held once")
    strike_high: float = Field(150.0, description="strike K2 of the call sold twice")

    published: ClassVar = (21.299, "E, Han, Jentzen, Comm. Math. Stat. 5 (2017) 349, Sec. 4.4 (dim 100, T 0.5; "
                                   "multilevel Picard)")

    @model_validator(mode="after")
    def _check_market(self) -> Any:
        if any(v <= 0 for v in given_values(self.x0, self.dim, "x0")):
            raise ValueError(f"x0: asset prices must be positive, got {self.x0}")
        if self.rate_borrow < self.rate_lend:
            raise ValueError(f"rate_borrow: {self.rate_borrow} is below rate_lend ({self.rate_lend}); "
                             "the driver assumes R^b >= R^l")
        return self

    @property
    def process(self) -> GBM:
        return GBM(self.mu, self.sigma)

    def driver(self, t, x, y, z):
        stock = z.sum(-1) / self.sigma  # x . grad u, the value held in the assets
        spread = self.rate_borrow - self.rate_lend
        return -self.rate_lend * y - (self.mu - self.rate_lend) * stock + spread * (stock - y).clamp(min=0.0)

    @property
    def linear_pieces(self) -> list[tuple[float, float]]:
        """f = max over R in (R^l, R^b) of -R y - (mu - R) sum(z) / sigma: lending and borrowing."""
        return [(rate, (self.mu - rate) / self.sigma) for rate in (self.rate_lend, self.rate_borrow)]

    def terminal(self, x):
        top = x.amax(-1)
        return (top - self.strike_low).clamp(min=0.0) - 2.0 * (top - self.strike_high).clamp(min=0.0)
