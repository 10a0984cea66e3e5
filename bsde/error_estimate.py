"""An estimate of |y0 - u(0, x0)| for every solve, and the value reported beside it.

Three bases, the first that applies:

- linear driver (f = -r y): the answer is e^{-rT} E g(X_T), whose Monte Carlo value (the baseline)
  is at hand: error = |y0 - baseline| + 2 stderr. The same for f = -r y + m . z on a Brownian motion or a GBM:
  the solve trains on its linear twin (:mod:`bsde.girsanov`), whose baseline is that value, or else (measure
  plain) X_T is drawn under the drift b + sigma m (Girsanov,
  :mod:`bsde.reference.girsanov`); with a source, f = -r y + m . z + k(t, x), that reference adds k's discounted
  time integral along the drawn paths. Under the plain measure y0 errs to first order in Z's error, and the
  Richardson basis below covered it only 0.97-1.5x (sum(x^2) at d = 10, m = 0.5, sigma = 0.4: y0 0.37-0.40%
  low, Euler or trapezoid); a Monte Carlo value of the answer needs no model of where the error comes from.
- driver quadratic in z (HJB): the learned control samples the exponential (Cole-Hopf) representation
  u0 = -(1/c) ln E_Q exp(-c S) of :mod:`bsde.control_bound`, exact up to Monte Carlo error whatever the
  error of Z; that value is reported (the deep BSDE y0, first order in the error of Z, is kept beside
  it, and the bound J beside both). Its error is estimated as 2 standard errors (delta method); where the
  weights exp(-c S) are degenerate (fewer than DEGENERATE_FRACTION of the paths effective, a control far
  from the optimal one: hjb at lam 50 after 2000 iterations had 39 of 6550) that standard error misses
  the error several-fold (the log of a heavy-tailed mean is biased), and the estimate is the distance
  |J - V| to the bound instead, when larger (it covered the error 1.7-8x in those cases). Under
  bsde.control_bound.COLLAPSED_PATHS effective paths V is a few paths' own, and the Richardson basis below
  takes its place, with J as a one-sided bound of y0 (:func:`with_bound`).
- otherwise: Richardson in the time step with the trained Z: the same paths marched with every other
  step (2 dt) move the implied y0 by D; for a scheme of order p the error at dt is about |D| / (2^p - 1)
  (p = 2 for the trapezoid, 1 for Euler; an odd step count N pairs its first N - 1 steps and scales D by
  N / (N - 1): it had gone without an estimate, and a QA solve 8.6% low on 25 steps said nothing), plus the
  adjoint-weighted residual E[Gamma_N (Y_N - g(X_N))] on 4-16 batches of fresh paths and twice its standard
  error: y0 - u(0, x0) to first order, whatever its source (the networks' error in Z, which reaches y0 through a
  driver in z; a y0 still converging). Gamma is the adjoint of the march linearised along each path,
  Gamma_{n+1} = Gamma_n (1 + f_y dt + f_z . dW_n), Gamma_0 = 1: the error dY = Y - u(t, X) obeys
  dY_{n+1} = dY_n - (f_y dY_n + f_z . dZ_n) dt + dZ_n . dW_n, so Gamma dY is a martingale and
  dY_0 = E[Gamma_N dY_N] (exact for a driver linear in y and z, up to the time step). That linearisation
  is made around the trained Z; far from the right one (a run stopped early) the terms it drops can cancel y0's own
  distance to the loss's minimum: burgers at d = 5 after 20 iterations had an adjoint residual of 6e-4 with y0
  6.9e-3 off. So where the plain mean residual, -E[Y_N - g] / (d E Y_N / d y0) (how far
  the loss's minimum for the trained Z lies from y0), exceeds the adjoint residual's allowance (|it| + 2 standard
  errors) by more than its own 2 standard errors, it takes the adjoint's place, and the run counts as not
  converged.
  Where the driver uses z, the learned Z lags half a step: Z_n fits the martingale increment over [t_n, t_{n+1}],
  so it is about sigma^T grad u at t_n + dt/2, and the march reads it as Z at t_n, an error first order in dt that
  the 2 dt march with the same Z cannot see (QA: f = 0.2 (1 + t) sum(z) - t y + k(t, x) at d = 10 on 10 steps was
  0.6% low, 3x its estimate; the trained Z_n was 1-23% as far from the exact Z at t_n + dt/2 as from the one at
  t_n). A step of 2 dt would learn (Z_{2k} + E[Z_{2k+1} | X_{2k}]) / 2, and how much further that Z moves the 2 dt
  march's y0 (mean and 2 standard errors over the batches) is counted whole, as a first-order term: in the QA case
  -0.0029 of an error of -0.0039. The conditional mean is network 2k + 1 one step from X_{2k} on another path's
  increment: Z_{2k+1} itself correlates with dW_{2k} (for f = 0.5 sum(z), g = |x|^2 at d = 10 that moved y0 by 0.79,
  for an error of 0.06), and network 2k + 1 at X_{2k} misses how Z moves with X (Burgers at d = 10, T = 0.5 read a
  lag of -0.0027 there, for an error of 0.0001; with the step, -0.001 +- 0.001).

Where the driver is the largest of linear pieces, f = max_k (-r_k y - c_k sum(z)) (differing rates), the Richardson
basis is checked against the lower bound of :mod:`bsde.regime_bound` (the larger linear piece's value): where y0
lies below it, y0 is the bound, 2 of its standard errors added to the error (the default differing-rates solve,
whose networks explain almost none of Var g(X_T), ended 1% low on two seeds, below even the larger Black-Scholes
price, at 1.16x and 0.75x its estimate).

The Richardson basis adds the optimisation noise: the standard deviation of y0 over the validation points
of the last quarter of training (a stand-in for the spread over seeds, which one solve cannot see). The
other two need none: they evaluate the trained model afresh, and their Monte Carlo error is counted.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, replace
from typing import Callable

import torch

from bsde.control_bound import ControlBound, control_bound
from bsde.model import DeepBSDE
from bsde.regime_bound import RegimeBound, regime_bound
from bsde.simulation import Paths


@dataclass(frozen=True)
class ErrorEstimate:
    """The reported y0, its estimated error, how it was estimated, and the control bound where there is one."""

    y0: float
    error: float
    basis: str
    bound: ControlBound | RegimeBound | None = None
    #: False where no basis applies (error is NaN by design), True where one does (a NaN error is then an overflow)
    applies: bool = True
    #: how far the loss's minimum for the trained Z lies from y0, where that is resolved beyond the adjoint-weighted
    #: residual's allowance (Richardson basis; see the module doc): training has not converged. None otherwise
    unconverged: float | None = None
    #: the y0 of the march where it lay below a lower bound and y0 became the bound (bsde.regime_bound); None otherwise
    raised: float | None = None


@dataclass(frozen=True)
class LinearValue:
    """The Monte Carlo value of a linear problem, its standard error, and how it was sampled."""

    value: float
    stderr: float
    basis: str = "Monte Carlo value of the linear problem"
    #: a bias it may carry beyond its standard error (the source's quadrature, bsde.reference.girsanov)
    allowance: float = 0.0


#: the basis of a linear-in-z driver's value: X_T drawn under the drift the z-term adds
GIRSANOV_BASIS = "Monte Carlo value of the linear problem, under the drift its z-term adds (Girsanov)"
#: the same for f = -r y + k(t, x) (no z-term: the process's own drift)
FEYNMAN_KAC_BASIS = "Monte Carlo value of the linear problem with its source's time integral (Feynman-Kac)"


def linear_value(equation, baseline: LinearValue | None, *, seed: int) -> LinearValue | None:
    """u(0, x0) by Monte Carlo where the driver is linear: the discounted baseline for f = -r y; for
    f = -r y + m . z + k(t, x) on a Brownian motion or a GBM E[e^{-rT} g(X_T) + int_0^T e^{-rs} k(s, X_s) ds] under
    the drift b + sigma m, on as many paths as the baseline; else None."""
    if equation.driver_is_linear:
        return baseline
    from bsde.girsanov import girsanov_drift
    from bsde.reference.girsanov import girsanov
    from bsde.trivial import baseline_paths

    drift = girsanov_drift(equation)
    if drift is None:
        return None
    found = girsanov(equation, paths=baseline_paths(equation.dim), seed=seed)
    if not math.isfinite(found.value + found.stderr):
        return None
    basis = GIRSANOV_BASIS if any(drift.m) else FEYNMAN_KAC_BASIS
    return LinearValue(found.value, found.stderr, basis, found.details.get("quadrature_allowance", 0.0))


def from_linear(y0: float, linear: LinearValue) -> ErrorEstimate:
    return ErrorEstimate(y0, abs(y0 - linear.value) + 2 * linear.stderr + linear.allowance, linear.basis)


#: below this fraction of effective paths, the importance weights of the sampled value count as degenerate
DEGENERATE_FRACTION = 0.1


#: the relative resolution of the sampled value, whose paths are float32 (bsde.control_bound): its error is at
#: least this fraction of it (far from x0 = 0 the float32 states lose the increments' last digits)
FLOAT32_RESOLUTION = 1e-6


def from_bound(bound: ControlBound) -> ErrorEstimate:
    sampled = (f"control {bound.side} bound {bound.value:.6g}; value sampled under the learned control "
               f"({bound.paths} paths, {bound.effective_paths:.0f} effective")
    error, basis = 2 * bound.exponential_stderr, f"{sampled}; 2 standard errors)"
    if error < FLOAT32_RESOLUTION * abs(bound.exponential):
        error = FLOAT32_RESOLUTION * abs(bound.exponential)
        basis = f"{sampled}; 1e-6 of it, the resolution of its float32 paths, above 2 standard errors)"
    if bound.effective_paths < DEGENERATE_FRACTION * bound.paths and abs(bound.value - bound.exponential) > error:
        error, basis = abs(bound.value - bound.exponential), f"{sampled}: too few for its standard error, so its " \
                                                              "distance to the bound)"
    return ErrorEstimate(bound.exponential, error, basis, bound)


#: batches of fresh paths (of solve.check_paths each) for the adjoint-weighted residual, whose weights Gamma_N
#: spread widely where f_z is large (Burgers at d = 50: sd 8 about a mean of 3): at least the first, and more up to
#: the second until twice its standard error is below RESOLUTION of |y0| or below the residual itself
ADJOINT_BATCHES = (4, 16)
RESOLUTION = 1e-3


def _linearised(equation, t: float, x: torch.Tensor, y: torch.Tensor, z: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """f(t, x, y, z) and its derivatives f_y (batch,) and f_z (batch, dim), by autograd; zero where f ignores y or
    z, or where autograd cannot follow it (a driver through numpy or detached: the plain mean residual counts then,
    see autograd_follows)."""
    with torch.enable_grad():
        y, z = y.detach().requires_grad_(True), z.detach().requires_grad_(True)
        f = torch.as_tensor(equation.driver(t, x, y, z), dtype=y.dtype, device=y.device).expand(y.shape)
        f_y = f_z = None
        if f.requires_grad:
            f_y, f_z = torch.autograd.grad(f.sum(), (y, z), allow_unused=True)
    return (f.detach(), torch.zeros_like(y) if f_y is None else f_y, torch.zeros_like(z) if f_z is None else f_z)


def autograd_follows(equation, y_start: torch.Tensor, paths: Paths, z: torch.Tensor) -> bool:
    """Whether autograd follows the driver into y and z (at the first step; a driver through numpy, or detached,
    it cannot: its weights Gamma are then 1); True where the driver uses neither."""
    if not (equation.driver_uses_y or equation.driver_uses_z):
        return True
    with torch.enable_grad():
        y, z0 = y_start.detach().expand(paths.x.shape[0]).requires_grad_(True), z[:, 0].detach().requires_grad_(True)
        f = equation.driver(0.0, paths.x[:, 0], y, z0)
    return isinstance(f, torch.Tensor) and f.requires_grad


def adjoint_weights(equation, y_start: torch.Tensor, paths: Paths, z: torch.Tensor) -> torch.Tensor:
    """Gamma_N (batch,) of the march from y_start with Z (batch, N, dim) on ``paths``, linearised along each
    path's Euler march: Gamma_{n+1} = Gamma_n (1 + f_y dt + f_z . dW_n), Gamma_0 = 1."""
    x, dw, dt = paths.x, paths.dw, paths.dt
    y = y_start.detach().expand(x.shape[0])
    weight = torch.ones_like(y)
    for n in range(dw.shape[1]):
        f, f_y, f_z = _linearised(equation, n * dt, x[:, n], y, z[:, n])
        weight = weight * (1 + f_y * dt + (f_z * dw[:, n]).sum(-1))
        y = y - dt * f + (z[:, n] * dw[:, n]).sum(-1)
    return weight


