"""Closed forms: Black-Scholes call, and the call on the maximum of independent assets.

max call: e^{-rT} int_K^inf (1 - prod_i Phi(d_i(m))) dm,  d_i(m) = (ln(m/x_i) - (r - q_i - vol_i^2/2) T) / (vol_i sqrt T).
"""

from __future__ import annotations

import math
import time

import numpy as np
from scipy import integrate, special

from bsde.equations.pricing import MaxCall
from bsde.errors import ProblemError
from bsde.reference.result import ReferenceResult

RELATIVE_TOLERANCE = 1e-10


def black_scholes_call(spot: float, strike: float, rate: float, dividend: float, vol: float, total_time: float) -> float:
    """e^{-qT} S Phi(d1) - e^{-rT} K Phi(d2), d1,2 = (ln(S/K) + (r - q +- vol^2/2) T) / (vol sqrt T)."""
    forward = spot * math.exp((rate - dividend) * total_time)
    discount = math.exp(-rate * total_time)
    spread = vol * math.sqrt(total_time)
    if spread == 0.0 or strike == 0.0:
        return discount * max(forward - strike, 0.0)
    d1 = (math.log(forward / strike) + 0.5 * spread * spread) / spread
    return discount * (forward * special.ndtr(d1) - strike * special.ndtr(d1 - spread))


def max_call_independent(
    spots: np.ndarray, vols: np.ndarray, strike: float, rate: float, dividend: float | np.ndarray,
    total_time: float,
) -> tuple[float, float]:
    """Price of max(max_i S_i(T) - K, 0) for independent log-normal assets; returns (price, quad error).

    Integrates over u = ln m: e^{-rT} int_{ln K}^{inf} (1 - prod_i Phi(d_i(e^u))) e^u du.
    """
    spots, vols, dividend = (np.asarray(v, dtype=float) for v in (spots, vols, dividend))
    centre = np.log(spots) + (rate - dividend - 0.5 * vols * vols) * total_time
    spread = vols * math.sqrt(total_time)
    random = spread > 0
    fixed_max = float(np.max(centre[~random])) if (~random).any() else -math.inf

    def tail(u: float) -> float:
        """P(max_i ln S_i > u) e^u, with 1 - prod Phi = -expm1(sum log Phi)."""
        if u < fixed_max:
            return math.exp(u)
        log_cdf = special.log_ndtr((u - centre[random]) / spread[random]).sum()
        return -math.expm1(log_cdf) * math.exp(u)

    top = float(np.max(centre + 12.0 * spread)) + 1.0
    bottom = float(np.min(centre - 12.0 * spread)) - 1.0
    lower = math.log(strike) if strike > 0 else bottom
    breaks = np.unique(np.concatenate([centre + k * spread for k in (-4.0, -2.0, 0.0, 2.0, 4.0)]))
    breaks = [b for b in breaks if lower < b < top]
    if len(breaks) > 40:  # many assets: their quantiles cluster, a coarse subset of breakpoints does
        breaks = list(np.quantile(breaks, np.linspace(0.0, 1.0, 40)))
    if fixed_max > lower:
        breaks.append(fixed_max)
    value, error = integrate.quad(tail, lower, top, points=sorted(set(breaks)) or None,
                                  epsabs=0.0, epsrel=RELATIVE_TOLERANCE, limit=500)
    if strike <= 0:  # E[max] = int_0^inf P(max > m) dm; below e^bottom the tail is 1
        value += math.exp(bottom)
    discount = math.exp(-rate * total_time)
    return discount * value, discount * error


def semi_analytic(equation: MaxCall) -> ReferenceResult:
    """u(0, x0) for ``max_call`` with independent assets (any vols and dividends), by one-dimensional quadrature."""
    if not isinstance(equation, MaxCall):
        raise ProblemError(f"semi-analytic applies to max_call only, not '{equation.kind}'")
    if not equation.process.independent:
        raise ProblemError(
            f"semi-analytic needs independent assets (correlation 0 or the identity matrix, got "
            f"{equation.correlation}); use method 'mc'"
        )
    start = time.perf_counter()
    value, error = max_call_independent(
        np.array(equation.x_start), np.array(equation.vols), equation.strike, equation.rate,
        np.array(equation.dividends), equation.total_time,
    )
    return ReferenceResult(value, None, None, "semi-analytic", None, time.perf_counter() - start,
                           {"quad_error": error})
