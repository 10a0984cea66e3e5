"""A box of starting points: ``solver.region: {low, high, log}`` trains u(0, x) for every x0 in the box.

X_0 is drawn uniformly from [low, high] (or log-uniformly, ``log: true``, for asset prices); the start
networks see the box coordinates phi(x) = 2 (x - low) / (high - low) - 1 in [-1, 1]^d (of log x for a log box).
Reading a problem needs this module, so torch is imported only where tensors are made.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import ConfigDict, Field, ValidationError

from bsde.equations.base import Equation, Vector, broadcast
from bsde.no_bools import NoBoolNumbers

if TYPE_CHECKING:
    import torch


class Region(NoBoolNumbers):
    """The box [low, high] (numbers, or lists of dim numbers) X_0 is drawn from; ``log``: log-uniformly."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    low: Vector = Field(description="lower corner: a number (every coordinate) or a list of dim numbers")
    high: Vector = Field(description="upper corner: a number or a list of dim numbers")
    log: bool = Field(False, description="draw X_0 log-uniformly (asset prices; needs low > 0)")
    hidden: list[int] | None = Field(None, description="hidden widths of the network of u(0, x); "
                                     "default two layers of max(32, min(dim, 100) + 10)")

    def bounds(self, dim: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """(low, high) as tuples of dim numbers."""
        return broadcast(self.low, dim, "low"), broadcast(self.high, dim, "high")

    def widths(self, dim: int) -> list[int]:
        return list(self.hidden) if self.hidden is not None else [max(32, min(dim, 100) + 10)] * 2

    def diagonal(self, dim: int, fractions: list[float]) -> list[list[float]]:
        """Points low + s (high - low) for each s in ``fractions`` (geometric in a log box)."""
        low, high = self.bounds(dim)
        if self.log:
            return [[a * (b / a) ** s for a, b in zip(low, high)] for s in fractions]
        return [[a + s * (b - a) for a, b in zip(low, high)] for s in fractions]

    def contains(self, point: tuple[float, ...] | list[float]) -> bool:
        low, high = self.bounds(len(point))
        return all(a <= v <= b for a, v, b in zip(low, point, high))


def with_start(equation: Equation, x0: list[float]) -> Equation:
    """``equation`` started at ``x0`` instead, validated as its own x0 (ValidationError where it is not valid)."""
    fields = {name: getattr(equation, name) for name in type(equation).model_fields}
    return type(equation).model_validate({**fields, "x0": list(x0)})


def region_problem(region: Region, equation: Equation) -> tuple[str, str] | None:
    """(dotted key, message) for the first way ``region`` does not fit ``equation``, or None."""
    dim = equation.dim
    for name in ("low", "high"):
        value = getattr(region, name)
        if isinstance(value, list) and len(value) != dim:
            return f"solver.region.{name}", f"expected a number or a list of dim = {dim} numbers, got {len(value)}"
    low, high = region.bounds(dim)
    if any(a > b for a, b in zip(low, high)) or low == high:
        return "solver.region", f"need low <= high in every coordinate and low < high in one (got {region.low}, " \
                                f"{region.high})"
    if region.log and min(low) <= 0:
        return "solver.region.low", f"a log box needs positive corners, got {region.low}"
    if region.hidden is not None and (not region.hidden or any(w < 1 for w in region.hidden)):
        return "solver.region.hidden", f"expected positive layer widths, got {region.hidden}"
    for name, corner in (("low", low), ("high", high)):
        try:  # every point of the box must be a valid starting point (asset prices positive, ...)
            with_start(equation, list(corner))
        except ValidationError as exc:
            message = exc.errors(include_url=False)[0]["msg"].removeprefix("Value error, ")
            return f"solver.region.{name}", f"not a valid starting point ({message})"
    if not region.contains(equation.x_start):
        return "equation.x0", "must lie in solver.region's box (u0 and the Greeks at x0 come from the region's network)"
    return None


def draw_starts(region: Region, dim: int, batch: int, generator: torch.Generator, *, device: Any,
                dtype: torch.dtype) -> torch.Tensor:
    """X_0 (batch, dim): uniform in the box, or log-uniform for a log box."""
    import torch

    low, high = (torch.tensor(c, dtype=dtype, device=device) for c in region.bounds(dim))
    unit = torch.rand(batch, dim, generator=generator, dtype=dtype, device=device)
    if region.log:
        return torch.exp(torch.lerp(low.log(), high.log(), unit))
    return torch.lerp(low, high, unit)


def box_coordinates(region: Region, x: torch.Tensor) -> torch.Tensor:
    """phi(x) = 2 (x - low) / (high - low) - 1 along the last axis (of log x for a log box); 0 where low = high."""
    import torch

    low, high = (torch.tensor(c, dtype=x.dtype, device=x.device) for c in region.bounds(x.shape[-1]))
    if region.log:
        low, high, x = low.log(), high.log(), x.log()
    width = high - low
    safe = torch.where(width > 0, width, torch.ones_like(width))
    return torch.where(width > 0, 2.0 * (x - low) / safe - 1.0, torch.zeros_like(x))