def _next_z(model: DeepBSDE, paths: Paths) -> torch.Tensor:
    """E[Z_{n+1} | X_n] for n = 0..N-2 (batch, N-1, dim), each by network n + 1 at one step from X_n driven by another
    path's increment (independent of the path's own dW_n, which Z_{n+1} itself correlates with)."""
    x, dw, dt = paths.x, paths.dw, paths.dt
    process, elsewhere = model.equation.process, dw.roll(1, dims=0)
    ahead = torch.stack([process.step(n * dt, x[:, n], dt, elsewhere[:, n]) for n in range(model.time_steps - 1)], 1)
    return model.nets(ahead, model.z_scale)


def _coarse_march(model: DeepBSDE, paths: Paths, z: torch.Tensor, z_end: torch.Tensor | None = None) -> torch.Tensor:
    """Y_N (batch,) of ``paths`` marched with 2 dt (every other state, the increments summed in pairs) and the given
    Z_0, Z_2 dt, ... (batch, N/2, dim); ``z_end``: the trapezoid's last node (default sigma^T grad g)."""
    x, dw = paths.x, paths.dw
    with torch.no_grad():
        return model.march(x[:, ::2], dw[:, 0::2] + dw[:, 1::2], 2 * paths.dt, z, controlled=False, z_end=z_end)


