"""The contract every equation fulfils.

An equation is the semilinear parabolic PDE

    u_t + mu . grad u + 1/2 tr(sigma sigma^T Hess u) + f(t, x, u, sigma^T grad u) = 0,   u(T, x) = g(x),

together with its forward SDE dX = mu dt + sigma dW, X_0 = x0. Along X the pair
Y_t = u(t, X_t), Z_t = sigma^T grad u(t, X_t) solves dY = -f(t, X, Y, Z) dt + Z . dW.

Each concrete equation is one small pydantic model: its fields are the problem
parameters (validated where they enter), its methods the driver ``f`` and the
terminal condition ``g``; ``process`` says how to simulate X.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Sequence

from pydantic import ConfigDict, Field, field_validator, model_validator

from bsde.no_bools import NoBoolNumbers
from bsde.processes import GBM, BrownianMotion, GeometricBrownian, Process, ScaledBrownian  # noqa: F401 (old names)

if TYPE_CHECKING:
    import torch  # equations act on tensors but never make one: reading a problem must not import torch


def _finite(value: float, name: str) -> float:
    if not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value}")
    return value


def given_values(value: Any, dim: int, name: str) -> tuple[float, ...]:
    """The numbers as written: a scalar stays one number, a list must have length ``dim``.

    Checks shape and finiteness without building ``dim`` copies (dim may be huge before the
    memory check refuses it).
    """
    if isinstance(value, (list, tuple)):
        if len(value) != dim:
            raise ValueError(f"{name}: expected a number or a list of dim = {dim} numbers, got a list of {len(value)}")
        return tuple(_finite(float(v), name) for v in value)
    return (_finite(float(value), name),)


def broadcast(value: Any, dim: int, name: str) -> tuple[float, ...]:
    """A scalar becomes ``dim`` copies; a list must have length ``dim``."""
    values = given_values(value, dim, name)
    return values if isinstance(value, (list, tuple)) else values * dim


Vector = float | list[float]
#: the largest dim a problem may give: a solve keeps batch x steps x dim numbers per path tensor, so far beyond this
#: no machine holds one (the memory check refuses smaller ones); a bound checked before anything has dim entries
MAX_DIM = 10_000_000


class Equation(NoBoolNumbers):
    """Base class: dim, horizon and starting point, shared by every equation."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=False, allow_inf_nan=False)

    kind: str
    dim: int = Field(100, ge=1, le=MAX_DIM, description="number of space dimensions d (at most 10,000,000)")
    total_time: float = Field(1.0, gt=0, description="horizon T")
    x0: Vector = Field(0.0, description="starting point: a number (broadcast) or a list of length dim")

    #: name -> (reference value, source) for the default configuration; informational only
    published: ClassVar[tuple[float, str] | None] = None

    @field_validator("dim", mode="before")
    @classmethod
    def _integral_dim(cls, value: Any) -> Any:
        if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
            raise ValueError("dim must be a whole number")
        return value

    @model_validator(mode="after")
    def _check_x0(self) -> Equation:
        given_values(self.x0, self.dim, "x0")
        return self

    # ------------------------------------------------------------------ the maths
    @property
    def x_start(self) -> tuple[float, ...]:
        """x0 as a tuple of length dim."""
        return broadcast(self.x0, self.dim, "x0")

    @property
    def process(self) -> Process:
        """The law of the forward SDE."""
        raise NotImplementedError

    def driver(self, t: float, x: torch.Tensor, y: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """f(t, x, y, z) for x (..., dim), y (...), z (..., dim); returns (...); broadcasts over leading axes."""
        raise NotImplementedError

    def terminal(self, x: torch.Tensor) -> torch.Tensor:
        """g(x) for x (..., dim); returns (...)."""
        raise NotImplementedError

    @property
    def discount_rate(self) -> float:
        """r where the driver is exactly -r y (linear pricing); 0 otherwise."""
        return 0.0

    @property
    def driver_uses_z(self) -> bool:
        """Whether f depends on z (decides which reference methods apply)."""
        return True

    @property
    def discount_factor(self) -> float:
        """e^{-rT}: what the driver-free value E g(X_T) is multiplied by."""
        return math.exp(-self.discount_rate * self.total_time)

    @property
    def driver_is_linear(self) -> bool:
        """Whether f = -discount_rate * y exactly (then E e^{-rT} g(X_T) is the answer, whatever Z is)."""
        return False

    @property
    def driver_uses_y(self) -> bool:
        """Whether f depends on y; if not, the solver evaluates f for all steps in one call."""
        return True

    def driver_z_gradient(self, t: Any, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """grad_z f(t, x, z) (..., dim) for a driver that does not use y, by autograd."""
        import torch  # only solving needs it

        with torch.enable_grad():
            leaf = z.detach().requires_grad_(True)
            (grad,) = torch.autograd.grad(self.driver(t, x, z.new_zeros(()), leaf).sum(), leaf)
        return grad

    @property
    def z_hessian(self) -> float | None:
        """c where f(t, x, y, z) = -(c/2)|z|^2 + (terms linear in z) for every (t, x, y), i.e. grad_z^2 f = -c I;
        None otherwise. c > 0: f is concave in z (a control problem), c < 0: convex."""
        return None

    @property
    def controllable(self) -> bool:
        """Whether the learned Z can steer the paths (a control representation with drift sigma grad_z f):
        f quadratic in z (``z_hessian``), not using y, and a process whose steered steps are exact."""
        return bool(self.z_hessian) and not self.driver_uses_y and self.process.steerable

    @property
    def linear_pieces(self) -> list[tuple[float, float]] | None:
        """[(r_k, c_k)] where f(t, x, y, z) = max_k (-r_k y - c_k sum(z)) (differing rates: one piece per rate), so
        that every piece lies below f (bsde.regime_bound); None otherwise."""
        return None

    def radial_form(self) -> RadialForm | None:
        """The problem reduced to r = |x - 0| when g and f depend on |x| and |z| only."""
        return None

    #: whether ``exact_solution`` knows u(t, x) in closed form (then the reference method "exact" applies)
    has_exact_solution: ClassVar[bool] = False

    def exact_solution(self, t: Any, x: torch.Tensor) -> torch.Tensor:
        """u(t, x) in closed form for x (..., dim) and t a number or a tensor broadcasting against x[..., 0]."""
        raise NotImplementedError(f"'{self.kind}' has no closed-form solution")


def time_like(t: Any, x: torch.Tensor) -> torch.Tensor:
    """t (a number or a tensor) as a tensor of x's dtype and device, for formulas in t and x."""
    import torch  # only evaluating an equation needs it

    return torch.as_tensor(t, dtype=x.dtype, device=x.device)


def squared_norm(v: torch.Tensor) -> torch.Tensor:
    """|v|^2 along the last axis, fused forward and backward (:mod:`bsde.squared_norm`): for drivers and
    terminal conditions, in place of ``v.square().sum(-1)`` (3-5x its time over Z at d = 1,000-10,000)."""
    from bsde.squared_norm import squared_norm as fused  # only evaluating an equation needs torch

    return fused(v)


def pricing_measure_note(equation: Equation, linear: Sequence[Any] | None = None) -> str | None:
    """A note where a price is not risk-neutral: the driver discounts at r while a GBM's assets drift at other rates,
    so u = e^{-rT} E g(X_T) under that drift (the PDE as written, but rarely the price meant); else None.

    For f = -r y the rate is the drift mu. With ``linear`` = (r, m, ...) for f = -r y + m . z + k(t, x) (found by
    probing the driver, :func:`bsde.girsanov.girsanov_drift`, which needs torch) asset i drifts at
    mu + vol_i (C^{1/2} m)_i.
    """
    process = equation.process
    if not isinstance(process, GBM):
        return None
    if linear is None:
        if not equation.driver_is_linear:
            return None
        rate = equation.discount_rate
        if math.isclose(process.drift, rate, rel_tol=1e-12, abs_tol=1e-15):
            return None
        return (f"the process drifts at {process.drift:g} but the driver discounts at r = {rate:g}: the value is "
                f"e^(-rT) E g(X_T) under that drift, not a risk-neutral price (for one, set the process's drift to r)")
    from bsde.girsanov import drift_shift

    rate, m = linear[0], linear[1]
    rates = [process.drift + shift for shift in drift_shift(equation, m)]
    if all(math.isclose(value, rate, abs_tol=1e-6) for value in rates):  # a rounded m (6 digits) is r to 1e-7
        return None
    texts = [f"{value:.4g}" for value in rates]
    shown = texts[0] if len(set(texts)) == 1 else "[" + ", ".join(texts[:4]) + (", ...]" if len(texts) > 4 else "]")
    drift = ("drift at" if not any(process.dividends(equation.dim)) else
             "return (drift plus dividend yield)")  # what a risk-neutral measure sets to r
    return (f"with the driver's z-term m . z the assets {drift} {shown} but the driver discounts at r = {rate:g}: "
            f"the value is e^(-rT) E g(X_T) under that drift, not a risk-neutral price (for one, m = C^(-1/2) (r - mu) "
            f"/ vol; with a correlation, not (r - mu) / vol)")


@dataclass(frozen=True)
class RadialForm:
    """u(t, x) = v(t, |x|) solves v_t + (sigma^2/2)(v_rr + (d-1)/r v_r) + f(v, sigma |v_r|) = 0.

    ``terminal(r)`` and ``driver(y, z_norm)`` act on numpy arrays elementwise.
    """

    dim: int
    sigma: float
    total_time: float
    r0: float
    terminal: Any
    driver: Any
