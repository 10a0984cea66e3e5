"""Option pricing under multi-dimensional Black-Scholes dynamics.

Assets follow dS_i = (rate - q_i) S_i dt + vol_i S_i dB_i with corr(dB) a uniform number or a full
matrix, and discounting at ``rate`` gives the linear driver f = -rate y.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import Field, PrivateAttr, model_validator

from bsde.equations.base import Equation, Vector, broadcast, given_values
from bsde.processes import GBM

if TYPE_CHECKING:
    import torch


class BlackScholes(Equation):
    """Shared market: rate, per-asset dividend and vol, uniform or full correlation."""

    x0: Vector = Field(100.0, description="initial asset prices")
    rate: float = Field(0.05, description="risk-free rate r")
    dividend: Vector = Field(0.0, description="continuous dividend yield q: a number or a list of length dim")
    vol: Vector = Field(0.2, description="volatility: a number or a list of length dim")
    correlation: float | list[list[float]] = Field(
        0.0, description="correlation of the Brownian drivers: a uniform number, or a dim x dim matrix")
    _process: GBM | None = PrivateAttr(None)

    @model_validator(mode="after")
    def _check_market(self) -> Any:
        if any(v <= 0 for v in given_values(self.x0, self.dim, "x0")):
            raise ValueError(f"x0: asset prices must be positive, got {self.x0}")
        vol = given_values(self.vol, self.dim, "vol")
        dividend = given_values(self.dividend, self.dim, "dividend")
        if isinstance(self.correlation, list) and len(self.correlation) != self.dim:
            raise ValueError(f"correlation: expected a number or a {self.dim}x{self.dim} matrix, got "
                             f"{len(self.correlation)} rows")
        process = GBM(self.rate, vol, self.correlation, dividend)  # validates the correlation (positive definite)
        process.check_dim(self.dim)
        self._process = process
        return self

    @property
    def vols(self) -> tuple[float, ...]:
        return broadcast(self.vol, self.dim, "vol")

    @property
    def dividends(self) -> tuple[float, ...]:
        return broadcast(self.dividend, self.dim, "dividend")

    @property
    def process(self) -> GBM:
        return self._process

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
    def process(self) -> GBM:
        return GBM(self.mu, self.sigma)

    def intensity(self, y: torch.Tensor) -> torch.Tensor:
        """Q(y): gamma_h for y < v_h, gamma_l for y > v_l, linear in between."""
        w = ((y - self.v_h) / (self.v_l - self.v_h)).clamp(0.0, 1.0)
        return self.gamma_h + (self.gamma_l - self.gamma_h) * w

    def driver(self, t, x, y, z):
        return -(1.0 - self.delta) * self.intensity(y) * y - self.rate * y

    def terminal(self, x):
        return x.amin(-1)

    @property
    def driver_is_linear(self) -> bool:
        """With gamma_h = gamma_l, Q is constant and f = -((1 - delta) gamma + R) y (QA: warned of a trivial
        solution there, and refused the `mc` reference)."""
        return self.gamma_h == self.gamma_l

    @property
    def discount_rate(self) -> float:
        return (1.0 - self.delta) * self.gamma_h + self.rate if self.driver_is_linear else 0.0

    @property
    def driver_uses_z(self) -> bool:
        return False