@dataclass(frozen=True)
class _EvenGrid:
    """What Richardson coarsens: all N steps where N is even; where N is odd, the first N - 1 (a march ending at
    t_{N-1}, whose trapezoid takes the trained Z_{N-1} as its last node), and ``scale`` = N / (N - 1) carries its
    shift over the last step (an error made evenly along the steps)."""

    paths: Paths
    z: torch.Tensor
    z_end: torch.Tensor | None
    scale: float

    @classmethod
    def of(cls, paths: Paths, z: torch.Tensor) -> "_EvenGrid":
        steps = paths.dw.shape[1]
        if steps % 2 == 0:
            return cls(paths, z, None, 1.0)
        return cls(Paths(paths.x[:, :steps], paths.dw[:, :steps - 1], paths.dt), z[:, :steps - 1], z[:, steps - 1],
                   steps / (steps - 1))


def _slope(model: DeepBSDE, paths: Paths, z: torch.Tensor, end: torch.Tensor,
           z_end: torch.Tensor | None = None) -> float:
    """d mean(Y_N) / d y0 by a forward difference from ``end`` (Y_N, or Y_N - g, at the trained y0); 1 where it is
    not finite or vanishes."""
    with torch.no_grad():
        h = 1e-4 * max(1.0, abs(model.y_start.item()))
        bumped = model.march(paths.x, paths.dw, paths.dt, z, y_start=model.y_start + h, controlled=False, z_end=z_end)
    slope = float((bumped - end).mean()) / h
    return slope if math.isfinite(slope) and abs(slope) > 1e-12 else 1.0


