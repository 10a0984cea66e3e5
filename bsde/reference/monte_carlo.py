"""Monte Carlo for linear pricing problems: e^{-rT} E[g(X_T)] with X_T sampled exactly in one step.

Antithetic pairs; for ``max_call`` also control variates C_k = e^{-rT} sum_i (S_i - c_k)^+ whose
means are Black-Scholes prices, with the regression weight beta taken from an independent pilot run.
"""

from __future__ import annotations

import math
import time

import numpy as np
import torch
from scipy import special

from bsde.equations.pricing import BlackScholes, MaxCall
from bsde.errors import ProblemError
from bsde.reference.result import ReferenceResult, ci95
from bsde.reference.sampling import DEVICE, Progress, antithetic_moments, require_paths
from bsde.reference.semi_analytic import black_scholes_call

DEFAULT_PATHS = 1 << 20
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


def _columns(equation: BlackScholes, strikes: list[float]):
    """normals (n, dim) -> [discounted payoff, controls...] (n, 1 + len(strikes))."""
    x0 = torch.tensor(equation.x_start, dtype=torch.float64, device=DEVICE)
    strike_t = torch.tensor(strikes, dtype=torch.float64, device=DEVICE)
    discount = math.exp(-equation.rate * equation.total_time)

    def columns(normals: torch.Tensor) -> torch.Tensor:
        assets = equation.process.transition(x0, equation.total_time, normals)
        payoff = equation.terminal(assets).unsqueeze(-1)
        if not strikes:
            return discount * payoff
        calls = (assets.unsqueeze(-1) - strike_t).clamp_(min=0.0).sum(-2)
        return discount * torch.cat([payoff, calls], dim=-1)

    return columns


def monte_carlo(
    equation: BlackScholes, *, paths: int = DEFAULT_PATHS, seed: int = 0, progress: Progress | None = None,
    controls: bool = True,
) -> ReferenceResult:
    """e^{-rT} E[g(X_T)] for a Black-Scholes market: antithetic, control variates for max_call.

    The value is mean(Y - beta . (C - E C)) on ``paths`` fresh paths with beta from a pilot of
    2^14 paths; ``details['variance_reduction']`` is Var(Y) / Var(Y - beta . C) over antithetic pairs.
    """
    if not isinstance(equation, BlackScholes):
        raise ProblemError(f"mc applies to linear Black-Scholes pricing (max_call), not '{equation.kind}'")
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
    main = antithetic_moments(columns, paths, equation.dim, generator=generator, progress=progress)
    value = float(weights @ main.mean) + (float(beta @ means) if strikes else 0.0)
    stderr = main.stderr(weights)
    if strikes:
        plain = math.sqrt(float(main.cov[0, 0]) / main.n)
        details.update(variance_reduction=(plain / stderr) ** 2 if stderr > 0 else math.inf, stderr_without=plain)
    return ReferenceResult(value, stderr, ci95(value, stderr), "mc", 2 * main.n, time.perf_counter() - start, details)
