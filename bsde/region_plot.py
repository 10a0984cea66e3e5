"""u(0, x) along the diagonal of solver.region's box against reference values (``bsde solve --plot``).

The points are low + s (high - low), s in DIAGONAL_FRACTIONS inside the box (the benchmarks' check) and, for the
plot, the two corners too (PLOT_FRACTIONS), geometric in a log box; each reference is the engine's cheap method at
that point (closed form, semi-analytic, radial solve or Monte Carlo with its 95% CI).
"""

from __future__ import annotations

import io
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from bsde.errors import BSDEError
from bsde.io import PNG_SOFTWARE, write_bytes_atomic
from bsde.problem import Problem
from bsde.reference import cheap_method, reference
from bsde.reference.greeks import at_point
from bsde.solution import Solution

DIAGONAL_FRACTIONS = (0.1, 0.3, 0.5, 0.7, 0.9)
#: the plot's points: the corners too, where a region's network is least accurate (QA: a call's u at the face
#: S = 80 0.4-0.6% low, where inside the box it was within 0.01%)
PLOT_FRACTIONS = (0.0, *DIAGONAL_FRACTIONS, 1.0)
CURVE_POINTS = 101


@dataclass(frozen=True)
class PointCheck:
    """u at one point of the diagonal beside its reference (value, 95% half-width or error estimate, method)."""

    fraction: float
    point: list[float]
    u: float
    reference: float | None
    error_bar: float | None
    method: str | None

    @property
    def rel_error(self) -> float | None:
        return None if not self.reference else abs(self.u - self.reference) / abs(self.reference)

    def to_dict(self) -> dict:
        return {**asdict(self), "rel_error": self.rel_error}


def diagonal_checks(solution: Solution, problem: Problem, fractions: tuple[float, ...] = DIAGONAL_FRACTIONS,
                    progress: Callable[[int, int], None] | None = None) -> list[PointCheck]:
    """u and its reference at the points of the box's diagonal (no reference where no cheap method applies)."""
    region = problem.solver.region
    points = region.diagonal(problem.equation.dim, list(fractions))
    values = solution.u(np.array(points))
    checks = []
    for i, (s, point, u) in enumerate(zip(fractions, points, values)):
        moved = at_point(problem, point)
        method = cheap_method(moved)
        found = None
        if method is not None:
            try:
                found = reference(moved, method)
            except BSDEError:
                found = None
        checks.append(PointCheck(s, point, float(u), found.value if found else None,
                                 found.error_bar if found else None, method if found else None))
        if progress is not None:
            progress(i + 1, len(points))
    return checks


def plot_region(solution: Solution, problem: Problem, checks: list[PointCheck], path: Path) -> Path:
    """Draw u along the diagonal with the reference points and their relative errors; write ``path`` (PNG)."""
    region, dim = problem.solver.region, problem.equation.dim
    fractions = np.linspace(0.0, 1.0, CURVE_POINTS)
    curve = solution.u(np.array(region.diagonal(dim, list(fractions))))
    one_d = dim == 1
    where = (lambda s, point: point[0]) if one_d else (lambda s, point: s)
    axis = np.array([where(s, p) for s, p in zip(fractions, region.diagonal(dim, list(fractions)))])
    figure = Figure(figsize=(7.0, 6.0))
    top, bottom = figure.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [2, 1]})
    top.plot(axis, curve, color="C0", label="u(0, x), trained over the box")
    known = [c for c in checks if c.reference is not None]
    if known:
        xs = [where(c.fraction, c.point) for c in known]
        top.errorbar(xs, [c.reference for c in known], yerr=[c.error_bar or 0.0 for c in known], fmt="o",
                     color="C3", capsize=3, label=f"reference ({known[0].method})")
        bottom.errorbar(xs, [100 * (c.u - c.reference) / abs(c.reference) for c in known],
                        yerr=[100 * (c.error_bar or 0.0) / abs(c.reference) for c in known], fmt="o", color="C3",
                        capsize=3)
    bottom.axhline(0.0, color="grey", linewidth=0.8)
    bottom.set_ylabel("u - reference (%)")
    bottom.set_xlabel("x" if one_d else "s: x = low + s (high - low)" + (", geometric" if region.log else ""))
    top.set_ylabel("u(0, x)")
    title = f"{problem.name}: {problem.equation.kind}, dim {dim}, box [{region.low}, {region.high}]"
    top.set_title(title if known else title + " (no cheap reference)", fontsize=10)
    top.legend(fontsize=8)
    buffer = io.BytesIO()
    FigureCanvasAgg(figure).print_png(buffer, metadata={"Software": PNG_SOFTWARE})  # bsde's: a rerun replaces it
    return write_bytes_atomic(Path(path), buffer.getvalue())
