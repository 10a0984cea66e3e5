"""Girsanov: a driver linear in z with a constant vector, f = -r y + m . z, shifts the process's drift.

u_t + b . grad u + (1/2) tr(sigma sigma^T Hess u) - r u + m . (sigma^T grad u) = 0 is the pricing equation of X
with the drift b + sigma m, so by Feynman-Kac u(0, x0) = e^{-rT} E g(X_T) under that drift: for a Brownian motion
X_T = x0 + (b + sigma m) T + sigma W_T, for a GBM (sigma(x) = diag(vol x) C^{1/2}) each asset's drift gains
vol_i (C^{1/2} m)_i. Both are the process's exact transition from a shifted start (x0 + sigma m T; x0 e^{vol
(C^{1/2} m) T}). Antithetic pairs.
"""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING

import torch

from bsde.equations.base import Equation
from bsde.errors import ProblemError
from bsde.processes import GBM, BrownianMotion
from bsde.reference.cole_hopf import DEFAULT_PATHS
from bsde.reference.result import ReferenceResult, ci95
from bsde.reference.sampling import DEVICE, Progress, antithetic_moments, require_paths
from bsde.reference.shards import sharded_moments

if TYPE_CHECKING:
    from bsde.distributed import Group


def girsanov_drift(equation: Equation) -> tuple[float, tuple[float, ...]] | None:
    """(r, m) where the Girsanov shift gives u for ``equation`` (a Brownian motion or a GBM, f = -r y + m . z using
    z), None where it does not apply."""
    if not isinstance(equation.process, (BrownianMotion, GBM)):
        return None
    from bsde.probing import linear_driver

    return linear_driver(equation)


def shifted_start(equation: Equation, m: tuple[float, ...]) -> torch.Tensor:
    """The start from which the process's own transition over T lands where X_T lands under the drift b + sigma m."""
    process, horizon = equation.process, equation.total_time
    x0 = torch.tensor(equation.x_start, dtype=torch.float64, device=DEVICE)
    shift = torch.tensor(m, dtype=torch.float64, device=DEVICE)
    if isinstance(process, BrownianMotion):
        return x0 + process.sigma * shift * horizon
    vol = torch.tensor(process.vols(equation.dim), dtype=torch.float64, device=DEVICE)
    return x0 * (vol * process.correlated(shift.unsqueeze(0))[0] * horizon).exp()  # C^{1/2} symmetric


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
