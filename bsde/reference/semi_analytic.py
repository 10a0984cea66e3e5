"""Closed forms by quadrature: Black-Scholes call, the call on the maximum of independent assets, and hjb.

max call: e^{-rT} int_K^inf (1 - prod_i Phi(d_i(m))) dm,  d_i(m) = (ln(m/x_i) - (r - q_i - vol_i^2/2) T) / (vol_i sqrt T).

hjb (Cole-Hopf): u(0, x0) = -(1/lam) ln E exp(-lam g(x0 + a Z)), a = sigma sqrt T, g(x) = ln((1 + |x|^2) / 2), and
|x0 + a Z|^2 = (r0 + a z)^2 + a^2 w^2 with z ~ N(0, 1) along x0 (r0 = |x0|) and w ~ chi(d - 1) across it (at x0 = 0
simply a^2 w^2, w ~ chi(d)): a one- or two-dimensional integral, taken in log space (exp(-lam g) spans thousands of
orders of magnitude at large lam), exact at every lam, d and x0 up to the quadrature's tolerance.
"""

from __future__ import annotations

import math
import time

import numpy as np
from scipy import integrate, optimize, special

from bsde.equations.hjb import HJB
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


#: points of the grid that finds where a log-integrand peaks (the quadrature is told to split there)
PEAK_GRID = 4001
#: the outer integral's grid (each of its points costs an inner quadrature)
OUTER_GRID = 201
#: a log-integrand this far below its peak is left out of the domain (e^-60 of the peak's weight)
LOG_SPAN = 60.0


def _log_integral(log_f, low: float, high: float, grid: int) -> tuple[float, float]:
    """(ln int_low^high exp(log_f), its relative error) for a unimodal ``log_f`` (taking arrays): its peak found on
    a grid and then between the grid's neighbours of it (a peak far narrower than the grid, at large lam or |x0|),
    the domain cut where log_f is LOG_SPAN below it (doubling steps out from the peak), and exp(log_f - peak) <= 1
    integrated adaptively there."""
    nodes = np.linspace(low, high, grid)
    values = log_f(nodes)
    top = int(np.argmax(values))
    if not math.isfinite(float(values[top])):
        raise ProblemError("semi-analytic: the integrand is not finite anywhere on its grid")
    left, right = nodes[max(top - 1, 0)], nodes[min(top + 1, grid - 1)]
    found = optimize.minimize_scalar(lambda t: -float(log_f(np.array([t]))[0]), bounds=(left, right),
                                     method="bounded", options={"xatol": 1e-12 * max(1.0, abs(right - left))})
    where, peak = (float(found.x), -float(found.fun)) if -found.fun > values[top] else (nodes[top], float(values[top]))

    def edge(direction: float, end: float) -> float:
        """Where log_f falls LOG_SPAN below the peak, found by doubling steps from it (``end`` at the latest)."""
        step = 1e-9 * (high - low)
        while True:
            point = where + direction * step
            if direction * (point - end) >= 0:
                return end
            if float(log_f(np.array([point]))[0]) < peak - LOG_SPAN:
                return point
            step *= 2.0

    first, last = edge(-1.0, low), edge(1.0, high)
    mass, error = integrate.quad(lambda t: math.exp(min(float(log_f(np.array([t]))[0]) - peak, 0.0)), first, last,
                                 points=[where] if first < where < last else None,
                                 epsabs=0.0, epsrel=RELATIVE_TOLERANCE, limit=500)
    if not mass > 0.0 or not math.isfinite(mass):
        raise ProblemError(f"semi-analytic: the quadrature around the integrand's peak at {where:.6g} found no mass")
    return peak + math.log(mass), error / mass


def _log_chi(w: np.ndarray, k: int) -> np.ndarray:
    """ln of the chi(k) density at w >= 0: (k - 1) ln w - w^2 / 2 + (1 - k/2) ln 2 - ln Gamma(k/2)."""
    return special.xlogy(k - 1, w) - 0.5 * w * w + (1 - 0.5 * k) * math.log(2.0) - special.gammaln(0.5 * k)


