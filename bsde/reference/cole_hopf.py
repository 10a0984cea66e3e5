"""Cole-Hopf transform: u_t + b . grad u + (sigma^2/2) Lap u - (lam/2)|sigma grad u|^2 = 0 is linear in w = e^{-lam u}.

u(0, x0) = -(1/lam) ln E exp(-lam g(x0 + b T + sigma W_T)): for ``hjb`` (sigma = sqrt 2, b = 0, the driver
-(lam/2)|Z|^2), and for any equation on a Brownian motion whose driver is -(lam/2)|z|^2 alone (a custom one,
say; :func:`bsde.probing.pure_quadratic`).
"""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING, Callable

import torch

from bsde.equations.base import Equation
from bsde.equations.hjb import HJB
from bsde.errors import ProblemError
from bsde.processes import BrownianMotion
from bsde.reference.result import ReferenceResult, ci95
from bsde.reference.sampling import DEVICE, Progress, antithetic_moments, require_paths
from bsde.reference.shards import shard_generator, sharded_moments

if TYPE_CHECKING:
    from bsde.distributed import Group

DEFAULT_PATHS = 1 << 20


def cole_hopf_estimate(
    terminal: Callable[[torch.Tensor], torch.Tensor], x0: tuple[float, ...], sigma: float, total_time: float,
    lam: float, *, paths: int, generator: torch.Generator, progress: Progress | None = None,
    shards: int | None = None, seed: int = 0, group: Group | None = None, effective: list[float] | None = None,
) -> tuple[float, float]:
    """(value, stderr) of -(1/lam) ln E exp(-lam g(x0 + sigma W_T)); lam = 0 gives E g.

    Antithetic pairs; stderr by the delta method, sd(ln mean) = sd(mean) / mean. The exponent is
    shifted by a constant (the first chunk's mean of -lam g) so exp neither over- nor underflows.
    With ``shards`` the pairs come in shards of their own streams (seeded from ``seed``; over the
    processes of ``group``), and the shift is the mean over a pilot chunk of shard 0's stream. ``effective``,
    where given, receives the effective number of paths of the weights exp(-lam g), 2 n m^2 / (m^2 + v) over
    the n antithetic pairs' mean m and variance v.
    """
    effective = [] if effective is None else effective
    start = torch.tensor(x0, dtype=torch.float64, device=DEVICE)
    scale = sigma * math.sqrt(total_time)

    def moments_of(columns: Callable[[torch.Tensor], torch.Tensor]):
        if shards is None:
            return antithetic_moments(columns, paths, len(x0), generator=generator, progress=progress)
        return sharded_moments(columns, paths, len(x0), seed=seed, shards=shards, group=group, progress=progress)

    if lam == 0.0:
        moments = moments_of(lambda n: terminal(start + scale * n).unsqueeze(-1))
        return float(moments.mean[0]), math.sqrt(float(moments.cov[0, 0]) / moments.n)
    shift: list[float] = []
    if shards is not None:  # one shift for every shard, whichever process computes it
        pilot = torch.randn(1024, len(x0), generator=shard_generator(seed, 0), dtype=torch.float64, device=DEVICE)
        shift.append(float((-lam * terminal(start + scale * pilot)).mean()))

    def columns(normals: torch.Tensor) -> torch.Tensor:
        exponent = -lam * terminal(start + scale * normals)
        if not shift:
            shift.append(float(exponent.mean()))
        return torch.exp(exponent - shift[0]).unsqueeze(-1)

    moments = moments_of(columns)
    mean, variance = float(moments.mean[0]), float(moments.cov[0, 0])
    sd_mean = math.sqrt(variance / moments.n)
    effective.append(2 * moments.n * mean * mean / (mean * mean + variance))
    return -(math.log(mean) + shift[0]) / lam, sd_mean / (abs(lam) * mean)


def cole_hopf_lam(equation: Equation) -> float | None:
    """lam where the Cole-Hopf formula gives u for ``equation`` (``hjb``; a Brownian motion with the driver
    -(lam/2)|z|^2 alone), None where it does not apply."""
    if isinstance(equation, HJB):
        return equation.lam
    if not isinstance(equation.process, BrownianMotion):
        return None
    from bsde.probing import pure_quadratic

    return pure_quadratic(equation)


def cole_hopf(equation: Equation, *, paths: int = DEFAULT_PATHS, seed: int = 0, progress: Progress | None = None,
              shards: int | None = None, group: Group | None = None) -> ReferenceResult:
    """u(0, x0) by Monte Carlo of the Cole-Hopf formula (see the module docstring for where it applies), with a
    delta-method stderr (in ``shards`` of their own streams, over the processes of ``group``, where given)."""
    lam = cole_hopf_lam(equation)
    if lam is None:
        raise ProblemError(f"cole-hopf applies to a Brownian motion with the driver -(lam/2)|z|^2 alone (hjb); "
                           f"'{equation.kind}' is not one")
    require_paths("cole-hopf", paths)
    began = time.perf_counter()
    generator = torch.Generator(device=DEVICE).manual_seed(seed)
    effective: list[float] = []
    process, horizon = equation.process, equation.total_time
    start = tuple(v + b * horizon for v, b in zip(equation.x_start, process.drifts(equation.dim)))  # x0 + b T + sigma W_T
    value, stderr = cole_hopf_estimate(equation.terminal, start, process.sigma, horizon, lam, paths=paths,
                                       generator=generator, progress=progress, shards=shards, seed=seed, group=group,
                                       effective=effective)
    details = {"lam": lam, "antithetic": True, **({"shards": shards} if shards else {}),
               **({"effective_paths": effective[0]} if effective else {})}
    return ReferenceResult(value, stderr, ci95(value, stderr), "cole-hopf", 2 * (paths // 2),
                           time.perf_counter() - began, details)
