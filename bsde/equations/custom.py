"""``kind: custom``: an equation written in a problem file, its g, f and process given as expressions.

    equation:
      kind: custom
      dim: 5
      x0: 100.0
      params: {K: 100.0, r: 0.05}
      process: {kind: gbm, drift: 0.05, vol: 0.2, correlation: 0.3}
      terminal: "relu(K - mean(x))"
      driver: "-r * y"

The texts are compiled by :mod:`bsde.expressions` (a whitelist; never eval) and handed, with the process
object, to :class:`~bsde.equations.functions.CustomEquation`, the one equation built from functions. What
the solver needs to know about f (uses y or z, f = -r y, f = -(c/2)|z|^2 + linear) is read off the
driver's syntax tree. The equation is saved and shown as its YAML (the texts, not the compiled code).
"""

from __future__ import annotations

import difflib
from typing import Annotated, Any, Literal, Union

from pydantic import (ConfigDict, Discriminator, Field, Tag, field_validator, model_serializer,
                      model_validator)

from bsde.equations.base import given_values
from bsde.equations.functions import CustomEquation
from bsde.expressions import Expression, ExpressionError, check_param_name, compile_expression
from bsde.no_bools import NoBoolNumbers
from bsde.probing import DriverFlags
from bsde.processes import GBM, BrownianMotion, Diffusion, Process

Number = float | list[float]
Text = Annotated[str, Field(min_length=1)]


