"""Monte Carlo for linear drivers f = -r y: u(0, x0) = e^{-rT} E[g(X_T)].

X_T is sampled exactly in one step where the process has an exact transition (Brownian motion, GBM);
otherwise by Euler-Maruyama on N = 8, 16, 32, ... steps, each level coupled with the half-step path on
the same increments, until twice (the change |P_N - P_{N/2}| plus 2 of its standard errors) is inside the 95%
half-width (first order, the change is about the error of P_N, to leading order only: at theta = 5 an
Ornstein-Uhlenbeck mean fell just outside the interval it widened); the reported interval is widened by twice the
change (``details``: discretisation_bias |P_N - P_{N/2}|, discretisation_allowance twice it).
Antithetic pairs; for ``max_call`` also control variates C_k = e^{-rT} sum_i (S_i - c_k)^+ whose
means are Black-Scholes prices, with the regression weight beta taken from an independent pilot run.
"""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING

import numpy as np
import torch
from scipy import special

from bsde.equations.base import Equation
from bsde.equations.pricing import MaxCall
from bsde.errors import ProblemError
from bsde.reference.result import ReferenceResult, ci95
from bsde.reference.sampling import DEVICE, Progress, antithetic_moments, require_paths
from bsde.reference.semi_analytic import black_scholes_call
from bsde.reference.shards import sharded_moments

if TYPE_CHECKING:
    from bsde.distributed import Group

DEFAULT_PATHS = 1 << 20
#: Euler-Maruyama (processes without an exact transition): default paths, first and largest step counts
EULER_PATHS = 1 << 17
EULER_START_STEPS = 8
EULER_MAX_STEPS = 512
PILOT_PATHS = 1 << 14
#: control strikes c_k are the quantiles of one asset where P(S_i > c_k) = TAIL_COUNTS[k] / dim
TAIL_COUNTS = (0.5, 1.0, 2.0, 4.0)


def control_strikes(equation: MaxCall) -> list[float]:
    """The strike K and, for dim > 1, high quantiles of each asset's law (where the maximum lives)."""
    if equation.dim == 1:
        return [equation.strike]
    vol = float(np.mean(equation.vols))
    spot = float(np.exp(np.mean(np.log(equation.x_start))))
    dividend = float(np.mean(equation.dividends))
    centre = math.log(spot) + (equation.rate - dividend - 0.5 * vol * vol) * equation.total_time
    spread = vol * math.sqrt(equation.total_time)
    quantiles = [math.exp(centre + spread * special.ndtri(1.0 - p / equation.dim))
                 for p in TAIL_COUNTS if p < 0.5 * equation.dim]
    return [equation.strike, *quantiles]


def _control_means(equation: MaxCall, strikes: list[float]) -> torch.Tensor:
    """E C_k = sum_i BS call(x_i, c_k)."""
    return torch.tensor([
        sum(black_scholes_call(x, c, equation.rate, q, v, equation.total_time)
            for x, v, q in zip(equation.x_start, equation.vols, equation.dividends))
        for c in strikes
    ], dtype=torch.float64, device=DEVICE)


def _columns(equation: Equation, strikes: list[float]):
    """normals (n, dim) -> [discounted payoff, controls...] (n, 1 + len(strikes))."""
    x0 = torch.tensor(equation.x_start, dtype=torch.float64, device=DEVICE)
    strike_t = torch.tensor(strikes, dtype=torch.float64, device=DEVICE)
    discount = equation.discount_factor

    def columns(normals: torch.Tensor) -> torch.Tensor:
        assets = equation.process.transition(x0, equation.total_time, normals)
        payoff = equation.terminal(assets).unsqueeze(-1)
        if not strikes:
            return discount * payoff
        calls = (assets.unsqueeze(-1) - strike_t).clamp_(min=0.0).sum(-2)
        return discount * torch.cat([payoff, calls], dim=-1)

    return columns


def _euler_columns(equation: Equation, steps: int):
    """normals (n, steps, dim) -> [e^{-rT} g(X^N_T), e^{-rT} (g(X^N_T) - g(X^{N/2}_T))] by Euler-Maruyama."""
    process, h = equation.process, equation.total_time / steps
    x0 = torch.tensor(equation.x_start, dtype=torch.float64, device=DEVICE)
    discount = equation.discount_factor

    def columns(normals: torch.Tensor) -> torch.Tensor:
        dw = normals * math.sqrt(h)
        fine = coarse = x0.expand(normals.shape[0], -1)
        for k in range(steps):
            fine = process.step(k * h, fine, h, dw[:, k])
            if k % 2:
                coarse = process.step((k - 1) * h, coarse, 2 * h, dw[:, k - 1] + dw[:, k])
        g_fine, g_coarse = equation.terminal(fine), equation.terminal(coarse)
        return discount * torch.stack([g_fine, g_fine - g_coarse], dim=-1)

    return columns


