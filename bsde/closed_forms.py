"""Closed forms of e^{-rT} E[payoff(X_T)] under a GBM, declared on an equation and checked before use.

- geometric basket call / put: (G - K)^+ / (K - G)^+, G = (prod_i x_i)^{1/d}; log G_T is normal with
  mean m = mean_i(ln x_i + (mu - q_i - vol_i^2/2) T) and variance s^2 = T/d^2 sum_ij vol_i vol_j C_ij, so
  call = e^{-rT} (e^{m + s^2/2} Phi(d1) - K Phi(d1 - s)), d1 = (m - ln K + s^2) / s (Black-Scholes in G);
- Black-Scholes call / put: the same with d = 1;
- digital (cash-or-nothing) call / put: cash 1{x > K} / cash 1{x < K} on one asset, e^{-rT} cash Phi(+-d2),
  d2 = (ln(x0 / K) + (mu - q - vol^2/2) T) / (vol sqrt T);
- exchange option (Margrabe 1978): (x_1 - x_2)^+ with d = 2; F_i = x_i e^{(mu - q_i) T},
  s^2 = T (vol_1^2 + vol_2^2 - 2 C_12 vol_1 vol_2), value e^{-rT} (F_1 Phi(d1) - F_2 Phi(d1 - s)),
  d1 = (ln(F_1/F_2) + s^2/2) / s.

Declared in Python as ``custom_equation(..., closed_form=GeometricBasketCall(strike=100))`` or in a problem
file as ``closed_form: {name: geometric_basket_call, strike: 100}`` (:func:`from_mapping`). The reference
engine uses one only after checking it (:func:`mismatch`): the process is a GBM, the driver is -r y, and
the payoff equals the equation's terminal condition at states drawn from X_T. Nothing here imports torch.
"""

from __future__ import annotations

import difflib
import math
from dataclasses import MISSING, asdict, dataclass, fields
from typing import TYPE_CHECKING, Any, ClassVar, Mapping

if TYPE_CHECKING:
    import torch

    from bsde.equations.base import Equation
    from bsde.processes import GBM

#: relative agreement asked of payoff and terminal condition at the probe states
AGREE = 1e-9
PROBE_STATES = 256


def normal_cdf(value: float) -> float:
    return 0.5 * math.erfc(-value / math.sqrt(2.0))


def lognormal_option(mean: float, var: float, strike: float, discount: float, call: bool) -> float:
    """e^{-rT} E[(e^L - K)^+] (call) or E[(K - e^L)^+] (put) for L ~ N(mean, var)."""
    forward = math.exp(mean + 0.5 * var)
    if var <= 0.0 or strike <= 0.0:
        intrinsic = forward - strike if call else strike - forward
        return discount * max(intrinsic, 0.0)
    s = math.sqrt(var)
    d1 = (mean - math.log(strike) + var) / s
    if call:
        return discount * (forward * normal_cdf(d1) - strike * normal_cdf(d1 - s))
    return discount * (strike * normal_cdf(s - d1) - forward * normal_cdf(-d1))


def _quadratic_form(process: GBM, weights: list[float]) -> float:
    """sum_ij w_i w_j C_ij: O(d) for a uniform correlation, O(d^2) for a matrix."""
    if not process.full_correlation:
        rho = process.correlation
        return (1.0 - rho) * sum(w * w for w in weights) + rho * sum(weights) ** 2
    return sum(weights[i] * weights[j] * process.correlation[i][j]
               for i in range(len(weights)) for j in range(len(weights)))


class ClosedForm:
    """A payoff with a closed-form price under a GBM (see the module docstring)."""

    name: ClassVar[str]
    #: the dimension the payoff needs (None: any)
    needs_dim: ClassVar[int | None] = None

    def payoff(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def value(self, process: GBM, x0: tuple[float, ...], total_time: float, rate: float) -> float:
        """e^{-rT} E[payoff(X_T)], X a GBM started at x0."""
        raise NotImplementedError

    def check_dim(self, dim: int) -> None:
        if self.needs_dim is not None and dim != self.needs_dim:
            raise ValueError(f"closed_form: {self.name} needs dim = {self.needs_dim}, got dim = {dim}")

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, **asdict(self)}