def _richardson_shift(model: DeepBSDE, grid: _EvenGrid, coarse: torch.Tensor, fine: torch.Tensor,
                      terminal: torch.Tensor, slope: float) -> tuple[float, float]:
    """(D, the slope it used): how far y0 moves when the grid's paths are marched with 2 dt (``coarse``: that Y_N
    with the trained Z_{2k}; ``fine``: Y_N - g at dt, ``terminal`` g(X_N) and ``slope`` d mean(Y_N) / d y0, of all
    N steps), scaled to N steps (:class:`_EvenGrid`)."""
    if grid.z_end is None:  # the whole grid: the march at dt is the solve's own
        return -grid.scale * float((coarse - terminal - fine).mean()) / slope, slope
    p = grid.paths
    with torch.no_grad():
        end = model.march(p.x, p.dw, p.dt, grid.z, controlled=False, z_end=grid.z_end)
    slope = _slope(model, p, grid.z, end, grid.z_end)
    return -grid.scale * float((coarse - end).mean()) / slope, slope


def _lag_difference(model: DeepBSDE, grid: _EvenGrid, coarse: torch.Tensor) -> torch.Tensor:
    """Y_N (batch,) of the 2 dt march with the Z that step learns, (Z_{2k} + E[Z_{2k+1} | X_{2k}]) / 2 (see _next_z),
    less ``coarse``, that with the trained Z_{2k}: the half-step lag's part of the Richardson shift, path by path."""
    with torch.no_grad():
        learned = 0.5 * (grid.z[:, 0::2] + _next_z(model, grid.paths)[:, 0::2])
    return _coarse_march(model, grid.paths, learned, grid.z_end) - coarse


