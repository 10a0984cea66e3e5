"""What every reference method returns."""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

from bsde.errors import ProblemError
from bsde.heavy_tail import HEAVY_TAIL_SHARE, heavy_tail_warning

#: a sampled importance weight (cole-hopf's exp(-lam g)) with fewer effective paths makes no trustworthy interval
#: (QA: lam 25 at d = 100 with 236 effective paths missed by 6.6 standard errors, and 5 of 10 seeds fell outside)
FEW_EFFECTIVE_PATHS = 1000

#: keys in ``details`` where deterministic methods put their own error estimate
ERROR_ESTIMATE_KEYS = ("error_estimate", "quad_error")


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

    @property
    def error_bar(self) -> float | None:
        """Half-width of the 95% interval; for deterministic methods their own error estimate, if any."""
        if self.ci95 is not None:
            return 0.5 * (self.ci95[1] - self.ci95[0])
        for key in ERROR_ESTIMATE_KEYS:
            value = self.details.get(key)
            if isinstance(value, (int, float)) and math.isfinite(value):
                return abs(float(value))
        return None

    @property
    def error_bar_kind(self) -> str:
        """What ``error_bar`` is: "95% CI", "error estimate" or "none"."""
        if self.ci95 is not None:
            return "95% CI"
        return "error estimate" if self.error_bar is not None else "none"

    @property
    def heavy_tailed(self) -> bool:
        """Whether one sampled antithetic pair carries over HEAVY_TAIL_SHARE of the sample variance (``tail_share``
        in ``details``, where the method records it): a mean Monte Carlo cannot be trusted with."""
        share = self.details.get("tail_share")
        return isinstance(share, float) and share > HEAVY_TAIL_SHARE

    @property
    def caveat(self) -> str | None:
        """What the value carries beyond its error bar, in words (a heavy tail, an Euler Monte Carlo that did not
        settle, degenerate weights)."""
        if self.heavy_tailed:
            return heavy_tail_warning(self.details["tail_share"], (self.paths or 0) // 2, "antithetic pairs")
        if self.details.get("constant_sample") is True:  # QA: e^1000 sampled as 0 +- 0, every draw underflowing
            return (f"every one of its {(self.paths or 0) // 2} antithetic pairs gave {self.value:.6g}, so its 95% "
                    "interval has no width: what paths it did not draw can hold the value (a payoff that is 0 "
                    "where the paths go, or draws below float64's range)")
        if self.details.get("converged") is False:
            return (f"the Euler Monte Carlo did not settle by {self.details.get('steps')} steps: its 95% interval "
                    "counts the last halving's change as bias")
        if self.method == "mlp" and self.details.get("truncation_allowance", 0.0) is None:  # the level below failed
            return ("the level below gave no finite value: its 95% interval counts the repeats' spread only, not "
                    "the Picard truncation's bias")
        effective = self.details.get("effective_paths")
        if isinstance(effective, (int, float)) and effective < FEW_EFFECTIVE_PATHS:
            return (f"its weights are degenerate ({effective:.0f} effective paths of {self.paths}): the mean of a "
                    "heavy-tailed sample, whose 95% interval understates the error (at lam 25, 236 effective "
                    "paths, it missed by 6.6 standard errors); use a deterministic method (semi-analytic for hjb)")
        return None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready mapping (``ci95`` as a list, non-finite numbers as None)."""
        data = asdict(self)
        data["ci95"] = list(self.ci95) if self.ci95 is not None else None
        return finite_json(data)


def finite_json(data: Any) -> Any:
    """``data`` with every NaN or infinity (at any depth) replaced by None, so strict JSON accepts it."""
    if isinstance(data, float):
        return data if math.isfinite(data) else None
    if isinstance(data, dict):
        return {key: finite_json(value) for key, value in data.items()}
    if isinstance(data, (list, tuple)):
        return [finite_json(value) for value in data]
    return data


def ci95(value: float, stderr: float) -> tuple[float, float]:
    """The normal 95% interval value +- 1.96 stderr."""
    return (value - 1.96 * stderr, value + 1.96 * stderr)


def at_two_resolutions(method: str, solve: Callable[[int, int], float], points: int, steps: int,
                       **extra: Any) -> ReferenceResult:
    """A grid method's value at (points, steps) with the half-resolution run beside it; ``details['error_estimate']``
    is the whole difference |value - coarse|, about three times the error of a second-order scheme (a bound;
    Richardson's third came out 0.7-1.06 times the error, too close to serve as one)."""
    if points < 8 or steps < 2:
        raise ProblemError(f"{method} needs at least 8 points and 2 steps, got {points} and {steps}")
    start = time.perf_counter()
    value = solve(points, steps)
    coarse = solve(points // 2, steps // 2)
    details = {"points": points, "steps": steps, "coarse_points": points // 2, "coarse_steps": steps // 2, **extra,
               "coarse_value": coarse, "half_resolution_difference": value - coarse,
               "error_estimate": abs(value - coarse)}
    return ReferenceResult(value, None, None, method, None, time.perf_counter() - start, details)
