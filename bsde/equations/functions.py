"""An equation from functions: a forward process, a terminal condition g(x) and a driver f(t, x, y, z).

``custom_equation(dim=5, x0=100.0, process=GBM(0.05, 0.2), terminal=g, driver=f)`` returns a
:class:`CustomEquation`. Its solver-facing flags (uses y, uses z, f = -r y, f = -(c/2)|z|^2 + linear)
are those given in ``flags`` (the YAML front end reads them off the expression's syntax tree) or else
derived by probing the driver (:mod:`bsde.probing`); never declared by hand.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import TYPE_CHECKING, Any, Callable

from pydantic import ConfigDict, Field, PrivateAttr, ValidationError, field_serializer, field_validator, model_validator

from bsde.equations.base import Equation, given_values
from bsde.errors import ProblemError
from bsde.probing import DriverFlags
from bsde.processes import Diffusion, Process, _name, call_checked, probe_times

if TYPE_CHECKING:
    import torch


class CustomEquation(Equation):
    """u_t + L u + f(t, x, u, sigma^T grad u) = 0, u(T) = g, with L the generator of ``forward_process``."""

    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True, allow_inf_nan=False)

    kind: str = "custom"
    name: str = Field("custom", description="what reports call the problem")
    forward_process: Any = Field(description="the forward process X (BrownianMotion, GBM or Diffusion)")
    terminal_fn: Any = Field(description="g(x): (..., dim) -> (...)")
    driver_fn: Any = Field(None, description="f(t, x, y, z) -> (...); None means f = 0")
    flags: DriverFlags | None = Field(None, description="the driver's flags where known (else probed)")
    closed_form: Any = Field(None, description="a closed form of u(0, x0) (bsde.closed_forms), checked when used")
    _probed: DriverFlags | None = PrivateAttr(None)

    @field_validator("forward_process")
    @classmethod
    def _is_process(cls, value: Any) -> Any:
        if not isinstance(value, Process):
            raise ValueError(f"expected a process (bsde.BrownianMotion, bsde.GBM or bsde.Diffusion), got "
                             f"{type(value).__name__}")
        return value

    @field_validator("terminal_fn", "driver_fn")
    @classmethod
    def _is_callable(cls, value: Any) -> Any:
        if value is not None and not callable(value):
            raise ValueError(f"expected a function, got {type(value).__name__}")
        return value

    @field_validator("closed_form", mode="before")
    @classmethod
    def _closed_form(cls, value: Any) -> Any:
        from bsde.closed_forms import from_mapping

        return None if value is None else from_mapping(value)

    @model_validator(mode="after")
    def _check_process(self) -> CustomEquation:
        self.forward_process.check_dim(self.dim)
        if self.forward_process.positive and any(v <= 0 for v in given_values(self.x0, self.dim, "x0")):
            raise ValueError(f"x0: a {type(self.forward_process).__name__} starts from positive values, "
                             f"got {self.x0}")
        if self.closed_form is not None:
            self.closed_form.check_dim(self.dim)
            self._check_closed_form_fits()
        return self

    def _check_closed_form_fits(self) -> None:
        """What can be told of a declared closed form without evaluating anything (the payoff is compared with the
        terminal condition before use, bsde.closed_forms.mismatch): it prices e^{-rT} E[payoff] under a GBM."""
        from bsde.processes import GBM

        name = self.closed_form.name
        if not isinstance(self.forward_process, GBM):
            raise ValueError(f"closed_form: {name} needs a gbm process, not {type(self.forward_process).__name__}")
        if self.flags is not None and self.flags.discount_rate is None:
            raise ValueError(f"closed_form: {name} prices e^{{-rT}} E[payoff]: the driver must be -r y")

    @field_serializer("forward_process")
    def _dump_process(self, value: Process) -> dict[str, Any]:
        return value.describe()

    @field_serializer("terminal_fn", "driver_fn")
    def _dump_function(self, value: Any) -> str | None:
        return None if value is None else _name(value)

    @field_serializer("flags")
    def _dump_flags(self, value: DriverFlags | None) -> dict[str, Any] | None:
        return None if value is None else asdict(value)

    @field_serializer("closed_form")
    def _dump_closed_form(self, value: Any) -> dict[str, Any] | None:
        return None if value is None else value.describe()

    # ------------------------------------------------------------------ the maths
    @property
    def process(self) -> Process:
        return self.forward_process

    def terminal(self, x: torch.Tensor) -> torch.Tensor:
        value = self.terminal_fn(x)
        if getattr(value, "shape", None) == x.shape[:-1] and getattr(value, "dtype", None) == x.dtype:
            return value
        return _as_tensor(value, x).expand(x.shape[:-1])  # a number, or another dtype (a digital's bools, say)

    def driver(self, t: Any, x: torch.Tensor, y: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        import torch

        shape = torch.broadcast_shapes(x.shape[:-1], z.shape[:-1], getattr(y, "shape", ()), getattr(t, "shape", ()))
        if self.driver_fn is None:
            return x.new_zeros(shape)
        value = self.driver_fn(t, x, y, z)
        if getattr(value, "shape", None) == shape and getattr(value, "dtype", None) == x.dtype:
            return value
        return _as_tensor(value, x).expand(shape)

    # ------------------------------------------------------------------ flags: given or probed
    @property
    def driver_flags(self) -> DriverFlags:
        """The flags given at construction, else those found by probing the driver (once)."""
        if self.flags is not None:
            return self.flags
        if self.driver_fn is None:
            return DriverFlags(uses_y=False, uses_z=False, discount_rate=0.0)
        if self._probed is None:
            from bsde.probing import probe_driver

            self._probed = probe_driver(self)
        return self._probed

    @property
    def driver_uses_y(self) -> bool:
        return self.driver_flags.uses_y

    @property
    def driver_uses_z(self) -> bool:
        return self.driver_flags.uses_z

    @property
    def driver_is_linear(self) -> bool:
        return self.driver_flags.linear

    @property
    def discount_rate(self) -> float:
        return self.driver_flags.discount_rate or 0.0

    @property
    def z_hessian(self) -> float | None:
        return self.driver_flags.z_hessian

    def check(self) -> CustomEquation:
        """Evaluate g and f on a small batch of distinct states: a one-line ProblemError for a failure, a wrong shape,
        complex values, or a value on one path that moves when another path's arguments move (QA: x.mean(0), x[0, 0]
        and y.mean() were solved; at d = 3 x.mean(0) even passed a 3-path shape check, then failed inside torch)."""
        import torch

        n = 4 if self.dim == 3 else 3  # never d paths: a reduction over the paths axis then has the right shape
        x = self._probe_states(n)
        if isinstance(self.forward_process, Diffusion):
            self.forward_process.check(x)
        called = f"terminal(x) with x {tuple(x.shape)}"
        g = call_checked("terminal", self.terminal_fn, (x,), called)
        _check_values("terminal", g, n, x.shape)
        _check_paths_apart("terminal", g, call_checked("terminal", self.terminal_fn, (_moved(x),), called), n)
        if self.driver_fn is not None:
            y = 1.0 + 0.1 * torch.arange(n, dtype=torch.float64)
            z = torch.zeros(n, self.dim, dtype=torch.float64)
            for t, what in probe_times(n, torch.float64):
                called = f"f(t, x, y, z) with {what}, x {tuple(x.shape)}, y {tuple(y.shape)}, z {tuple(z.shape)}"
                f = call_checked("driver", self.driver_fn, (t, x, y, z), called)
                _check_values("driver", f, n, x.shape)
                moved = call_checked("driver", self.driver_fn, (t, _moved(x), _moved(y), _moved(z)), called)
                _check_paths_apart("driver", f, moved, n)
        return self

    def _probe_states(self, n: int) -> torch.Tensor:
        """n distinct states near x0 (n, dim), inside a positive process's domain: x0 (1 + k / 100) (+ k / 100)."""
        import torch

        step = 0.01 * torch.arange(n, dtype=torch.float64).unsqueeze(1)
        x0 = torch.tensor(self.x_start, dtype=torch.float64).expand(n, self.dim)
        return x0 * (1.0 + step) + (0.0 if self.forward_process.positive else step)