@dataclass(frozen=True)
class GeometricBasketCall(ClosedForm):
    """(prod_i x_i^{1/d} - strike)^+."""

    strike: float
    name: ClassVar[str] = "geometric_basket_call"
    call: ClassVar[bool] = True

    def __post_init__(self) -> None:
        if not (isinstance(self.strike, (int, float)) and math.isfinite(self.strike) and self.strike >= 0):
            raise ValueError(f"strike: expected a finite number >= 0, got {self.strike!r}")

    def payoff(self, x):
        basket = x.log().mean(-1).exp()
        gap = basket - self.strike if self.call else self.strike - basket
        return gap.clamp(min=0.0)

    def value(self, process, x0, total_time, rate):
        d = len(x0)
        vols, dividends = process.vols(d), process.dividends(d)
        mean = sum(math.log(x) + (process.drift - q - 0.5 * v * v) * total_time
                   for x, v, q in zip(x0, vols, dividends)) / d
        var = total_time * _quadratic_form(process, list(vols)) / (d * d)
        return lognormal_option(mean, var, self.strike, math.exp(-rate * total_time), self.call)


@dataclass(frozen=True)
class GeometricBasketPut(GeometricBasketCall):
    """(strike - prod_i x_i^{1/d})^+."""

    name: ClassVar[str] = "geometric_basket_put"
    call: ClassVar[bool] = False


@dataclass(frozen=True)
class BlackScholesCall(GeometricBasketCall):
    """(x - strike)^+ on one asset."""

    name: ClassVar[str] = "black_scholes_call"
    needs_dim: ClassVar[int | None] = 1

    def payoff(self, x):
        return (x[..., 0] - self.strike).clamp(min=0.0)


@dataclass(frozen=True)
class BlackScholesPut(GeometricBasketPut):
    """(strike - x)^+ on one asset."""

    name: ClassVar[str] = "black_scholes_put"
    needs_dim: ClassVar[int | None] = 1

    def payoff(self, x):
        return (self.strike - x[..., 0]).clamp(min=0.0)


@dataclass(frozen=True)
class DigitalCall(ClosedForm):
    """cash 1{x > strike} on one asset (cash-or-nothing)."""

    strike: float
    cash: float = 1.0
    name: ClassVar[str] = "digital_call"
    needs_dim: ClassVar[int | None] = 1
    call: ClassVar[bool] = True

    def __post_init__(self) -> None:
        if not (isinstance(self.strike, (int, float)) and math.isfinite(self.strike) and self.strike > 0):
            raise ValueError(f"strike: expected a finite number > 0, got {self.strike!r}")
        if not (isinstance(self.cash, (int, float)) and math.isfinite(self.cash)):
            raise ValueError(f"cash: expected a finite number, got {self.cash!r}")

    def payoff(self, x):
        above = x[..., 0] > self.strike if self.call else x[..., 0] < self.strike
        return self.cash * above.to(x.dtype)

    def value(self, process, x0, total_time, rate):
        (vol,), (dividend,) = process.vols(1), process.dividends(1)
        drift = math.log(x0[0] / self.strike) + (process.drift - dividend - 0.5 * vol * vol) * total_time
        spread = vol * math.sqrt(total_time)
        if spread <= 0.0:
            inside = drift > 0 if self.call else drift < 0
            return math.exp(-rate * total_time) * self.cash * float(inside)
        d2 = drift / spread
        return math.exp(-rate * total_time) * self.cash * normal_cdf(d2 if self.call else -d2)


@dataclass(frozen=True)
class DigitalPut(DigitalCall):
    """cash 1{x < strike} on one asset (cash-or-nothing)."""

    name: ClassVar[str] = "digital_put"
    call: ClassVar[bool] = False