def euler_monte_carlo(equation: Equation, *, paths: int = EULER_PATHS, seed: int = 0,
                      progress: Progress | None = None, max_steps: int = EULER_MAX_STEPS,
                      steps: int | None = None) -> ReferenceResult:
    """e^{-rT} E[g(X_T)] by Euler-Maruyama with step halving (see the module docstring); with ``steps``, on that
    many steps alone (central differences hold the level fixed at every bumped point: bsde.reference.greeks)."""
    require_paths("mc", paths)
    start = time.perf_counter()
    generator = torch.Generator(device=DEVICE).manual_seed(seed)
    if steps is not None:
        max_steps = steps
    halving, steps = [], EULER_START_STEPS if steps is None else steps
    while True:
        moments = antithetic_moments(_euler_columns(equation, steps), paths, equation.dim, generator=generator,
                                     progress=progress, steps=steps)
        value, bias = float(moments.mean[0]), float(moments.mean[1])
        stderr, bias_stderr = (math.sqrt(max(float(moments.cov[i, i]), 0.0) / moments.n) for i in (0, 1))
        halving.append({"steps": steps, "value": value, "stderr": stderr, "bias": bias, "bias_stderr": bias_stderr})
        converged = 2 * (abs(bias) + 2 * bias_stderr) <= 1.96 * stderr
        if converged or 2 * steps > max_steps:
            break
        steps *= 2
    half_width = 1.96 * stderr + 2 * abs(bias)
    details = {"antithetic": True, "control": "none", "scheme": "euler-maruyama", "steps": steps,
               "discretisation_bias": abs(bias), "discretisation_allowance": 2 * abs(bias), "converged": converged,
               "halving": halving, "tail_share": moments.tail_share(), "constant_sample": moments.constant(),
               "ci95": "value +- (1.96 stderr + 2 |P_N - P_{N/2}|)"}
    return ReferenceResult(value, stderr, (value - half_width, value + half_width), "mc", 2 * moments.n,
                           time.perf_counter() - start, details)


def monte_carlo(
    equation: Equation, *, paths: int | None = None, seed: int = 0, progress: Progress | None = None,
    controls: bool = True, shards: int | None = None, group: Group | None = None,
) -> ReferenceResult:
    """e^{-rT} E[g(X_T)] for a linear driver f = -r y: antithetic, control variates for max_call.

    The value is mean(Y - beta . (C - E C)) on ``paths`` fresh paths with beta from a pilot of
    2^14 paths; ``details['variance_reduction']`` is Var(Y) / Var(Y - beta . C) over antithetic pairs.
    Without an exact transition: :func:`euler_monte_carlo` (default paths EULER_PATHS; not in shards).
    With ``shards`` the fresh paths come in that many shards of their own streams (over the processes
    of ``group``, if given; see :mod:`bsde.reference.shards`).
    """
    if not equation.driver_is_linear:
        raise ProblemError(f"mc applies to linear drivers f = -r y; the driver of '{equation.kind}' is not")
    if not equation.process.exact and shards is not None:
        raise ProblemError(f"mc: the Euler Monte Carlo ('{equation.kind}' has no exact transition) does not run in "
                           "shards or over processes")
    if not equation.process.exact:
        return euler_monte_carlo(equation, seed=seed, progress=progress, **({} if paths is None else {"paths": paths}))
    paths = DEFAULT_PATHS if paths is None else paths
    require_paths("mc", paths)
    start = time.perf_counter()
    generator = torch.Generator(device=DEVICE).manual_seed(seed)
    strikes = control_strikes(equation) if controls and isinstance(equation, MaxCall) else []
    columns = _columns(equation, strikes)
    weights = torch.ones(1, dtype=torch.float64, device=DEVICE)
    details: dict = {"antithetic": True, "control": "none"}
    if strikes:
        pilot = antithetic_moments(columns, PILOT_PATHS, equation.dim, generator=generator)
        beta = torch.from_numpy(np.linalg.lstsq(pilot.cov[1:, 1:].numpy(), pilot.cov[1:, 0].numpy(), rcond=None)[0])
        weights = torch.cat([weights, -beta])
        means = _control_means(equation, strikes)
        details.update(control="e^{-rT} sum_i (S_i - c)^+ at strikes c", control_strikes=strikes,
                       beta=beta.tolist(), pilot_paths=PILOT_PATHS)
    if shards is None:
        main = antithetic_moments(columns, paths, equation.dim, generator=generator, progress=progress)
    else:
        main = sharded_moments(columns, paths, equation.dim, seed=seed, shards=shards, group=group, progress=progress)
        details["shards"] = shards
    value = float(weights @ main.mean) + (float(beta @ means) if strikes else 0.0)
    stderr = main.stderr(weights)
    details["tail_share"] = main.tail_share()  # of the payoff (a heavy tail: ReferenceResult.caveat)
    if strikes:
        plain = math.sqrt(float(main.cov[0, 0]) / main.n)
        details.update(variance_reduction=(plain / stderr) ** 2 if stderr > 0 else math.inf, stderr_without=plain)
    return ReferenceResult(value, stderr, ci95(value, stderr), "mc", 2 * main.n, time.perf_counter() - start, details)
