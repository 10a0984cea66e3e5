"""Girsanov: f = -r y + m . z (constant r and m) on a Brownian motion or a GBM: u(0, x0) = e^{-rT} E g(X_T) under
the drift b + sigma m (:mod:`bsde.girsanov`), by Feynman-Kac.

X_T is the process's exact transition from a shifted start (x0 + sigma m T; for a GBM x0 e^{vol (C^{1/2} m) T}),
which needs no scalar drift for a shift that differs between coordinates. Antithetic pairs.
"""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING

import torch

from bsde.equations.base import Equation
from bsde.errors import ProblemError
from bsde.girsanov import drift_shift, girsanov_drift
from bsde.processes import BrownianMotion
from bsde.reference.cole_hopf import DEFAULT_PATHS
from bsde.reference.result import ReferenceResult, ci95
from bsde.reference.sampling import DEVICE, Progress, antithetic_moments, require_paths
from bsde.reference.shards import sharded_moments

if TYPE_CHECKING:
    from bsde.distributed import Group


def shifted_start(equation: Equation, m: tuple[float, ...]) -> torch.Tensor:
    """The start from which the process's own transition over T lands where X_T lands under the drift b + sigma m."""
    x0 = torch.tensor(equation.x_start, dtype=torch.float64, device=DEVICE)
    moved = torch.tensor(drift_shift(equation, m), dtype=torch.float64, device=DEVICE) * equation.total_time
    return x0 + moved if isinstance(equation.process, BrownianMotion) else x0 * moved.exp()


def girsanov(equation: Equation, *, paths: int = DEFAULT_PATHS, seed: int = 0, progress: Progress | None = None,
             shards: int | None = None, group: Group | None = None) -> ReferenceResult:
    """u(0, x0) = e^{-rT} E g(X_T) under the drift b + sigma m (see the module docstring), with its stderr (in
    ``shards`` of their own streams, over the processes of ``group``, where given)."""
    found = girsanov_drift(equation)
    if found is None:
        raise ProblemError(f"girsanov applies to a Brownian motion or a GBM with a driver -r y + m . z (constant r "
                           f"and m); '{equation.kind}' is not one")
    rate, m = found
    require_paths("girsanov", paths)
    began = time.perf_counter()
    process, horizon, start = equation.process, equation.total_time, shifted_start(equation, m)

    def columns(normals: torch.Tensor) -> torch.Tensor:
        return equation.terminal(process.transition(start, horizon, normals)).unsqueeze(-1)

    if shards is None:
        moments = antithetic_moments(columns, paths, equation.dim, progress=progress,
                                     generator=torch.Generator(device=DEVICE).manual_seed(seed))
    else:
        moments = sharded_moments(columns, paths, equation.dim, seed=seed, shards=shards, group=group,
                                  progress=progress)
    discount = math.exp(-rate * horizon)
    value, stderr = discount * float(moments.mean[0]), discount * math.sqrt(float(moments.cov[0, 0]) / moments.n)
    details = {"rate": rate, "z_coefficients": list(m[:8]) + (["..."] if len(m) > 8 else []), "antithetic": True,
               **({"shards": shards} if shards else {})}
    return ReferenceResult(value, stderr, ci95(value, stderr), "girsanov", 2 * (paths // 2),
                           time.perf_counter() - began, details)
