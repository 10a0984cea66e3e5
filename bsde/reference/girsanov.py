"""Girsanov: a driver linear in z with a constant vector, f = -r y + m . z, on a Brownian motion shifts its drift.

u_t + b . grad u + (sigma^2/2) Lap u - r u + m . (sigma grad u) = 0 is the pricing equation of X with the drift
b + sigma m, so by Feynman-Kac u(0, x0) = e^{-rT} E g(x0 + (b + sigma m) T + sigma W_T): exact sampling,
antithetic pairs (:func:`bsde.reference.cole_hopf.cole_hopf_estimate` with lam = 0).
"""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING

import torch

from bsde.equations.base import Equation
from bsde.errors import ProblemError
from bsde.processes import BrownianMotion
from bsde.reference.cole_hopf import DEFAULT_PATHS, cole_hopf_estimate
from bsde.reference.result import ReferenceResult, ci95
from bsde.reference.sampling import DEVICE, Progress, require_paths

if TYPE_CHECKING:
    from bsde.distributed import Group


def girsanov_drift(equation: Equation) -> tuple[float, tuple[float, ...]] | None:
    """(r, m) where the Girsanov shift gives u for ``equation`` (a Brownian motion, f = -r y + m . z using z),
    None where it does not apply."""
    if not isinstance(equation.process, BrownianMotion):
        return None
    from bsde.probing import linear_driver

    return linear_driver(equation)


def girsanov(equation: Equation, *, paths: int = DEFAULT_PATHS, seed: int = 0, progress: Progress | None = None,
             shards: int | None = None, group: Group | None = None) -> ReferenceResult:
    """u(0, x0) = e^{-rT} E g(X_T) under the drift b + sigma m (see the module docstring), with its stderr (in
    ``shards`` of their own streams, over the processes of ``group``, where given)."""
    found = girsanov_drift(equation)
    if found is None:
        raise ProblemError(f"girsanov applies to a Brownian motion with a driver -r y + m . z (constant r and m); "
                           f"'{equation.kind}' is not one")
    rate, m = found
    require_paths("girsanov", paths)
    began = time.perf_counter()
    process, horizon = equation.process, equation.total_time
    start = tuple(v + (process.drift + process.sigma * mi) * horizon for v, mi in zip(equation.x_start, m))
    mean, stderr = cole_hopf_estimate(equation.terminal, start, process.sigma, horizon, 0.0, paths=paths,
                                      generator=torch.Generator(device=DEVICE).manual_seed(seed), progress=progress,
                                      shards=shards, seed=seed, group=group)
    discount = math.exp(-rate * horizon)
    value, stderr = discount * mean, discount * stderr
    details = {"rate": rate, "z_coefficients": list(m[:8]) + (["..."] if len(m) > 8 else []), "antithetic": True,
               **({"shards": shards} if shards else {})}
    return ReferenceResult(value, stderr, ci95(value, stderr), "girsanov", 2 * (paths // 2),
                           time.perf_counter() - began, details)