def _mean_and_stderr(values: list[torch.Tensor]) -> tuple[float, float]:
    joined = torch.cat(values).double()
    return float(joined.mean()), float(joined.std()) / math.sqrt(joined.numel())


@dataclass(frozen=True)
class Residuals:
    """What the Richardson basis reads off fresh paths (see :func:`residuals`)."""

    #: how far y0 moves at 2 dt (from the first batch; over all N steps where N is odd: see _EvenGrid)
    shift: float
    #: E[Gamma_N (Y_N - g(X_N))] and its standard error
    adjoint: float
    adjoint_stderr: float
    #: the y0 shift that zeros the plain mean residual, -E[Y_N - g] / (d mean Y_N / d y0), and its standard error:
    #: the fallback where the adjoint weights overflow or autograd cannot follow the driver
    plain: float
    plain_stderr: float
    #: whether autograd follows the driver (see autograd_follows)
    followed: bool = True
    #: how much further y0 moves at 2 dt with the Z that step learns (the half-step lag; 0 for a driver without z),
    #: and its standard error
    lag: float = 0.0
    lag_stderr: float = 0.0


def residuals(model: DeepBSDE, paths: Callable[[], Paths], batches: tuple[int, int] = ADJOINT_BATCHES) -> Residuals:
    """The Richardson shift, the half-step lag (where the driver uses z) and the residuals, adjoint-weighted and plain,
    over ``batches`` (fewest, most) draws of ``paths()``: more than the fewest while the adjoint-weighted residual is
    unresolved (see ADJOINT_BATCHES)."""
    weighted, plain, lags = [], [], []
    shift = slope = math.nan
    followed = True
    lagging = model.equation.driver_uses_z
    fewest, most = batches
    resolution = RESOLUTION * abs(model.y_start.item())
    for batch in range(most):
        if batch >= fewest:
            mean, stderr = _mean_and_stderr(weighted)
            if not math.isfinite(mean + stderr) or 2 * stderr <= max(abs(mean), resolution):
                break
        drawn = paths()
        with torch.no_grad():
            z = model.gradients(drawn.x)
            terminal = model.equation.terminal(drawn.x[:, -1])
            fine = model.march(drawn.x, drawn.dw, drawn.dt, z, controlled=False) - terminal
        grid = _EvenGrid.of(drawn, z)
        coarse = _coarse_march(model, grid.paths, grid.z[:, ::2], grid.z_end) if batch == 0 or lagging else None
        if batch == 0:
            slope = _slope(model, drawn, z, fine + terminal)
            shift, grid_slope = _richardson_shift(model, grid, coarse, fine, terminal, slope)
            followed = autograd_follows(model.equation, model.y_start, drawn, z)
        weighted.append(adjoint_weights(model.equation, model.y_start, drawn, z) * fine)
        plain.append(fine)
        if lagging:
            lags.append(_lag_difference(model, grid, coarse))
    plain_mean, plain_stderr = _mean_and_stderr(plain)
    lag, lag_stderr = _mean_and_stderr(lags) if lags else (0.0, 0.0)
    scale = grid.scale / grid_slope  # the lag as a y0 shift, over all N steps (_EvenGrid)
    return Residuals(shift, *_mean_and_stderr(weighted), -plain_mean / slope, plain_stderr / abs(slope), followed,
                     -lag * scale, lag_stderr * abs(scale))


