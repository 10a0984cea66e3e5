"""Reference Greeks: delta = grad u(0, x0) and gamma = its Hessian, independent of the solver, with error bars.

- closed form (one Black-Scholes asset, a call): delta = e^{-qT} Phi(d1), gamma = e^{-qT} phi(d1) / (S vol sqrt T);
- semi-analytic (max call, independent assets): the price e^{-rT} int_K^inf (1 - prod_k Phi(d_k(m))) dm
  differentiated under the integral, d_k(m) = (ln(m / x_k) - (r - q - vol_k^2/2) T) / s_k, s_k = vol_k sqrt T:
  delta_i = e^{-rT} int phi(d_i) prod_{k!=i} Phi(d_k) dm / (x_i s_i),
  gamma_ii = e^{-rT} int phi(d_i) prod_{k!=i} Phi(d_k) (d_i / s_i - 1) dm / (x_i^2 s_i),
  gamma_ij = -e^{-rT} int phi(d_i) phi(d_j) prod_{k!=i,j} Phi(d_k) dm / (x_i s_i x_j s_j);
- radial (u = v(|x|^2)): grad u = 2 v_s x, Hess u = 2 v_s I + 4 v_ss x x^T from the radial solve's profile at t = 0;
- mc (f = -r y over a Brownian or GBM process, any correlation): pathwise delta and mixed likelihood-ratio gamma
  over [0, T] with 95% intervals (:func:`bsde.greeks.transition_greeks`), for a payoff without jumps (pathwise
  derivatives miss a jump's part: a digital's delta would be 0; :func:`bsde.probing.payoff_jumps`);
- any other value method (a declared closed form, Monte Carlo of Cole-Hopf, MLP, ...): central differences of its value with common random
  numbers (the same seed at every bump), flagged as a fallback: delta_i = (V(x0 + h e_i) - V(x0 - h e_i)) / 2h,
  gamma_ii = (V(x0 + h e_i) - 2 V(x0) + V(x0 - h e_i)) / h^2, with no error bar.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field, replace
from functools import partial
from typing import Any

import numpy as np
from scipy import integrate, special

from bsde import arguments
from bsde.equations.base import Equation
from bsde.equations.pricing import MaxCall
from bsde.errors import ProblemError
from bsde.probing import payoff_jumps
from bsde.problem import Problem, as_problem
from bsde.reference.engine import reference, resolve_method
from bsde.reference.monte_carlo import euler_monte_carlo
from bsde.reference.result import ReferenceResult, finite_json
from bsde.reference.sampling import Progress
from bsde.region import with_start

#: above this dimension only the diagonal of gamma is computed (bsde.greeks.GAMMA_FULL_MAX_DIM, without torch)
FULL_GAMMA_MAX_DIM = 100
DEFAULT_GREEK_PATHS = 1 << 20
#: central differences bump each coordinate by this fraction of max(|x0_i|, 1)
BUMP = 0.01
Z95 = 1.96


@dataclass(frozen=True)
class GreeksResult:
    """Reference delta (d,) and gamma (diagonal, and the full d x d matrix up to FULL_GAMMA_MAX_DIM) at x0.

    ``delta_error``/``gamma_diag_error`` are 95% interval half-widths for Monte Carlo (``error_kind`` says
    which), a discretisation-error estimate for deterministic methods, None for the central-difference fallback.
    """

    method: str
    value: float | None
    delta: list[float]
    gamma_diag: list[float]
    gamma: list[list[float]] | None
    delta_stderr: list[float] | None
    gamma_diag_stderr: list[float] | None
    delta_error: list[float] | None
    gamma_diag_error: list[float] | None
    error_kind: str
    fallback: bool
    paths: int | None
    wall_s: float
    details: dict[str, Any] = field(default_factory=dict)
    #: the value's standard error, where it is sampled (the same paths and seed as ``bsde reference``)
    value_stderr: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: the fields plus 95% intervals where the method gives standard errors."""
        data = asdict(self)
        if self.delta_stderr is not None:
            data["delta_ci95"] = _intervals(self.delta, self.delta_stderr)
            data["gamma_diag_ci95"] = _intervals(self.gamma_diag, self.gamma_diag_stderr)
        return finite_json(data)


def _intervals(values: list[float], stderrs: list[float]) -> list[list[float]]:
    return [[v - Z95 * s, v + Z95 * s] for v, s in zip(values, stderrs)]


