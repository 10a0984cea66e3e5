"""One-dimensional problems (dim = 1) as a PDE on a grid: central differences in space, BDF2 in time.

With s = x for X = x0 + mu t + sigma W (a = mu, b = sigma^2/2, c = sigma) and s = log x for a geometric Brownian
motion with drift mu, dividend q and volatility v (a = mu - q - v^2/2, b = v^2/2, c = v; x u_x = u_s, so
z = v x u_x = v u_s):

    u_t + a u_s + b u_ss + f(t, x(s), u, c u_s) = 0,   u(T, s) = g(x(s)),

on s0 +- (|a| T + 12 c sqrt(T)) with u = g held at both ends: a path from s0 reaches them with probability
about e^{-72}, so their values do not matter. Each step solves its nonlinear system by Newton's method
(f_y and f_z by central differences of the equation's own driver); one that does not converge is an error,
not a value. The details carry the same solve at half resolution; their whole difference is the error estimate,
about three times the error (the terminal condition is averaged over each cell, adaptively, so a payoff's kink
or jump leaves the scheme second order; a third of the difference, the Richardson estimate, came out 0.94-1.05
times the error for calls, too close to serve as a bar).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from scipy import linalg

from bsde.equations.base import Equation
from bsde.errors import ProblemError
from bsde.processes import GBM, BrownianMotion
from bsde.reference.result import ReferenceResult, at_two_resolutions
from bsde.reference.sampling import DEVICE
from bsde.runtime import using_threads

DEFAULT_POINTS = 2000
DEFAULT_STEPS = 500
TAIL_SIGMAS = 12.0
NEWTON_TOL = 1e-13
NEWTON_MAX = 30
#: Gauss-Legendre points per cell for the cell average of the terminal condition, its tolerance relative to
#: max |g|, the most halvings of a cell where the payoff has a kink or a jump (2^-40 of a cell), and the most
#: cells split at one level
CELL_NODES = 8
CELL_TOLERANCE = 1e-13
CELL_DEPTH = 40
CELL_SPLITS = 256


class _Problem:
    """The coefficients (a, b, c), the grid in s, and the equation's f and g evaluated on it."""

    def __init__(self, equation: Equation, points: int):
        process, horizon = equation.process, equation.total_time
        self.equation, self.geometric = equation, isinstance(process, GBM)
        if self.geometric:
            vol, dividend = process.vols(1)[0], process.dividends(1)[0]
            self.a, self.b, self.c = process.drift - dividend - 0.5 * vol * vol, 0.5 * vol * vol, vol
            centre = math.log(equation.x_start[0])
        else:
            self.a, self.b, self.c = process.drifts(1)[0], 0.5 * process.sigma ** 2, process.sigma
            centre = equation.x_start[0]
        half = abs(self.a) * horizon + TAIL_SIGMAS * self.c * math.sqrt(horizon)
        self.centre_index = points // 2
        self.s = centre + np.linspace(-half, half, 2 * self.centre_index + 1)
        self.h = self.s[1] - self.s[0]
        self.x = torch.tensor(np.exp(self.s) if self.geometric else self.s, dtype=torch.float64,
                              device=DEVICE).unsqueeze(-1)

    def terminal(self) -> np.ndarray:
        """g averaged over each node's cell [s - h/2, s + h/2]: a payoff's kink or jump between nodes then moves
        the start by O(h^2), not O(h) with a sign that flips from grid to grid (and, for a jump, the same at
        both resolutions, where their difference cannot see it). Adaptive Gauss-Legendre (CELL_NODES points):
        a cell whose halves' sum differs from its own rule is split, again and again (see ``_averages``): smooth
        cells cost one rule, a kink or a jump a few dozen more, whatever the payoff's scale."""
        low, high = self.s - 0.5 * self.h, self.s + 0.5 * self.h
        whole = self._rule(low, high)
        return self._averages(low, high, whole, scale=1.0 + float(np.abs(whole).max()))

    def _rule(self, low: np.ndarray, high: np.ndarray) -> np.ndarray:
        """The CELL_NODES-point Gauss-Legendre mean of g over each [low, high]."""
        nodes, weights = np.polynomial.legendre.leggauss(CELL_NODES)
        s = 0.5 * (low + high)[:, None] + 0.5 * (high - low)[:, None] * nodes[None, :]
        x = torch.tensor(np.exp(s) if self.geometric else s, dtype=torch.float64, device=DEVICE).reshape(-1, 1)
        return self.equation.terminal(x).numpy().reshape(s.shape) @ (0.5 * weights)

    def _averages(self, low: np.ndarray, high: np.ndarray, whole: np.ndarray, *, scale: float,
                  depth: int = 0) -> np.ndarray:
        """Each cell's mean of g, from its rule ``whole``; a cell at ``depth`` weighs 2^-depth in its node's average,
        so it is split while its halves' rules differ from it by more than CELL_TOLERANCE * scale * 2^depth
        (rounding of g's size never splits it), at most CELL_SPLITS cells a level (a kink or a jump needs one
        or two). The halves' rules are the split cells' own rules one level down."""
        mid = 0.5 * (low + high)
        left, right = self._rule(low, mid), self._rule(mid, high)
        halves = 0.5 * (left + right)
        rough = np.abs(halves - whole) > CELL_TOLERANCE * scale * 2.0 ** depth
        if depth < CELL_DEPTH and 0 < (count := int(rough.sum())) <= CELL_SPLITS:
            refined = self._averages(np.concatenate([low[rough], mid[rough]]),
                                     np.concatenate([mid[rough], high[rough]]),
                                     np.concatenate([left[rough], right[rough]]), scale=scale, depth=depth + 1)
            halves[rough] = 0.5 * (refined[:count] + refined[count:])
        return halves

    def driver(self, t: float, y: np.ndarray, slope: np.ndarray) -> np.ndarray:
        """f(t, x, y, c u_s) on the interior nodes."""
        x = self.x[1:-1]
        z = torch.from_numpy(self.c * slope).to(DEVICE).unsqueeze(-1)
        return self.equation.driver(t, x, torch.from_numpy(y).to(DEVICE), z).numpy()


