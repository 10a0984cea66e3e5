"""Rotation-invariant problems as a 1-d PDE in s = r^2, solved by finite differences and BDF2.

With u(t, x) = v(t, s), s = |x|^2:  v_t + sigma^2 (2 s v_ss + d v_s) + f(v, 2 sigma sqrt(s) |v_s|) = 0.

Why s = r^2: the radial operator (sigma^2/2)(v_rr + (d-1)/r v_r) is singular at r = 0, while in s
it is smooth up to s = 0, where the diffusion vanishes and the row reads v_t + sigma^2 d v_s + f(v, 0)
= 0 (the L'Hopital limit, no boundary condition needed); v is smooth in s because u is smooth
and even in r. A uniform s-grid also spreads points where |X_t|^2 has its mass.

Far boundary: Dirichlet v = g(sqrt S) at s = S = R^2 with R = r0 + sigma sqrt(T) (sqrt(d) + 10).
The value at r0 feels the boundary only through paths with sup_t |X_t| >= R; since
|X_t| <= r0 + sigma |W_t| and |W_t| exceeds sqrt(d t) + a sqrt(t) with probability about e^{-a^2/2}
(Gaussian concentration), that weight is below ~e^{-50}: the boundary value is immaterial.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import interpolate, linalg

from bsde.equations.base import RadialForm
from bsde.errors import ProblemError
from bsde.reference.result import ReferenceResult, at_two_resolutions

DEFAULT_POINTS = 4000
DEFAULT_STEPS = 1000
TAIL_SIGMAS = 10.0
NEWTON_TOL = 1e-13
NEWTON_MAX = 20


def domain_radius(form: RadialForm) -> float:
    """R = r0 + sigma sqrt(T) (sqrt(d) + 10): beyond every path that matters."""
    return form.r0 + form.sigma * math.sqrt(form.total_time) * (math.sqrt(form.dim) + TAIL_SIGMAS)


def _derivative(fun, y: np.ndarray, zn: np.ndarray, wrt: int) -> np.ndarray:
    """Central finite difference of f(y, zn) in its argument ``wrt`` (0: y, 1: zn)."""
    arg = y if wrt == 0 else zn
    eps = 1e-6 * (1.0 + np.abs(arg))
    if wrt == 0:
        return (fun(y + eps, zn) - fun(y - eps, zn)) / (2 * eps)
    return (fun(y, zn + eps) - fun(y, zn - eps)) / (2 * eps)


class _Grid:
    """The banded operator L v = sigma^2 (2 s v_ss + d v_s) on s_j = j h, rows j = 0..N-1 (v_N fixed)."""

    def __init__(self, form: RadialForm, points: int):
        self.form, self.n = form, points
        self.s = np.linspace(0.0, domain_radius(form) ** 2, points + 1)
        h = self.h = self.s[1]
        sig2, d = form.sigma ** 2, form.dim
        s = self.s[:points]
        # banded storage for solve_banded((1, 2)): row 2 + i - j holds A[i, j]
        lap = np.zeros((4, points))
        lap[2, :] = -4.0 * sig2 * s / h ** 2
        lap[1, 1:] = sig2 * (2.0 * s[:-1] / h ** 2 + d / (2 * h))  # A[j, j+1]
        lap[3, :-1] = sig2 * (2.0 * s[1:] / h ** 2 - d / (2 * h))  # A[j+1, j]
        lap[2, 0], lap[1, 1], lap[0, 2] = -3 * sig2 * d / (2 * h), 4 * sig2 * d / (2 * h), -sig2 * d / (2 * h)
        self.lap = lap
        self.upper_last = sig2 * (2.0 * s[-1] / h ** 2 + d / (2 * h))  # row N-1's weight on v_N
        self.root_s = 2.0 * form.sigma * np.sqrt(s)

    def apply(self, v: np.ndarray) -> np.ndarray:
        """L v on rows 0..N-1 for the full vector v (N+1,)."""
        n, a = self.n, self.lap
        out = a[2] * v[:n]
        out[:-1] += a[1, 1:] * v[1:n]
        out[-1] += self.upper_last * v[n]
        out[1:] += a[3, :-1] * v[: n - 1]
        out[:-2] += a[0, 2:] * v[2:n]
        return out

    def slope(self, v: np.ndarray) -> np.ndarray:
        """v_s by central differences on rows 1..N-1, 0 on row 0 (where zn = 0 anyway)."""
        out = np.zeros(self.n)
        out[1:] = (v[2:] - v[: self.n - 1]) / (2 * self.h)
        return out


def _step(grid: _Grid, v: np.ndarray, a: float, b: np.ndarray) -> np.ndarray:
    """Newton for a v - L v - f(v, zn(v)) = b on rows 0..N-1 (v_N stays); returns the new full v."""
    fun, n = grid.form.driver, grid.n
    v = v.copy()
    for _ in range(NEWTON_MAX):
        slope = grid.slope(v)
        zn = grid.root_s * np.abs(slope)
        y = v[:n]
        residual = a * y - grid.apply(v) - fun(y, zn) - b
        f_y = _derivative(fun, y, zn, 0)
        f_z = _derivative(fun, y, zn, 1) * grid.root_s * np.sign(slope) / (2 * grid.h)
        jac = -grid.lap.copy()
        jac[2] += a - f_y
        jac[1, 1:] -= f_z[:-1]  # d zn_j / d v_{j+1}
        jac[3, :-1] += f_z[1:]  # d zn_j / d v_{j-1}
        delta = linalg.solve_banded((1, 2), jac, residual)
        v[:n] -= delta
        if np.max(np.abs(delta)) <= NEWTON_TOL * (1.0 + np.max(np.abs(y))):
            return v
    raise ProblemError(f"radial: Newton's method did not converge (last change {np.max(np.abs(delta)):.3g}, |u| up "
                       f"to {np.max(np.abs(v)):.3g}): the driver is too nonlinear for this grid; no reference from "
                       "this method")


def march_radial(form: RadialForm, points: int = DEFAULT_POINTS, steps: int = DEFAULT_STEPS):
    """Yield (t, s grid, v(t, s)) from t = T back to 0, one BDF2 step at a time (first: 4 implicit Euler substeps)."""
    grid = _Grid(form, points)
    k = form.total_time / steps
    v_prev = form.terminal(np.sqrt(grid.s))
    yield form.total_time, grid.s, v_prev
    v = v_prev
    for _ in range(4):
        v = _step(grid, v, 4.0 / k, 4.0 / k * v[: grid.n])
    yield form.total_time - k, grid.s, v
    for i in range(steps - 1):
        v, v_prev = _step(grid, v, 1.5 / k, (2.0 * v[: grid.n] - 0.5 * v_prev[: grid.n]) / k), v
        yield form.total_time - (i + 2) * k, grid.s, v


def solve_radial(form: RadialForm, points: int = DEFAULT_POINTS, steps: int = DEFAULT_STEPS) -> float:
    """v(0, r0^2) with ``points`` cells in s and ``steps`` BDF2 steps."""
    *_, (_, s, v) = march_radial(form, points, steps)
    return float(interpolate.CubicSpline(s, v)(form.r0 ** 2))


def radial_profiles(form: RadialForm, times: int, points: int = DEFAULT_POINTS,
                    steps: int = DEFAULT_STEPS) -> list:
    """v(t_n, .) as cubic splines in s = |x|^2 at t_n = n T / times, n = 0..times (steps a multiple of times)."""
    if steps % times:
        raise ValueError(f"steps ({steps}) must be a multiple of times ({times})")
    every = steps // times
    profiles = [interpolate.CubicSpline(s, v) for i, (_, s, v) in enumerate(march_radial(form, points, steps))
                if i % every == 0]
    return profiles[::-1]


def radial(equation, *, points: int = DEFAULT_POINTS, steps: int = DEFAULT_STEPS) -> ReferenceResult:
    """u(0, x0) for an equation with a ``radial_form``; details hold the half-resolution difference."""
    form = equation.radial_form()
    if form is None:
        raise ProblemError(f"radial applies to rotation-invariant problems (hjb, allen_cahn), not '{equation.kind}'")
    return at_two_resolutions("radial", lambda n, m: solve_radial(form, n, m), points, steps,
                              radius=domain_radius(form))