def from_time_step(model: DeepBSDE, paths: Callable[[], Paths]) -> ErrorEstimate:
    y0 = model.y_start.item()
    if model.time_steps < 2:
        return ErrorEstimate(y0, math.nan, "none (Richardson needs at least 2 time steps)", applies=False)
    found = residuals(model, paths)
    order = 2 if model.scheme == "trapezoid" else 1
    odd = model.time_steps % 2
    basis = (f"Richardson in the time step (order {order}"
             + (f"; on the first {model.time_steps - 1} of the {model.time_steps} steps, scaled to all" if odd else "")
             + "), ")
    if model.equation.driver_uses_z:
        basis += "the half-step lag of the learned Z (first order) and its standard error, "
    residual, stderr, unconverged = found.adjoint, found.adjoint_stderr, None
    if not found.followed:
        residual, stderr = found.plain, found.plain_stderr
        basis += ("the mean residual and its standard error (autograd cannot follow the driver, so its adjoint "
                  "weights are 1 and the networks' bias in Z is not counted)")
    elif not math.isfinite(residual + stderr):  # a path whose weight Gamma_N overflowed (f_y large where Y ran away)
        residual, stderr = found.plain, found.plain_stderr
        basis += ("the mean residual and its standard error (the adjoint weights overflowed on some paths, so the "
                  "networks' bias in Z is not counted)")
    elif abs(found.plain) - 2 * found.plain_stderr > abs(residual) + 2 * stderr:  # y0 short of the minimum
        residual, stderr, unconverged = found.plain, found.plain_stderr, abs(found.plain)
        basis += (f"the mean residual and its standard error (the loss's minimum for the trained Z lies "
                  f"{abs(found.plain):.3g} from y0, beyond the adjoint-weighted residual's allowance: training has "
                  "not converged)")
    else:
        basis += "the adjoint-weighted residual and its standard error"
    lag = abs(found.lag) + 2 * found.lag_stderr  # first order: counted whole
    return ErrorEstimate(y0, abs(found.shift) / (2**order - 1) + lag + abs(residual) + 2 * stderr, basis,
                         unconverged=unconverged)


#: batches of fresh paths the paths' Euler error is measured on
EULER_BATCHES = 4