#: below this |lam| the value is E g - (lam / 2) Var g (an error of order lam^2): ln E exp(-lam g) itself is then
#: of order lam, and dividing its rounding by lam lost the digits (1.8e-2 off at lam = 1e-12)
SMALL_LAM = 1e-5


def hjb_cole_hopf(x0: np.ndarray, sigma: float, total_time: float, lam: float) -> tuple[float, float]:
    """(u(0, x0), its error estimate) for hjb: the Cole-Hopf formula integrated over the law of |x0 + a Z|^2
    (small lam: the mean and variance of g, integrated the same way)."""
    dim, r0, a = len(x0), float(np.linalg.norm(x0)), sigma * math.sqrt(total_time)

    def normal(z: np.ndarray) -> np.ndarray:
        return -0.5 * z * z - 0.5 * math.log(2 * math.pi)

    def log_mean(weight) -> tuple[float, float]:
        """(ln E exp(weight(|X_T|^2)), its relative error), ``weight`` taking arrays of |X_T|^2."""
        def across(k: int, c: float) -> tuple[float, float]:  # over w ~ chi(k), |X_T|^2 = c + a^2 w^2
            high = math.sqrt(k + 2 * abs(lam) + 1) + 40.0
            return _log_integral(lambda w: _log_chi(w, k) + weight(c + a * a * w * w), 0.0, high, PEAK_GRID)

        if r0 == 0.0:
            return across(dim, 0.0)
        along = 40.0 + r0 / a + math.sqrt(2 * abs(lam))
        if dim == 1:
            return _log_integral(lambda z: normal(z) + weight((r0 + a * z) ** 2), -along, along, PEAK_GRID)
        inner_errors = [0.0]

        def outer(z: np.ndarray) -> np.ndarray:  # along x0: z ~ N(0, 1), |X_T|^2 = (r0 + a z)^2 + a^2 w^2
            inner = [across(dim - 1, (r0 + a * zi) ** 2) for zi in z]
            inner_errors.extend(error for _, error in inner)
            return normal(z) + np.array([value for value, _ in inner])

        value, relative = _log_integral(outer, -along, along, OUTER_GRID)
        return value, relative + max(inner_errors)

    def log_of_log(power: int):
        """ln (ln(1 + s))^power: the moments of g + ln 2 >= 0, in log space too."""
        def weight(s: np.ndarray) -> np.ndarray:
            with np.errstate(divide="ignore"):
                return power * np.log(np.log1p(s))
        return weight

    try:
        if abs(lam) >= SMALL_LAM:
            value, relative = log_mean(lambda s: -lam * (np.log1p(s) - math.log(2.0)))
            return -value / lam, relative / abs(lam)
        (first, first_error), (second, second_error) = log_mean(log_of_log(1)), log_mean(log_of_log(2))
        mean, square = math.exp(first), math.exp(second)
        variance = max(square - mean * mean, 0.0)
        error = mean * first_error + 0.5 * abs(lam) * square * second_error + lam * lam * square * mean
        return mean - math.log(2.0) - 0.5 * lam * variance, error
    except (ArithmeticError, ValueError) as exc:  # an overflow or a log of 0 the checks above did not foresee
        raise ProblemError(f"semi-analytic: the hjb integral failed at lam = {lam:g}, |x0| = {r0:g}, "
                           f"sigma sqrt(T) = {a:g} ({type(exc).__name__}: {exc})") from None


def semi_analytic(equation: MaxCall | HJB) -> ReferenceResult:
    """u(0, x0) for ``max_call`` with independent assets (any vols and dividends), and for ``hjb`` (any lam, d, x0),
    by one- or two-dimensional quadrature."""
    if isinstance(equation, HJB):
        start = time.perf_counter()
        value, error = hjb_cole_hopf(np.array(equation.x_start, dtype=float), equation.process.sigma,
                                     equation.total_time, equation.lam)
        return ReferenceResult(value, None, None, "semi-analytic", None, time.perf_counter() - start,
                               {"quad_error": error, "formula": "Cole-Hopf, over the law of |X_T|^2"})
    if not isinstance(equation, MaxCall):
        raise ProblemError(f"semi-analytic applies to max_call and hjb only, not '{equation.kind}'")
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