def _moved(value: torch.Tensor) -> torch.Tensor:
    """``value`` with its first path's entries moved (by 10%, and 0.1 where they are 0), the others kept."""
    moved = value.clone()
    moved[0] = value[0] * 1.1 + (value[0] == 0) * 0.1
    return moved


def _check_values(what: str, value: Any, n: int, x_shape: Any) -> None:
    """One number per path (or one for all: a constant), and not complex."""
    shape = tuple(getattr(value, "shape", ()))
    if shape not in ((), (n,)) + (((n, 1),) if what == "terminal" else ()):
        raise ProblemError(f"{what}: must return one number per path, shape {(n,)} for x of shape {tuple(x_shape)}; "
                           f"got {shape}")
    if getattr(value, "is_complex", lambda: False)() or isinstance(value, complex):
        raise ProblemError(f"{what}: returns complex numbers; it must return real ones (take .real or abs() where "
                           "that is meant)")


def _check_paths_apart(what: str, value: Any, moved: Any, n: int) -> None:
    """The value on paths 1.. must not move when only path 0's arguments move."""
    import torch

    before, after = (torch.as_tensor(v, dtype=torch.float64).reshape(-1).expand(n) for v in (value, moved))
    if not torch.allclose(before[1:], after[1:], rtol=1e-12, atol=0.0, equal_nan=True):
        raise ProblemError(f"{what}: its value on one path moves when another path's arguments move: it mixes the "
                           "paths (a reduction over axis 0 or over all axes, x.mean() or y.mean(), or an index such "
                           "as x[0, 0]); reduce over the last axis, x.mean(-1), and index with x[..., i]")