def _check_finite(what: str, values: np.ndarray, p: _Problem) -> None:
    """A ProblemError where ``values`` (one per grid node) are not all finite, naming the first such x: the grid
    reaches states the paths almost never do (QA: g = log(x) on a Brownian motion from 10, whose grid crosses 0)."""
    bad = ~np.isfinite(values)
    if bad.any():
        x = float(p.x[int(np.argmax(bad)), 0])
        low, high = float(p.x[0, 0]), float(p.x[-1, 0])
        raise ProblemError(f"pde-1d: {what} is not finite at x = {x:.4g} on its grid [{low:.4g}, {high:.4g}] (x0 +- "
                           f"{TAIL_SIGMAS:g} standard deviations), where the paths almost never go: guard it there "
                           "or use a sampling method (--method mlp, or mc for a driver -r y)")


def _step(p: _Problem, t: float, v: np.ndarray, alpha: float, rhs: np.ndarray) -> np.ndarray:
    """Newton for alpha v - (a v_s + b v_ss) - f(t, x, v, c v_s) = rhs on the interior (the ends stay)."""
    h, v = p.h, v.copy()
    lower, diag, upper = p.b / h ** 2 - p.a / (2 * h), -2 * p.b / h ** 2, p.b / h ** 2 + p.a / (2 * h)
    for _ in range(NEWTON_MAX):
        y, slope = v[1:-1], (v[2:] - v[:-2]) / (2 * h)
        operator = lower * v[:-2] + diag * y + upper * v[2:]
        f = p.driver(t, y, slope)
        _check_finite(f"equation.driver: f at t = {t:.4g}", np.concatenate([v[:1], f, v[-1:]]), p)
        eps_y, eps_z = 1e-6 * (1 + np.abs(y)), 1e-6 * (1 + np.abs(slope))
        f_y = (p.driver(t, y + eps_y, slope) - p.driver(t, y - eps_y, slope)) / (2 * eps_y)
        f_s = (p.driver(t, y, slope + eps_z) - p.driver(t, y, slope - eps_z)) / (2 * eps_z) / (2 * h)
        residual = alpha * y - operator - f - rhs
        bands = np.zeros((3, y.size))
        bands[1] = alpha - diag - f_y
        bands[0, 1:] = -(upper + f_s[:-1])  # d residual_j / d v_{j+1}
        bands[2, :-1] = -(lower - f_s[1:])  # d residual_j / d v_{j-1}
        delta = linalg.solve_banded((1, 1), bands, residual)
        v[1:-1] -= delta
        if np.max(np.abs(delta)) <= NEWTON_TOL * (1.0 + np.max(np.abs(y))):
            return v
    raise ProblemError(f"pde-1d: Newton's method did not converge at t = {t:.4g} (last change "
                       f"{np.max(np.abs(delta)):.3g}, |u| up to {np.max(np.abs(v)):.3g}): the driver is too "
                       "nonlinear for this grid; no reference from this method")


def solve_1d(equation: Equation, points: int = DEFAULT_POINTS, steps: int = DEFAULT_STEPS) -> float:
    """u(0, x0) with ``points`` cells and ``steps`` BDF2 steps (the first as 4 implicit Euler substeps)."""
    with using_threads(1):  # the driver sees vectors of a few thousand numbers: a thread pool only adds
        # synchronisation (100x slower on a busy 2-core machine)
        return _march(equation, points, steps)


def _march(equation: Equation, points: int, steps: int) -> float:
    p = _Problem(equation, points)
    horizon = equation.total_time
    k = horizon / steps
    v_prev = v = p.terminal()
    _check_finite("equation.terminal: g", v, p)
    for i in range(4):
        v = _step(p, horizon - (i + 1) * k / 4, v, 4.0 / k, 4.0 / k * v[1:-1])
    for n in range(2, steps + 1):
        v, v_prev = _step(p, horizon - n * k, v, 1.5 / k, (2.0 * v[1:-1] - 0.5 * v_prev[1:-1]) / k), v
    return float(v[p.centre_index])


def pde1d(equation: Equation, *, points: int = DEFAULT_POINTS, steps: int = DEFAULT_STEPS) -> ReferenceResult:
    """u(0, x0) for a one-dimensional problem; details hold the half-resolution difference."""
    if equation.dim != 1 or not isinstance(equation.process, (BrownianMotion, GBM)):
        raise ProblemError(f"pde-1d applies to dim = 1 with a Brownian or geometric process, not "
                           f"'{equation.kind}' at dim {equation.dim}")
    return at_two_resolutions("pde-1d", lambda n, m: solve_1d(equation, n, m), points, steps)
