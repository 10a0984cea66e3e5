"""Chunked antithetic moment accumulation (the exact transitions are the processes' own: ``process.transition``)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch

from bsde.errors import ProblemError
from bsde.heavy_tail import largest_share

#: float64 elements held per chunk of normals (32 MiB)
CHUNK_ELEMENTS = 1 << 22
#: where the reference engine computes (float64, its own generators): named on every tensor it makes, so a
#: caller's ``torch.set_default_device`` or a solve on a GPU cannot move half of its work elsewhere
DEVICE = torch.device("cpu")

Progress = Callable[[int, int], None]


def chunk_rows(dim: int) -> int:
    """How many dim-vectors fit in one chunk: about CHUNK_ELEMENTS / dim, at least 16."""
    return max(16, CHUNK_ELEMENTS // dim)


#: the fewest paths of a Monte Carlo reference: its 95% interval is a normal approximation, which a few antithetic
#: pairs do not make (QA: 10 paths of a digital gave 4.85 +- 0 against 4.04, and 18 of 40 seeds missed it; 40
#: paths missed 3 of 40)
MIN_PATHS = 64


def require_paths(method: str, paths: int) -> None:
    """Monte Carlo needs MIN_PATHS paths (MIN_PATHS / 2 antithetic pairs)."""
    if paths < MIN_PATHS:
        raise ProblemError(f"paths: {method} needs at least {MIN_PATHS} ({MIN_PATHS // 2} antithetic pairs; its 95% "
                           f"interval is a normal approximation), got {paths}")


@dataclass(frozen=True)
class Moments:
    """Sample mean (k,) and covariance (k, k) of n i.i.d. vectors (here: antithetic pair averages), with their
    largest and smallest values (k,)."""

    n: int
    mean: torch.Tensor
    cov: torch.Tensor
    high: torch.Tensor
    low: torch.Tensor

    def constant(self, column: int = 0) -> bool:
        """Whether every vector had the same value in ``column`` (no spread: an interval of no width)."""
        return float(self.high[column]) == float(self.low[column])

    def tail_share(self, column: int = 0) -> float:
        """The largest share of the sample variance of ``column`` that one vector carries (bsde.heavy_tail)."""
        return largest_share(float(self.high[column]), float(self.low[column]), float(self.mean[column]),
                             float(self.cov[column, column]) * max(self.n - 1, 1))

    def stderr(self, weights: torch.Tensor) -> float:
        """Standard error of the mean of weights . v."""
        return math.sqrt(max(float(weights @ self.cov @ weights), 0.0) / self.n)


def antithetic_moments(
    columns: Callable[[torch.Tensor], torch.Tensor], paths: int, dim: int, *,
    generator: torch.Generator, progress: Progress | None = None, offset: torch.Tensor | None = None,
    steps: int = 0,
) -> Moments:
    """Moments of (columns(N) + columns(-N)) / 2 over paths // 2 pairs, N ~ N(0, I_dim), in chunks.

    With ``steps`` > 0 each path draws (steps, dim) normals, one row per time step.

    ``columns`` maps normals (n, dim) to values (n, k); ``offset`` (k,) is subtracted before
    accumulating (a rough mean) so the one-pass covariance does not cancel catastrophically.
    """
    pairs = max(1, paths // 2)
    chunk = max(1, chunk_rows(dim * max(steps, 1)) // 2)
    shape = (steps, dim) if steps else (dim,)
    total, cross, high, low, done = None, None, None, None, 0
    while done < pairs:
        n = min(chunk, pairs - done)
        normals = torch.randn(n, *shape, generator=generator, dtype=torch.float64, device=DEVICE)
        values = 0.5 * (columns(normals) + columns(-normals))
        if offset is None:
            offset = values.mean(0)
        values = values - offset
        top, bottom = values.amax(0), values.amin(0)
        high, low = (top, bottom) if high is None else (torch.maximum(high, top), torch.minimum(low, bottom))
        total = values.sum(0) if total is None else total + values.sum(0)
        cross = values.T @ values if cross is None else cross + values.T @ values
        done += n
        if progress is not None:
            progress(2 * done, 2 * pairs)
    mean = total / pairs
    cov = (cross - pairs * torch.outer(mean, mean)) / max(pairs - 1, 1)
    return Moments(pairs, mean + offset, cov, high + offset, low + offset)