def _as_tensor(value: Any, like: torch.Tensor) -> torch.Tensor:
    import torch

    value = torch.as_tensor(value, dtype=like.dtype, device=like.device)
    return value[..., 0] if value.ndim and value.shape[-1] == 1 and value.ndim == like.ndim else value


def custom_equation(
    *, dim: int, x0: float | list[float], process: Process, terminal: Callable[[Any], Any],
    driver: Callable[[Any, Any, Any, Any], Any] | None = None, total_time: float = 1.0, name: str = "custom",
    flags: DriverFlags | None = None, closed_form: Any = None,
) -> CustomEquation:
    """The equation u_t + L u + f(t, x, u, sigma^T grad u) = 0, u(T, x) = g(x), X_0 = x0, from functions.

    ``terminal(x)`` maps x (..., dim) to (...); ``driver(t, x, y, z)`` maps t (a float or a tensor
    broadcasting against x[..., 0]), x (..., dim), y (...), z (..., dim) to (...); both act on torch
    tensors. ``driver=None`` is f = 0. ``flags`` skips probing (use it when you know them for certain:
    they are still checked against the driver before a solve). ``closed_form``, e.g.
    ``bsde.closed_forms.GeometricBasketCall(strike=100)``, declares a closed form for the reference engine,
    which checks it against the terminal condition and the process before using it.

    Raises:
        ProblemError: a bad argument, or a function that fails or returns the wrong shape on a small batch.
    """
    try:
        equation = CustomEquation.model_validate(dict(
            dim=dim, x0=x0, forward_process=process, terminal_fn=terminal, driver_fn=driver, total_time=total_time,
            name=name, flags=flags, closed_form=closed_form))
    except ValidationError as exc:
        error = exc.errors()[0]
        key = ARGUMENTS.get(str(error["loc"][0]), str(error["loc"][0])) if error["loc"] else ""  # not union tags
        message = str(error["msg"]).removeprefix("Value error, ")
        raise ProblemError(f"custom_equation: {key + ': ' if key else ''}{message}") from None
    return equation.check()


#: the fields of CustomEquation under the names custom_equation's arguments give them
ARGUMENTS = {"forward_process": "process", "terminal_fn": "terminal", "driver_fn": "driver"}
