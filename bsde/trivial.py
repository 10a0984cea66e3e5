"""What a solver that learned nothing returns: the driver-free baseline E g(X_T), and the Z = 0 value.

With Z = 0 the march is Y_{n+1} = Y_n - f(t_n, X_n, Y_n, 0) dt (the trapezoid's last node takes
Z_N = sigma^T grad g, which no network sets), and the solver's y0 is the minimiser of E|Y_N(y0) - g(X_T)|^2:
the Z = 0 value. It is E g(X_T) only where the march leaves y as it is (hjb under the Euler step; its
trapezoid's last node moves it by dt/2 f(T, X_N, sigma^T grad g)); Allen-Cahn's f = y - y^3 gives about
e^T E g, differing rates' -R^l y about e^{-R^l T} E g.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from bsde.equations.base import Equation
from bsde.heavy_tail import heavy_tail_warning, largest_share
from bsde.model import terminal_z
from bsde.simulation import Paths, simulate_paths

BASELINE_PATHS = 1 << 16
#: the bracket of the Z = 0 value grows by this factor at most this many times before giving up
GROWTH, GROWTHS = 4.0, 40
#: values beyond this are clipped for the root finder (a cubic driver's march overflows far from the root)
CLIP = 1e300
#: Gauss-Newton steps at most, and the relative step of the central differences of Y_N in y
GAUSS_NEWTON_STEPS, FD_STEP = 8, 1e-4
#: a final loss above this many times Var g(X_T) (which Z = 0 already gets near) means training went astray; a
#: start whose loss is above this many times E g(X_T)^2 has a march that blows up (y0_init: baseline then starts
#: at the Z = 0 value instead)
ASTRAY_LOSS = 10.0


@dataclass(frozen=True)
class Baseline:
    """Driver-free value e^{-rT} E[g(X_T)] by Monte Carlo, with the spread of the payoff."""

    value: float
    stderr: float
    payoff_var: float
    #: the largest share of the sample variance of g(X_T) that one path carries: about 2 ln(n) / n for a light
    #: tail over n paths, O(1) where Var g(X_T) (or E g) is not finite (see heavy_tail)
    tail_share: float = 0.0
    #: how many paths the value took
    paths: int = 0


def baseline_paths(dim: int) -> int:
    """About 2^24 / d paths (a fixed cost), between BASELINE_PATHS and 2^20."""
    return min(1 << 20, max(BASELINE_PATHS, (1 << 24) // dim))


def driver_free_baseline(equation: Equation, *, paths: int | None = None, generator: torch.Generator,
                         device: torch.device, dtype: torch.dtype = torch.float64, steps: int = 1) -> Baseline:
    """E[g(X_T)], discounted when f = -r y (the answer then).

    X_T in one exact step where the process allows it, else on ``steps`` steps (the solver's grid)."""
    paths = paths or baseline_paths(equation.dim)
    steps = 1 if equation.process.exact else steps
    chunk = max(256, min(paths, (1 << 22) // (equation.dim * steps)))
    total, total_sq, done, high, low = 0.0, 0.0, 0, -math.inf, math.inf
    while done < paths:
        n = min(chunk, paths - done)
        sim = simulate_paths(equation.process, equation.x_start, equation.total_time, steps, n,
                             generator=generator, device=device, dtype=dtype)
        g = equation.terminal(sim.x[:, -1]).to(torch.float64)
        total += float(g.sum())
        total_sq += float(g.square().sum())
        high, low = max(high, float(g.max())), min(low, float(g.min()))
        done += n
    mean = total / paths
    spread = max(total_sq / paths - mean * mean, 0.0) * paths  # sum of (g - mean)^2
    var = spread / max(paths - 1, 1)
    discount = equation.discount_factor
    return Baseline(discount * mean, discount * math.sqrt(var / paths), var, largest_share(high, low, mean, spread),
                    paths)


def heavy_tail(baseline: Baseline) -> str | None:
    """The heavy-tail warning (bsde.heavy_tail) for the baseline's sample of g(X_T); None for a light tail."""
    return heavy_tail_warning(baseline.tail_share, baseline.paths)


def zero_z_value(model, equation: Equation, paths: Paths, baseline: Baseline) -> float | None:
    """The y0 of a solver stuck at Z = 0: the minimiser of mean |Y_N(y) - g(X_T)|^2 over ``paths`` (the solver's
    grid, its march and scheme, Z = 0), then moved to the baseline's many more paths by k (E g - mean g),
    k = mean(Y_N') / mean(Y_N'^2) its sensitivity to a shift of g. None where it cannot be had (a march that
    is not finite or not monotone in y, or any fault: this runs after training and must not lose it)."""
    try:
        return _zero_z_value(model, equation, paths, baseline)
    except Exception:  # noqa: BLE001 - a diagnostic: whatever goes wrong, the solve keeps its result
        return None


def zero_z_start(model, equation: Equation, paths: Paths, terminal: torch.Tensor) -> float | None:
    """The Z = 0 value on ``paths`` (the validation paths, whose g(X_T) is ``terminal``) as a start for y0; None
    where it cannot be had."""
    g = terminal.to(torch.float64)
    baseline = Baseline(equation.discount_factor * float(g.mean()), 0.0, float(g.var()) if g.numel() > 1 else 0.0)
    return zero_z_value(model, equation, paths, baseline)


def _zero_z_value(model, equation: Equation, paths: Paths, baseline: Baseline) -> float | None:
    x, dw = paths.x, paths.dw
    zeros = x.new_zeros(x.shape[0], dw.shape[1], x.shape[-1])
    # the trapezoid's last node takes sigma^T grad g (no network): once, not in every march
    z_end = terminal_z(equation, x[:, -1]) if model.needs_z_end() else zeros[:, 0]
    scale = math.sqrt(baseline.payoff_var) if math.isfinite(baseline.payoff_var) else 0.0
    with torch.no_grad():
        g = equation.terminal(x[:, -1]).to(torch.float64)
        mean_g = float(g.mean())

        def end(y: float) -> torch.Tensor:
            """Y_N(y) on every path, Z = 0."""
            start = torch.tensor(y, dtype=x.dtype, device=x.device)
            return model.march(x, dw, paths.dt, zeros, y_start=start, controlled=False,
                               z_end=z_end).to(torch.float64)

        def gap(y: float) -> float:
            value = float(end(y).mean()) - mean_g
            if math.isnan(value):
                raise ArithmeticError
            return max(-CLIP, min(CLIP, value))

        if not equation.driver_uses_y:  # Y_N(y) = y + Y_N(0): the minimiser is mean(g - Y_N(0)), k = 1
            y, k = mean_g - float(end(0.0).mean()), 1.0
        else:
            # the root of the mean gap first (the minimiser where Y_N' is the same on every path), then
            # Gauss-Newton on the minimiser's condition mean((Y_N - g) Y_N') = 0, Y_N' by central differences
            y = _root(gap, mean_g, scale, tolerance(x.dtype))
            for _ in range(GAUSS_NEWTON_STEPS):
                step = FD_STEP * max(abs(y), scale, 1e-8)
                slope = (end(y + step) - end(y - step)) / (2 * step)
                curvature = float(slope.square().mean())
                if not (math.isfinite(curvature) and curvature > 0):
                    return None
                move = float(((end(y) - g) * slope).mean()) / curvature
                y -= move
                if abs(move) <= tolerance(x.dtype) * max(abs(y), scale, 1e-8):
                    break
            k = float(slope.mean()) / curvature
    undiscounted = baseline.value / equation.discount_factor if equation.discount_factor else mean_g
    value = y + k * (undiscounted - mean_g)
    return value if math.isfinite(value) else None


def tolerance(dtype: torch.dtype) -> float:
    """The relative precision worth asking of a march in ``dtype``: 1e-12 in float64, 1e-5 in float32."""
    return 1e-5 if dtype in (torch.float32, torch.float16, torch.bfloat16) else 1e-12


def _finite_start(gap: Callable[[float], float], start: float, scale: float) -> tuple[float, float, float]:
    """(y, gap(y), gap'(y)) at the first of ``start``, 0, start / 2, start / 4, ..., start -+ scale where the march is
    finite and increasing (QA: a march with f = y - y^3 + k from E g = 1.38 overflowed, while u0 = 0.34 is finite)."""
    candidates = [start, 0.0, *(start / 2**k for k in range(1, 6)), start - scale, start + scale, -start]
    for y in candidates:
        step = FD_STEP * max(abs(y), scale, 1e-8)
        try:
            slope = (gap(y + step) - gap(y - step)) / (2 * step)
            at_y = gap(y)
            if math.isfinite(slope) and slope > 0 and abs(at_y) < CLIP:
                return y, at_y, slope
        except ArithmeticError:
            continue
    raise ArithmeticError


def _root(gap: Callable[[float], float], start: float, scale: float, precision: float) -> float:
    """The root of an increasing ``gap``: a Newton step from ``start``, then a bracket grown around it and
    Brent's method (a few marches: Y_N is nearly affine in y near the root)."""
    from scipy.optimize import brentq

    start, at_start, slope = _finite_start(gap, start, scale)
    guess, found = start - at_start / slope, None
    for _ in range(GROWTHS):  # the Newton step, halved back toward the start until it lowers |gap| (a march that
        try:                  # overflows beyond it, as y - y^3 does, would otherwise send the bracket to 1e276)
            found = gap(guess)
            if abs(found) <= abs(at_start):
                break
        except ArithmeticError:
            pass
        guess, found = 0.5 * (start + guess), None
    if found is None:
        raise ArithmeticError
    if found == 0.0:
        return guess
    width, other, other_y = 2.0 * abs(found) / slope + precision * max(1.0, abs(guess)), found, guess
    for _ in range(GROWTHS):  # step against the sign of the gap until it turns (back off where the march overflows)
        other_y = guess - math.copysign(width, found)
        try:
            other = gap(other_y)
        except ArithmeticError:
            width /= 2 * GROWTH
            continue
        if other == 0.0 or (other > 0) != (found > 0):
            break
        width *= GROWTH
    else:
        raise ArithmeticError
    if other == 0.0:
        return other_y
    low, high = sorted((guess, other_y))
    return brentq(gap, low, high, xtol=precision * max(1.0, abs(guess)), rtol=max(precision, 1e-15))


def trivial_solution_warning(y0: float, final_loss: float, baseline: Baseline, *, zero_z: float | None = None,
                             linear: bool = False) -> str | None:
    """Warn when y0 sits on the Z = 0 value (``zero_z``; the baseline where it is unknown) while the loss is
    still near Var(g).

    Not for a ``linear`` driver (f = -r y): there the baseline is the answer, whatever Z is.
    """
    if not math.isfinite(baseline.value):
        return f"the driver-free baseline is not finite ({baseline.value}); g(X_T) overflows for these parameters"
    if linear:
        return None
    trivial = baseline.value if zero_z is None else zero_z
    near = abs(y0 - trivial) <= max(3 * baseline.stderr, 1e-3 * abs(trivial))
    if near and baseline.payoff_var > 0 and final_loss > 0.5 * baseline.payoff_var:
        what = (f"the driver-free baseline {trivial:.6g}" if zero_z is None else
                f"the value a solver with Z = 0 returns ({trivial:.6g}; E g(X_T) = {baseline.value:.6g})")
        return (
            f"the trained Y_0 (y0_bsde = {y0:.6g}) is within a hair of {what} and the loss ({final_loss:.3g}) stays near "
            f"Var g(X_T) ({baseline.payoff_var:.3g}): the networks may not have learned Z (trivial solution); "
            "try more iterations or another learning rate"
        )
    return None