@dataclass(frozen=True)
class ExchangeOption(ClosedForm):
    """(x_1 - x_2)^+: the right to exchange asset 2 for asset 1 (Margrabe)."""

    name: ClassVar[str] = "exchange_option"
    needs_dim: ClassVar[int | None] = 2

    def payoff(self, x):
        return (x[..., 0] - x[..., 1]).clamp(min=0.0)

    def value(self, process, x0, total_time, rate):
        vols, dividends = process.vols(2), process.dividends(2)
        forward = [x * math.exp((process.drift - q) * total_time) for x, q in zip(x0, dividends)]
        var = total_time * (vols[0] ** 2 + vols[1] ** 2 - 2.0 * process.correlation_entry(0, 1) * vols[0] * vols[1])
        # E[(F1 e^{A} - F2 e^{B})^+] = F2 E'[(F1/F2 e^{A - B'} - 1)^+] under the measure with numeraire asset 2
        mean = math.log(forward[0] / forward[1]) - 0.5 * var
        return forward[1] * lognormal_option(mean, var, 1.0, math.exp(-rate * total_time), True)


CLOSED_FORMS: dict[str, type[ClosedForm]] = {
    cls.name: cls
    for cls in (GeometricBasketCall, GeometricBasketPut, BlackScholesCall, BlackScholesPut, DigitalCall, DigitalPut,
                ExchangeOption)
}


def from_mapping(spec: Any) -> ClosedForm:
    """A closed form from ``{name: geometric_basket_call, strike: 100}`` (a problem file's ``closed_form``);
    otherwise a ValueError whose message starts with the offending key within that mapping."""
    if isinstance(spec, ClosedForm):
        return spec
    if not isinstance(spec, Mapping) or "name" not in spec:
        raise ValueError(f"expected a mapping with a 'name' (one of {', '.join(CLOSED_FORMS)}) and its "
                         f"parameters, got {spec!r}")
    name = spec["name"]
    cls = CLOSED_FORMS.get(name) if isinstance(name, str) else None
    if cls is None:
        hint = difflib.get_close_matches(str(name), CLOSED_FORMS, n=1)
        suggestion = f"; did you mean '{hint[0]}'?" if hint else ""
        raise ValueError(f"name: unknown closed form {name!r}{suggestion} "
                         f"(known: {', '.join(CLOSED_FORMS)})")
    known = [f.name for f in fields(cls)]
    params = {k: v for k, v in spec.items() if k != "name"}
    for key in params:
        if key not in known:
            raise ValueError(f"{key}: unknown key for {name} (known: {', '.join(['name', *known])})")
    for field in fields(cls):
        if field.name not in params and field.default is MISSING:
            raise ValueError(f"{field.name}: missing (needed by {name})")
    if any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in params.values()):
        raise ValueError(f"{name} takes numbers, got {params!r}")
    return cls(**{k: float(v) for k, v in params.items()})


def mismatch(equation: Equation) -> str | None:
    """Why the equation's declared closed form cannot be used (None: it can): no GBM, a driver that is not
    -r y, or a payoff that differs from the terminal condition at states drawn from X_T (and at x0)."""
    import torch

    from bsde.processes import GBM

    form = getattr(equation, "closed_form", None)
    if form is None:
        return "no closed form declared"
    if not isinstance(equation.process, GBM):
        return f"{form.name} needs a GBM process, not {type(equation.process).__name__}"
    if not equation.driver_is_linear:
        return f"{form.name} prices e^{{-rT}} E[payoff]: the driver must be -r y"
    generator = torch.Generator().manual_seed(0)
    x0 = torch.tensor(equation.x_start, dtype=torch.float64, device="cpu")
    normals = torch.randn(PROBE_STATES, equation.dim, generator=generator, dtype=torch.float64, device="cpu")
    states = torch.cat([x0.unsqueeze(0), equation.process.transition(x0, equation.total_time, normals)])
    g, p = equation.terminal(states).to(torch.float64), form.payoff(states)
    gap = (g - p).abs() > AGREE * (1.0 + g.abs().maximum(p.abs()))
    if bool(gap.any()):
        i = int(gap.nonzero()[0, 0])
        return (f"the declared {form.name} payoff {float(p[i]):.8g} differs from the terminal condition "
                f"{float(g[i]):.8g} at x = {[round(v, 4) for v in states[i].tolist()[:4]]}"
                f"{'...' if equation.dim > 4 else ''}")
    return None


def closed_form_value(equation: Equation) -> float:
    """The declared closed form's value of u(0, x0) (check it first with :func:`mismatch`)."""
    return equation.closed_form.value(equation.process, equation.x_start, equation.total_time,
                                      equation.discount_rate)
