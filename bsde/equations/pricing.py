"""Option pricing under multi-dimensional Black-Scholes dynamics.

Assets follow dS_i = (rate - dividend) S_i dt + vol_i S_i dB_i (uniform correlation), and
discounting at ``rate`` gives the linear driver f = -rate y.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import Field, model_validator

from bsde.equations.base import Equation, GeometricBrownian, Vector, broadcast, given_values

if TYPE_CHECKING:
    import torch


class BlackScholes(Equation):
    """Shared market: rate, dividend, per-asset vol, uniform correlation."""

    x0: Vector = Field(100.0, description="initial asset prices")
    rate: float = Field(0.05, description="risk-free rate r")
    dividend: float = Field(0.0, description="continuous dividend yield q")
    vol: Vector = Field(0.2, description="volatility: a number or a list of length dim")
    correlation: float = Field(0.0, description="uniform pairwise correlation of the Brownian drivers")

    @model_validator(mode="after")
    def _check_market(self) -> Any:
        if any(v <= 0 for v in given_values(self.x0, self.dim, "x0")):
            raise ValueError(f"x0: asset prices must be positive, got {self.x0}")
        if any(v < 0 for v in given_values(self.vol, self.dim, "vol")):
            raise ValueError(f"vol: volatilities must be non-negative, got {self.vol}")
        if self.dim > 1 and not (-1.0 / (self.dim - 1) < self.correlation < 1.0):
            raise ValueError(
                f"correlation: {self.correlation} makes the {self.dim}x{self.dim} correlation matrix "
                f"not positive definite (need -1/(dim-1) < correlation < 1)"
            )
        return self

    @property
    def vols(self) -> tuple[float, ...]:
        return broadcast(self.vol, self.dim, "vol")

    @property
    def process(self) -> GeometricBrownian:
        return GeometricBrownian(self.rate - self.dividend, self.vols, self.correlation)

    def driver(self, t, x, y, z):
        return -self.rate * y

    @property
    def discount_rate(self) -> float:
        return self.rate

    @property
    def driver_is_linear(self) -> bool:
        return True

    @property
    def driver_uses_z(self) -> bool:
        return False


class MaxCall(BlackScholes):
    """European call on the maximum: g = max(max_i S_i - K, 0), f = -r y."""

    kind: Literal["max_call"] = "max_call"
    strike: float = Field(100.0, ge=0, description="strike K")

    def terminal(self, x):
        return (x.amax(-1) - self.strike).clamp(min=0.0)


class DefaultRisk(Equation):
    """Nonlinear Black-Scholes with default risk (Han, Jentzen, E 2018; Duffie et al. 1996).

    dX_i = mu X_i dt + sigma X_i dW_i, g = min_i x_i,
    f = -(1 - delta) Q(y) y - R y with Q piecewise linear: gamma_h below v_h, gamma_l above v_l.
    """

    kind: Literal["default_risk"] = "default_risk"
    x0: Vector = Field(100.0, description="initial values")
    delta: float = Field(2.0 / 3.0, ge=0, le=1, description="recovery fraction delta")
    rate: float = Field(0.02, description="interest rate R")
    gamma_h: float = Field(0.2, ge=0, description="default intensity at low values")
    gamma_l: float = Field(0.02, ge=0, description="default intensity at high values")
    v_h: float = Field(50.0, description="value below which the intensity is gamma_h")
    v_l: float = Field(70.0, description="value above which the intensity is gamma_l")
    mu: float = Field(0.02, description="drift mu")
    sigma: float = Field(0.2, ge=0, description="volatility sigma")

    published: ClassVar = (57.300, "Han, Jentzen, E, PNAS 115 (2018) 8505, Fig. 2 (dim 100)")

    @model_validator(mode="after")
    def _check_levels(self) -> Any:
        if not self.v_h < self.v_l:
            raise ValueError(f"v_h ({self.v_h}) must be below v_l ({self.v_l})")
        if any(v <= 0 for v in given_values(self.x0, self.dim, "x0")):
            raise ValueError(f"x0: values must be positive, got {self.x0}")
        return self

    @property
    def process(self) -> GeometricBrownian:
        return GeometricBrownian(self.mu, (self.sigma,) * self.dim, 0.0)

    def intensity(self, y: torch.Tensor) -> torch.Tensor:
        """Q(y): gamma_h for y < v_h, gamma_l for y > v_l, linear in between."""
        w = ((y - self.v_h) / (self.v_l - self.v_h)).clamp(0.0, 1.0)
        return self.gamma_h + (self.gamma_l - self.gamma_h) * w

    def driver(self, t, x, y, z):
        return -(1.0 - self.delta) * self.intensity(y) * y - self.rate * y

    def terminal(self, x):
        return x.amin(-1)

    @property
    def driver_uses_z(self) -> bool:
        return False
