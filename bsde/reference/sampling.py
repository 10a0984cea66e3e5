"""Exact transitions of the forward processes and chunked antithetic moment accumulation.

Brownian: X_t = X_s + sigma (W_t - W_s).  GBM: log X_t = log X_s + (mu - vol^2/2)(t - s) + vol C^{1/2}(W_t - W_s).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch

from bsde.equations.base import GeometricBrownian, Process, ScaledBrownian
from bsde.errors import ProblemError
from bsde.simulation import uniform_correlation_root

#: float64 elements held per chunk of normals (32 MiB)
CHUNK_ELEMENTS = 1 << 22
#: where the reference engine computes (float64, its own generators): named on every tensor it makes, so a
#: caller's ``torch.set_default_device`` or a solve on a GPU cannot move half of its work elsewhere
DEVICE = torch.device("cpu")

Progress = Callable[[int, int], None]


def chunk_rows(dim: int) -> int:
    """How many dim-vectors fit in one chunk: about CHUNK_ELEMENTS / dim, at least 16."""
    return max(16, CHUNK_ELEMENTS // dim)


def require_paths(method: str, paths: int) -> None:
    """Monte Carlo needs at least two antithetic pairs."""
    if paths < 4:
        raise ProblemError(f"{method} needs at least 4 paths, got {paths}")


def transition(process: Process, x: torch.Tensor, dt: torch.Tensor | float, normals: torch.Tensor) -> torch.Tensor:
    """X_{s+dt} given X_s = x (..., dim), exactly, from standard normals (..., dim).

    ``dt`` is a float or a tensor broadcasting against x without its last axis.
    """
    dt = torch.as_tensor(dt, dtype=x.dtype, device=x.device)
    root_dt = dt.sqrt().unsqueeze(-1) if dt.ndim else dt.sqrt()
    step = dt.unsqueeze(-1) if dt.ndim else dt
    if isinstance(process, ScaledBrownian):
        return x + process.sigma * root_dt * normals
    if isinstance(process, GeometricBrownian):
        vol = torch.tensor(process.vol, dtype=x.dtype, device=x.device)
        noise = uniform_correlation_root(normals, process.correlation) * vol
        return x * torch.exp((process.drift - 0.5 * vol * vol) * step + root_dt * noise)
    raise TypeError(f"no exact transition for process {type(process).__name__}")


@dataclass(frozen=True)
class Moments:
    """Sample mean (k,) and covariance (k, k) of n i.i.d. vectors (here: antithetic pair averages)."""

    n: int
    mean: torch.Tensor
    cov: torch.Tensor

    def stderr(self, weights: torch.Tensor) -> float:
        """Standard error of the mean of weights . v."""
        return math.sqrt(max(float(weights @ self.cov @ weights), 0.0) / self.n)


def antithetic_moments(
    columns: Callable[[torch.Tensor], torch.Tensor], paths: int, dim: int, *,
    generator: torch.Generator, progress: Progress | None = None, offset: torch.Tensor | None = None,
) -> Moments:
    """Moments of (columns(N) + columns(-N)) / 2 over paths // 2 pairs, N ~ N(0, I_dim), in chunks.

    ``columns`` maps normals (n, dim) to values (n, k); ``offset`` (k,) is subtracted before
    accumulating (a rough mean) so the one-pass covariance does not cancel catastrophically.
    """
    pairs = max(1, paths // 2)
    chunk = max(1, chunk_rows(dim) // 2)
    total, cross, done = None, None, 0
    while done < pairs:
        n = min(chunk, pairs - done)
        normals = torch.randn(n, dim, generator=generator, dtype=torch.float64, device=DEVICE)
        values = 0.5 * (columns(normals) + columns(-normals))
        if offset is None:
            offset = values.mean(0)
        values = values - offset
        total = values.sum(0) if total is None else total + values.sum(0)
        cross = values.T @ values if cross is None else cross + values.T @ values
        done += n
        if progress is not None:
            progress(2 * done, 2 * pairs)
    mean = total / pairs
    cov = (cross - pairs * torch.outer(mean, mean)) / max(pairs - 1, 1)
    return Moments(pairs, mean + offset, cov)