def paths_euler_error(model: DeepBSDE, fine_paths: Callable[[], Paths], batches: int = EULER_BATCHES) -> float:
    """The Euler error of paths without an exact transition, as it reaches y0: 2 (|D| + 2 stderr), D the mean over
    ``batches`` draws of ``fine_paths()`` (2N steps) of how far the Z = 0 value (bsde.trivial.zero_z_start: the march
    with its driver, which may read X at every step) moves from the N-step paths the same increments drive (summed
    in pairs) to them (the driver-free E g(X_T) where the Z = 0 march has no value); first order, so the error at N
    steps is about twice that.

    The driver-free E g(X_T) alone missed a driver in x (QA: a Vasicek bond, g = 1, f = -x_1 y: 16x its estimate)."""
    from bsde.simulation import states_from_increments
    from bsde.trivial import zero_z_start

    equation, moves = model.equation, []
    bridges = torch.Generator(device=model.y0.device).manual_seed(0)  # a process with sub-steps: their bridges
    for _ in range(batches):
        fine = fine_paths()
        dw = fine.dw[:, 0::2] + fine.dw[:, 1::2]
        coarse = Paths(states_from_increments(equation.process, fine.x[:, 0], dw, 2 * fine.dt, generator=bridges), dw,
                       2 * fine.dt)
        terminals = [equation.terminal(p.x[:, -1]) for p in (fine, coarse)]
        values = [zero_z_start(model, equation, p, g) for p, g in zip((fine, coarse), terminals)]
        if None in values:  # no Z = 0 value (a march that overflows): the driver-free values E g(X_T) instead
            values = [equation.discount_factor * float(g.double().mean()) for g in terminals]
        moves.append(values[0] - values[1])
    mean = statistics.fmean(moves)
    return 2 * (abs(mean) + 2 * statistics.stdev(moves) / math.sqrt(len(moves)))


def optimisation_noise(history: list[tuple[int, float]], iterations: int) -> float:
    """Standard deviation of y0 over the (iteration, y0) validation points of the last quarter of training."""
    late = [y0 for iteration, y0 in history if iteration >= 0.75 * iterations]
    return statistics.stdev(late) if len(late) >= 3 else 0.0


def estimate(model: DeepBSDE, paths: Callable[[], Paths], *, linear: LinearValue | None,
             generator: torch.Generator, history: list[tuple[int, float]], iterations: int,
             seed: int = 0) -> ErrorEstimate:
    """The estimate for a trained ``model`` (in eval mode); see the module docstring.

    ``linear``: the problem's Monte Carlo value where its driver is linear (:func:`linear_value`); ``paths()``
    draws fresh plain paths (only the Richardson basis needs them); ``history`` holds (iteration, y0) at the
    validation points of a run of ``iterations``; ``seed`` seeds the lower bound's paths (bsde.regime_bound).
    """
    if linear is not None:
        return from_linear(model.y_start.item(), linear)
    bound = control_bound(model, generator=generator)
    if bound is not None and not bound.collapsed:
        return from_bound(bound)
    found = from_time_step(model, paths)
    found = replace(found, error=found.error + optimisation_noise(history, iterations))
    if bound is not None:  # its value rests on a handful of paths: the march's y0, checked against the bound
        found = replace(found, basis=f"{found.basis}; not the value sampled under the learned control, whose weights "
                                     f"rest on {bound.effective_paths:.0f} of its {bound.paths} paths")
        return with_bound(found, bound)
    return with_bound(found, regime_bound(model.equation, seed=seed))


def with_bound(found: ErrorEstimate, bound: ControlBound | RegimeBound | None) -> ErrorEstimate:
    """``found`` with a one-sided bound of u beside it (the control bound, or the lower bound of a driver that is the
    largest of linear ones, bsde.regime_bound); where y0 lies beyond the bound, y0 is the bound and its error grows by
    2 standard errors of it (u lies between the bound and y0 -+ error)."""
    if bound is None:
        return found
    lower = bound.side == "lower"
    if not (bound.value > found.y0 if lower else bound.value < found.y0):
        return replace(found, bound=bound)
    what = (f"the value of the driver's linear piece {bound.piece}" if isinstance(bound, RegimeBound)
            else bound.source)
    return replace(found, y0=bound.value, error=found.error + 2 * bound.stderr, bound=bound, raised=found.y0,
                   basis=f"{found.basis}; y0 {'raised' if lower else 'lowered'} from {found.y0:.6g} to "
                         f"{'a lower' if lower else 'an upper'} bound, {what} (2 standard errors added)")
