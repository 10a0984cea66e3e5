"""Girsanov: f = -r y + m . z + k(t, x) (constant r and m) on a Brownian motion or a GBM: by Feynman-Kac
u(0, x0) = E[e^{-rT} g(X_T) + int_0^T e^{-rs} k(s, X_s) ds] under the drift b + sigma m (:mod:`bsde.girsanov`).

X_s is the process's exact transition over s from a shifted start (x0 + sigma m s; for a GBM x0 e^{vol (C^{1/2} m) s}).
The source's time integral is Gauss-Legendre on SOURCE_NODES[0] nodes, each node's X_s from the same normals as X_T
(each term has the right mean); the rule on SOURCE_NODES[1] nodes beside it gives the change, which widens the 95%
interval (more than the finer rule's error: 1e-16 for a source polynomial in t; 0.43 for a step of 5 in t, whose
error on 16 nodes was 0.17). A source of t alone is integrated at x0, deterministically. Antithetic pairs.
"""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING

import numpy
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


#: Gauss-Legendre nodes of the source's time integral, and of the coarser rule whose change from it is reported
SOURCE_NODES = (16, 8)


def shifted_start(equation: Equation, m: tuple[float, ...], horizon: float | None = None) -> torch.Tensor:
    """The start from which the process's own transition over ``horizon`` (default T) lands where X lands at that
    time under the drift b + sigma m."""
    horizon = equation.total_time if horizon is None else horizon
    x0 = torch.tensor(equation.x_start, dtype=torch.float64, device=DEVICE)
    moved = torch.tensor(drift_shift(equation, m), dtype=torch.float64, device=DEVICE) * horizon
    return x0 + moved if isinstance(equation.process, BrownianMotion) else x0 * moved.exp()


def source_rule(horizon: float, rate: float, nodes: int) -> list[tuple[float, float]]:
    """(s_j, w_j e^{-r s_j}): Gauss-Legendre on [0, T], discounted, for int_0^T e^{-rs} k(s) ds ~ sum w_j e^{-r s_j}
    k(s_j)."""
    points, weights = numpy.polynomial.legendre.leggauss(nodes)
    return [(0.5 * horizon * (p + 1.0), 0.5 * horizon * w * math.exp(-rate * 0.5 * horizon * (p + 1.0)))
            for p, w in zip(points.tolist(), weights.tolist())]


def _source(equation: Equation, s: float, x: torch.Tensor) -> torch.Tensor:
    """k(s, x) = f(s, x, 0, 0) at states x (n, dim)."""
    n = x.shape[0]
    zeros = torch.zeros(n, dtype=x.dtype, device=x.device)
    return torch.as_tensor(equation.driver(s, x, zeros, torch.zeros_like(x)), dtype=torch.float64).expand(n)


def _integrals(equation: Equation, m: tuple[float, ...], rate: float, normals: torch.Tensor) -> torch.Tensor:
    """(n, 2): the source's discounted time integral along each normal's states on the two rules of SOURCE_NODES."""
    columns = []
    for nodes in SOURCE_NODES:
        total = torch.zeros(normals.shape[0], dtype=torch.float64, device=normals.device)
        for s, weight in source_rule(equation.total_time, rate, nodes):
            x = equation.process.transition(shifted_start(equation, m, s).expand_as(normals), s, normals)
            total = total + weight * _source(equation, s, x)
        columns.append(total)
    return torch.stack(columns, -1)


def girsanov(equation: Equation, *, paths: int = DEFAULT_PATHS, seed: int = 0, progress: Progress | None = None,
             shards: int | None = None, group: Group | None = None) -> ReferenceResult:
    """u(0, x0) = E[e^{-rT} g(X_T) + int_0^T e^{-rs} k(s, X_s) ds] under the drift b + sigma m (see the module
    docstring), with its stderr (in ``shards`` of their own streams, over the processes of ``group``, where given)."""
    found = girsanov_drift(equation)
    if found is None:
        raise ProblemError(f"girsanov applies to a Brownian motion or a GBM with a driver -r y + m . z + k(t, x) "
                           f"(constant r and m); '{equation.kind}' is not one")
    rate, m = found.rate, found.m
    require_paths("girsanov", paths)
    began = time.perf_counter()
    process, horizon, start = equation.process, equation.total_time, shifted_start(equation, m)
    discount = math.exp(-rate * horizon)
    sampled_source = found.source and found.source_uses_x

    def columns(normals: torch.Tensor) -> torch.Tensor:  # undiscounted: e^{rT} times the integrals
        payoff = equation.terminal(process.transition(start, horizon, normals)).unsqueeze(-1)
        if not sampled_source:
            return payoff
        integrals = _integrals(equation, m, rate, normals) / discount
        return torch.cat([payoff.to(torch.float64) + integrals[:, :1], integrals[:, 1:] - integrals[:, :1]], -1)

    if shards is None:
        moments = antithetic_moments(columns, paths, equation.dim, progress=progress,
                                     generator=torch.Generator(device=DEVICE).manual_seed(seed))
    else:
        moments = sharded_moments(columns, paths, equation.dim, seed=seed, shards=shards, group=group,
                                  progress=progress)
    value, stderr = discount * float(moments.mean[0]), discount * math.sqrt(float(moments.cov[0, 0]) / moments.n)
    details = {"rate": rate, "z_coefficients": list(m[:8]) + (["..."] if len(m) > 8 else []), "antithetic": True,
               **({"shards": shards} if shards else {}), "tail_share": moments.tail_share(),
               "constant_sample": moments.constant()}
    change = 0.0
    if found.source:
        if sampled_source:
            change = discount * float(moments.mean[1])
        else:  # k(t) alone: its integral at x0, the same on every path
            at_start = torch.tensor([equation.x_start], dtype=torch.float64, device=DEVICE)
            rules = [sum(w * float(_source(equation, s, at_start)[0]) for s, w in source_rule(horizon, rate, nodes))
                     for nodes in SOURCE_NODES]
            value, change = value + rules[0], rules[1] - rules[0]
        details.update(source="sampled along the paths" if sampled_source else "of t alone, at x0",
                       source_nodes=list(SOURCE_NODES), quadrature_allowance=abs(change),
                       ci95="value +- (1.96 stderr + |Q_coarse - Q_fine|)")
    low, high = ci95(value, stderr)
    return ReferenceResult(value, stderr, (low - abs(change), high + abs(change)), "girsanov", 2 * (paths // 2),
                           time.perf_counter() - began, details)