# ---------------------------------------------------------------------------- closed form and semi-analytic
def black_scholes_greeks(spot: float, strike: float, rate: float, dividend: float, vol: float,
                         total_time: float) -> tuple[float, float]:
    """(delta, gamma) of a call: e^{-qT} Phi(d1) and e^{-qT} phi(d1) / (S vol sqrt T)."""
    spread = vol * math.sqrt(total_time)
    if spread <= 0.0 or strike <= 0.0:
        raise ProblemError("closed-form Greeks need a positive volatility and strike")
    d1 = (math.log(spot / strike) + (rate - dividend) * total_time + 0.5 * spread * spread) / spread
    carry = math.exp(-dividend * total_time)
    return carry * float(special.ndtr(d1)), carry * math.exp(-0.5 * d1 * d1) / math.sqrt(2 * math.pi) / (spot * spread)


def max_call_greeks(spots: np.ndarray, vols: np.ndarray, strike: float, rate: float, dividend: float | np.ndarray,
                    total_time: float, *, full: bool) -> tuple[np.ndarray, np.ndarray, float]:
    """(delta (d,), gamma ((d, d) if ``full`` else its diagonal (d,)), quadrature error) for independent assets.

    The integrals of the module docstring over u = ln m (dm = e^u du), all coordinates in one vector quadrature.
    """
    spots, vols, dividend = (np.asarray(v, dtype=float) for v in (spots, vols, dividend))
    if np.any(vols <= 0):
        raise ProblemError("semi-analytic Greeks need every vol positive (use method 'mc')")
    d = spots.size
    centre = np.log(spots) + (rate - dividend - 0.5 * vols * vols) * total_time
    spread = vols * math.sqrt(total_time)
    scale = spots * spread  # d d_i / d x_i = -1 / scale_i
    log_root_2pi = 0.5 * math.log(2 * math.pi)

    def integrand(u: float) -> np.ndarray:
        z = (u - centre) / spread
        log_cdf = special.log_ndtr(z)
        # phi(d_i) prod_{k != i} Phi(d_k) e^u, in logs (Phi_i may underflow where phi_i does not)
        log_i = log_cdf.sum() - log_cdf - 0.5 * z * z - log_root_2pi + u
        single = np.exp(log_i)
        delta = single / scale
        diagonal = single * (z / spread - 1.0) / (spots * scale)
        if not full:
            return np.concatenate([delta, diagonal])
        # phi_i phi_j prod_{k != i, j} Phi_k e^u = single_i * phi_j / Phi_j
        ratio = np.exp(-0.5 * z * z - log_root_2pi - log_cdf)
        cross = -np.outer(single / scale, ratio / scale)
        np.fill_diagonal(cross, diagonal)
        return np.concatenate([delta, cross.ravel()])

    lower = math.log(strike) if strike > 0 else float(np.min(centre - 12.0 * spread)) - 1.0
    top = float(np.max(centre + 12.0 * spread)) + 1.0
    breaks = np.unique(np.concatenate([centre + k * spread for k in (-4.0, -2.0, 0.0, 2.0, 4.0)]))
    breaks = [b for b in breaks if lower < b < top]
    if len(breaks) > 40:
        breaks = list(np.quantile(breaks, np.linspace(0.0, 1.0, 40)))
    values, error = integrate.quad_vec(integrand, lower, top, epsabs=0.0, epsrel=1e-10, norm="max",
                                       points=sorted(set(breaks)) or None, limit=2000)
    discount = math.exp(-rate * total_time)
    delta = discount * values[:d]
    gamma = discount * (values[d:].reshape(d, d) if full else values[d:])
    return delta, gamma, discount * float(error)


def _semi_analytic(equation: Equation, full: bool) -> GreeksResult:
    if not isinstance(equation, MaxCall) or not equation.process.independent:
        raise ProblemError("semi-analytic Greeks apply to max_call with independent assets (correlation 0)")
    start = time.perf_counter()
    from bsde.reference.semi_analytic import black_scholes_call, max_call_independent

    spots, vols, dividends = (np.array(v) for v in (equation.x_start, equation.vols, equation.dividends))
    if equation.dim == 1:
        args = (equation.strike, equation.rate, float(dividends[0]), float(vols[0]), equation.total_time)
        delta, gamma = black_scholes_greeks(float(spots[0]), *args)
        value = black_scholes_call(float(spots[0]), *args)
        return GreeksResult("semi-analytic", value, [delta], [gamma], [[gamma]], None, None, [0.0], [0.0],
                            "exact", False, None, time.perf_counter() - start,
                            {"formula": "Black-Scholes call: e^{-qT} Phi(d1), e^{-qT} phi(d1) / (S vol sqrt T)"})
    delta, gamma, error = max_call_greeks(spots, vols, equation.strike, equation.rate, dividends,
                                          equation.total_time, full=full)
    value, _ = max_call_independent(spots, vols, equation.strike, equation.rate, dividends, equation.total_time)
    diagonal = np.diagonal(gamma) if full else gamma
    d = equation.dim
    return GreeksResult("semi-analytic", value, delta.tolist(), diagonal.tolist(), gamma.tolist() if full else None,
                        None, None, [error] * d, [error] * d, "quadrature error", False, None,
                        time.perf_counter() - start,
                        {"formula": "the max-call integral differentiated under the integral sign", "quad_error": error})


