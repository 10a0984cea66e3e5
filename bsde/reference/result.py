"""What every reference method returns."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class ReferenceResult:
    """A reference value u(0, x0) with its uncertainty and how it was obtained.

    ``stderr``/``ci95`` are statistical (Monte Carlo, MLP); deterministic methods leave them
    None and put a discretisation-error estimate in ``details``.
    """

    value: float
    stderr: float | None
    ci95: tuple[float, float] | None
    method: str
    paths: int | None
    wall_s: float
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready mapping (``ci95`` as a list)."""
        data = asdict(self)
        data["ci95"] = list(self.ci95) if self.ci95 is not None else None
        return data


def ci95(value: float, stderr: float) -> tuple[float, float]:
    """The normal 95% interval value +- 1.96 stderr."""
    return (value - 1.96 * stderr, value + 1.96 * stderr)