def _text(value: Any) -> Any:
    """An expression as written: a YAML number (``driver: 0``) is the text of that number."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return repr(value)
    if not isinstance(value, str):
        raise ValueError("expected an expression as text, e.g. \"relu(K - mean(x))\"")
    return value


class _Spec(NoBoolNumbers):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class GBMSpec(_Spec):
    """dX_i = (drift - q_i) X_i dt + vol_i X_i dB_i, corr(dB) = correlation (a number or a dim x dim matrix)."""

    kind: Literal["gbm"] = "gbm"
    drift: float = Field(description="drift mu (the rate, for risk-neutral pricing)")
    vol: Number = Field(description="volatility: a number or a list of dim numbers")
    correlation: float | list[list[float]] = Field(0.0, description="a uniform number or a dim x dim matrix")
    dividend: Number = Field(0.0, description="dividend yield q: a number or a list of dim numbers")

    def build(self, dim: int, compile: Any) -> GBM:
        vol, dividend = given_values(self.vol, dim, "process.vol"), given_values(self.dividend, dim, "process.dividend")
        if isinstance(self.correlation, list) and (len(self.correlation) != dim
                                                   or any(len(row) != dim for row in self.correlation)):
            lengths = sorted({len(row) for row in self.correlation})
            shape = (f"{len(self.correlation)}x{lengths[0]}" if len(lengths) == 1 else
                     f"{len(self.correlation)} rows of {' or '.join(map(str, lengths))} numbers")
            raise ValueError(f"process.correlation: expected a number or a {dim}x{dim} matrix, got {shape}")
        try:
            process = GBM(self.drift, vol, self.correlation, dividend)
            process.check_dim(dim)
        except ValueError as exc:  # the process names the field it refuses
            raise ValueError(f"process.{exc}") from None
        return process


class BrownianSpec(_Spec):
    """X_t = x0 + drift t + sigma W_t (the drift a number or one per coordinate)."""

    kind: Literal["brownian"] = "brownian"
    sigma: float = Field(gt=0, description="diffusion coefficient (a number)")
    drift: Number = Field(0.0, description="constant drift: a number or a list of dim numbers")

    def build(self, dim: int, compile: Any) -> BrownianMotion:
        return BrownianMotion(self.sigma, given_values(self.drift, dim, "process.drift"))  # one number: a number


class DiffusionSpec(_Spec):
    """dX_i = drift_i(t, X) dt + sigma_i(t, X) dW_i (diagonal), by Euler-Maruyama with ``substeps`` per step."""

    kind: Literal["diffusion"] = "diffusion"
    drift: Text = Field("0", description="expression in t and x: a number or a vector per path")
    sigma: Text = Field(description="expression in t and x: a number or a vector per path (the diagonal)")
    substeps: int = Field(1, ge=1, le=1000, description="Euler-Maruyama steps per time step of the solver")

    @field_validator("drift", "sigma", mode="before")
    @classmethod
    def _texts(cls, value: Any) -> Any:
        return _text(value)

    def build(self, dim: int, compile: Any) -> Diffusion:
        return Diffusion(compile("process.drift", self.drift, "drift"), compile("process.sigma", self.sigma, "sigma"),
                         self.substeps)


_KINDS = {"gbm": "GBM", "brownian": "Brownian", "diffusion": "Diffusion"}
ProcessSpec = Annotated[
    Union[Annotated[GBMSpec, Tag("GBM")], Annotated[BrownianSpec, Tag("Brownian")],
          Annotated[DiffusionSpec, Tag("Diffusion")]],
    Discriminator(lambda value: _KINDS.get(value.get("kind") if isinstance(value, dict) else getattr(value, "kind", None))),
]
#: CustomEquation's fields that the YAML front end fills in itself (never read from a file)
_DERIVED = ("name", "forward_process", "terminal_fn", "driver_fn", "flags")
#: the YAML keys, in the order ``bsde show`` prints them
_KEYS = {"kind": "kind", "dim": "dim", "total_time": "total_time", "x0": "x0", "params": "params",
         "process_spec": "process", "terminal_text": "terminal", "driver_text": "driver",
         "closed_form": "closed_form"}


def _check_params(params: Any) -> None:
    """A mapping of names to numbers or lists of numbers; true and false are not numbers (as everywhere)."""
    if not isinstance(params, dict):
        raise ValueError(f"params: expected a mapping of names to numbers (or lists of dim numbers), got {params!r}"[:160])
    for name, item in params.items():
        if isinstance(item, bool) or isinstance(item, list) and any(isinstance(v, bool) for v in item):
            raise ValueError(f"params.{name}: expected a number or a list of dim numbers, got {item!r}"[:160])


class Custom(CustomEquation):
    """A :class:`CustomEquation` read from YAML: params, a process spec and the texts of g and f."""

    kind: Literal["custom"] = "custom"
    params: dict[str, float | list[float]] = Field(
        default_factory=dict, description="names for the expressions: numbers or lists of dim numbers")
    process_spec: ProcessSpec = Field(alias="process", description="how X moves: gbm, brownian or diffusion")
    terminal_text: Text = Field(alias="terminal", description="g(x), an expression in x")
    driver_text: Text = Field("0", alias="driver", description="f(t, x, y, z), an expression; default 0")

    # filled in from the texts by the validator below, never read from the file
    name: str = Field("custom", exclude=True)
    forward_process: Any = Field(None, exclude=True)
    terminal_fn: Any = Field(None, exclude=True)
    driver_fn: Any = Field(None, exclude=True)
    flags: Any = Field(None, exclude=True)
    closed_form: Any = Field(None, description="a closed form for the reference engine, checked before use: "
                             "{name: geometric_basket_call, strike: 100} (bsde.closed_forms)")

    @model_validator(mode="before")
    @classmethod
    def _only_yaml_keys(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("process_spec"), _Spec):
            # another instance's fields (Python code re-validating one, e.g. at another x0): its YAML, re-derived
            data = {_KEYS.get(key, key): value for key, value in data.items() if key not in _DERIVED}
        if isinstance(data, dict):
            for key in data:
                if key in _DERIVED:
                    known = ", ".join(_KEYS.values())
                    raise ValueError(f"{key}: unknown key (known: {known})")
            _check_params(data.get("params", {}))
            process = data.get("process")
            if "process" in data and not isinstance(process, (dict, _Spec)):
                raise ValueError(f"process: expected a mapping with kind: {', '.join(_KINDS)}; got {process!r}"[:160])
            if isinstance(process, dict) and process.get("kind") not in _KINDS:
                what = "missing" if process.get("kind") is None else f"unknown kind {process.get('kind')!r}"
                raise ValueError(f"process.kind: {what} (known: {', '.join(_KINDS)})")
        return data

    @field_validator("terminal_text", "driver_text", mode="before")
    @classmethod
    def _texts(cls, value: Any) -> Any:
        return _text(value)

    @model_validator(mode="after")
    def _check_process(self) -> Custom:
        """Compile the texts, build the process, and let CustomEquation check the rest."""
        for name, value in self.params.items():
            try:
                check_param_name(name)
            except ExpressionError as exc:  # a key that is no name at all ('a b') is blamed on params, not params.a
                raise ValueError(f"params.{name}: {exc}" if name.isidentifier() else f"params: {exc}") from None
            if isinstance(value, list):
                given_values(value, self.dim, f"params.{name}")
        compiled: list[Expression] = []
        compile = self._compiler(compiled)
        process = self.process_spec.build(self.dim, compile)
        terminal, driver = compile("terminal", self.terminal_text, "terminal"), compile("driver", self.driver_text, "driver")
        self._check_params_used(compiled)
        flags = DriverFlags(uses_y=driver.uses("y"), uses_z=driver.uses("z"), discount_rate=driver.discount_rate,
                            z_hessian=driver.z_hessian)
        for key, value in (("forward_process", process), ("terminal_fn", terminal), ("driver_fn", driver),
                           ("flags", flags)):
            object.__setattr__(self, key, value)
        return CustomEquation._check_process(self)

    def _compiler(self, compiled: list[Expression]) -> Any:
        """compile(key, text, role): the expression (appended to ``compiled``), or a ValueError naming ``key``."""
        def compile(key: str, text: str, role: str) -> Expression:
            try:
                expression = compile_expression(text, role, self.dim, self.params)
            except ExpressionError as exc:
                raise ValueError(f"{key}: {exc}") from None
            compiled.append(expression)
            return expression

        return compile

    def _check_params_used(self, compiled: list[Expression]) -> None:
        """A param that no expression names but that spells nearly the name of one that is used is an error: a
        misspelt name (``--set equation.params.k=50`` for K adds a param k and leaves K as it was) must not be a
        silent no-op. Other unused params pass (a driver overridden to a literal may leave its rate unused)."""
        used = sorted(set().union(*(expression.param_names for expression in compiled)))
        for name in self.params:
            if name in used:
                continue
            close = difflib.get_close_matches(name, used, n=1) or [u for u in used if u.lower() == name.lower()]
            if close:
                raise ValueError(f"params.{name}: not used by the terminal, the driver or the process; did you "
                                 f"mean '{close[0]}'?")

    @model_serializer(mode="wrap")
    def _as_yaml(self, handler: Any) -> dict[str, Any]:
        """The equation as its YAML keys (the texts, not the compiled code)."""
        data = handler(self)
        return {yaml_key: data[field] for field, yaml_key in _KEYS.items()
                if field in data and not (field == "closed_form" and data[field] is None)}

    @property
    def process(self) -> Process:
        return self.forward_process

    def terminal(self, x: Any) -> Any:
        return self.terminal_fn(x)  # a compiled expression returns the batch shape itself

    def driver(self, t: Any, x: Any, y: Any, z: Any) -> Any:
        return self.driver_fn(t, x, y, z)