# ---------------------------------------------------------------------------- radial
def radial_greeks(equation: Equation, full: bool, points: int | None = None, steps: int | None = None) -> GreeksResult:
    """delta and gamma from the radial solve's profile at t = 0 (``points`` cells, ``steps`` steps; default the
    radial method's), with the whole half-resolution difference as the error estimate (a bound, as the value's)."""
    from bsde.reference.radial import DEFAULT_POINTS, DEFAULT_STEPS, radial_profiles

    points, steps = points or DEFAULT_POINTS, steps or DEFAULT_STEPS

    form = equation.radial_form()
    if form is None:
        raise ProblemError(f"radial Greeks apply to rotation-invariant problems, not '{equation.kind}'")
    start = time.perf_counter()
    x0 = np.array(equation.x_start)
    s0 = float(x0 @ x0)

    def greeks(points: int, steps: int) -> tuple[float, np.ndarray, np.ndarray]:
        profile = radial_profiles(form, 1, points, steps)[0]
        v_s, v_ss = float(profile(s0, 1)), float(profile(s0, 2))
        gamma = 4.0 * v_ss * np.outer(x0, x0) if full else 4.0 * v_ss * x0 * x0
        gamma += 2.0 * v_s * (np.eye(x0.size) if full else 1.0)
        return float(profile(s0)), 2.0 * v_s * x0, gamma

    value, delta, gamma = greeks(points, steps)
    _, delta_coarse, gamma_coarse = greeks(points // 2, steps // 2)
    diagonal, diagonal_coarse = (np.diagonal(g) if full else g for g in (gamma, gamma_coarse))
    return GreeksResult("radial", value, delta.tolist(), diagonal.tolist(), gamma.tolist() if full else None,
                        None, None, np.abs(delta - delta_coarse).tolist(),
                        np.abs(diagonal - diagonal_coarse).tolist(), "half-resolution difference", False,
                        None, time.perf_counter() - start,
                        {"formula": "grad u = 2 v_s x, Hess u = 2 v_s I + 4 v_ss x x^T", "points": points,
                         "steps": steps})


# ---------------------------------------------------------------------------- Monte Carlo
def _monte_carlo(equation: Equation, full: bool, paths: int | None, seed: int) -> GreeksResult:
    import torch

    from bsde.greeks import transition_greeks
    from bsde.model import terminal_gradient
    from bsde.reference.monte_carlo import monte_carlo
    from bsde.reference.sampling import DEVICE, require_paths

    if not monte_carlo_applies(equation):
        raise ProblemError(f"mc Greeks need a driver -r y and a Brownian or GBM process ('{equation.kind}')")
    paths = paths or DEFAULT_GREEK_PATHS
    require_paths("mc", paths)
    start = time.perf_counter()
    x0 = torch.tensor(equation.x_start, dtype=torch.float64, device=DEVICE)

    found = transition_greeks(equation.process, x0, equation.total_time, partial(terminal_gradient, equation),
                              discount=equation.discount_factor, pairs=paths // 2,
                              generator=torch.Generator(device=DEVICE).manual_seed(seed), full=full)
    valued = monte_carlo(equation, paths=paths, seed=seed)  # bsde reference's value, to the digit
    delta_err, diag_err = found.delta_stderr.tolist(), found.gamma_diag_stderr.tolist()
    return GreeksResult("mc", valued.value, found.delta.tolist(), found.gamma_diag.tolist(),
                        found.gamma.tolist() if full else None, delta_err, diag_err,
                        [Z95 * e for e in delta_err], [Z95 * e for e in diag_err], "95% CI half-width", False,
                        2 * found.pairs, time.perf_counter() - start,
                        {"delta": "pathwise: e^{-rT} E[w o grad g(X_T)], w = X_T / x0",
                         "gamma": "likelihood ratio on the pathwise delta (mixed), antithetic pairs",
                         "value": "Monte Carlo, the paths of bsde reference --method mc with the same seed"},
                        value_stderr=valued.stderr)


# ---------------------------------------------------------------------------- fallback
def at_point(problem: Problem, x0: list[float]) -> Problem:
    """``problem`` with the starting point moved to ``x0`` (validated as the equation's own x0)."""
    return replace(problem, equation=with_start(problem.equation, list(x0)))


def central_differences(problem: Problem, method: str, *, paths: int | None, seed: int,
                        progress: Progress | None = None) -> GreeksResult:
    """delta_i and gamma_ii by central differences of ``method``'s value, the same seed at every point."""
    start = time.perf_counter()
    x0 = list(problem.equation.x_start)
    d = len(x0)
    bumps = [BUMP * max(abs(v), 1.0) for v in x0]

    def value(point: list[float]) -> ReferenceResult:
        if level is not None:  # the Euler Monte Carlo on one level at every point, not each point's own halving
            return euler_monte_carlo(at_point(problem, point).equation, seed=seed, steps=level,
                                     **({} if paths is None else {"paths": paths}))
        return reference(at_point(problem, point), method, paths=paths, seed=seed)

    level = None
    at_x0 = value(x0)  # the value itself, with its error bar where it has one
    if at_x0.method == "mc" and "halving" in at_x0.details:  # QA: levels 8, 16 at one bump and 8 at the others
        level = at_x0.details["steps"]                       # made gamma 7.5x too large on one seed, < 0 on another
    centre = value(x0).value if level is not None else at_x0.value  # the differences' own centre
    delta, diagonal = [], []
    for i, h in enumerate(bumps):
        up, down = list(x0), list(x0)
        up[i] += h
        down[i] -= h
        high, low = value(up).value, value(down).value
        delta.append((high - low) / (2 * h))
        diagonal.append((high - 2 * centre + low) / (h * h))
        if progress is not None:
            progress(i + 1, d)
    return GreeksResult("central-differences", at_x0.value, delta, diagonal, None, None, None, None, None, "none",
                        True, paths, time.perf_counter() - start,
                        {"of": method, "bump": f"{BUMP} * max(|x0_i|, 1)", "bumps": bumps,
                         "random_numbers": "common (the same seed at every point)",
                         **({"euler_steps": f"{level} at every point (the level x0's step halving reached)"}
                            if level is not None else {}),
                         "note": "fallback: no error bar; the bias is O(h^2), the noise of the value method divided by h"},
                        value_stderr=at_x0.stderr)


def monte_carlo_applies(equation: Equation) -> bool:
    """Pathwise and likelihood-ratio Greeks need f = -r y and an exact coordinatewise process (Brownian, GBM)."""
    from bsde.processes import GBM, BrownianMotion

    return equation.driver_is_linear and isinstance(equation.process, (BrownianMotion, GBM))


def greeks_method(problem: Problem, method: str = "auto") -> tuple[str, bool]:
    """(value method, whether its Greeks are the central-difference fallback) for ``method``: semi-analytic (positive
    vols), radial and mc (where :func:`monte_carlo_applies`) have their own Greeks, any other method falls back."""
    name = resolve_method(problem, method)
    equation = problem.equation
    if name == "semi-analytic" and not isinstance(equation, MaxCall):  # hjb's value formula: the radial solve's
        if method != "auto":  # Greeks (an integral per coordinate would cost minutes at d = 100)
            raise ProblemError("semi-analytic has no Greeks for hjb (its value only); use --method radial")
        return "radial", False
    if name == "semi-analytic":
        return name, equation.dim > 1 and any(v <= 0 for v in equation.vols)
    if name == "mc":
        return name, not monte_carlo_applies(equation) or payoff_jumps(equation)
    return name, name != "radial"


def fallback_reason(problem: Problem, name: str) -> str:
    """Why the Greeks of value method ``name`` are central differences (see greeks_method), in words."""
    if name == "mc" and monte_carlo_applies(problem.equation):
        return "the payoff jumps, which pathwise Greeks miss"
    return f"no direct Greeks for method '{name}'"


def reference_greeks(problem: Problem | Equation, method: str = "auto", *, paths: int | None = None,
                     seed: int = 0, progress: Progress | None = None) -> GreeksResult:
    """Reference delta and gamma of ``problem`` at its x0 (see the module docstring for the methods).

    ``method`` is a value method of :func:`bsde.reference.reference` ("auto": the preferred one that applies);
    semi-analytic, radial and mc have their own Greeks, any other goes through central differences.
    """
    problem = as_problem(problem)
    seed = arguments.seed(seed)
    paths = arguments.optional_integer("paths", paths, minimum=1)
    name, fallback = greeks_method(problem, method)
    full = problem.equation.dim <= FULL_GAMMA_MAX_DIM
    if fallback:
        return central_differences(problem, name, paths=paths, seed=seed, progress=progress)
    if name == "semi-analytic":
        return _semi_analytic(problem.equation, full)
    if name == "radial":
        return radial_greeks(problem.equation, full)
    return _monte_carlo(problem.equation, full, paths, seed)
