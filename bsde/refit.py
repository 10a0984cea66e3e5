"""After training: refit the start values Y_0 and Z_0 by least squares on fresh paths, the step networks frozen.

Adam's last iterate carries the noise of its last few hundred batches: in Z_0 (a 10-asset max call's deltas
scatter by 5-10%) and, over a region, smooth tilts of u(0, .) that the loss barely sees (a 2% error of a
call's delta moves its loss by about 0.1%) and that spoil the derivatives. With Z_1..Z_{N-1} fixed, per path

    Y_N ~ Y_N^k + a (Y_0 - Y_0^k) + b . (Z_0 - Z_0^k),   a = dY_N/dY_0, b = dY_N/dZ_0

(exact where the driver is linear in y and z at t_0; Gauss-Newton rounds otherwise). A point solve's
(y0, z0) then solve a (d + 2)-dimensional linear least-squares problem, on paths drawn in pairs that share
every increment but the first, which is mirrored: in the pair's difference the variance of g(X_T) that the
step networks leave unhedged cancels where z0 is read off (``mirrored_first_step``). Over a region, Y_0(x) = y_offset +
y_scale (c + w . h(x)) and Z_0 = sigma^T grad Y_0 are linear in the start network's last layer (c, w) given its
last hidden layer h: L-BFGS on all its parameters over a subsample first (the shape), then (c, w) exactly.

The residual Y_N - g(X_N) is mostly the discrete hedge's error, about (1/2) sum_n (dW_n^T M_n dW_n - dt tr M_n)
with M_n = grad Z_n sigma (the second-order term the step Z_n dW_n leaves out). That sum has mean zero, so it
joins the regression as a control variate with its own coefficient (about 1): it cuts the variance of the
residual about fivefold on a Black-Scholes call (40 steps) at no bias. It costs d + 1 Jacobian-vector products
of the step networks, so it is used up to CONTROL_MAX_DIM dimensions.

Where training steered the paths (``solver.measure``), so does the refit, from each path's own start: for a
driver -(c/2)|z|^2 + ... the fitted value is then J(x) = u(0, x) + (c/2) E int |Z* - Z|^2 dt, second order in
the error of Z (``bsde.control_bound``); over a region the refit takes off (c/2) V(x), V(x) = E[(S - J(x))^2 | x]
fitted on the same features (J - (c/2) Var S is u to third order), while a point solve's reported y0 is the
corrected bound itself. That refit marches Y with Euler sums of the driver (its source k(t, x) = f(t, x, 0, 0) by
the trapezoid rule, as the bound takes it: ``source_trapezoid_term``), so that S is the control bound's sample,
and V is the whole sample's variance, without the control variate: the discrete hedge's error that the variate
takes out is in J - u too (at small d most of it: see ``_subtract_excess``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from bsde.equations.base import Equation
from bsde.greeks import diffusion_times
from bsde.model import DeepBSDE
from bsde.processes import Process
from bsde.region_model import JACKKNIFE_GROUPS, RegionBSDE
from bsde.settings import SolverSettings
from bsde.simulation import Paths, states_from_increments
from bsde.trainer import sample, steers

#: paths for the refit unless ``solver.refit_paths`` says: as many as training drew (iterations x batch), within
#: these bounds (a point solve's refit streams its paths: up to POINT_REFIT_PATHS), and over a region (whose
#: per-path data is kept: region_numbers_per_path) at most REFIT_ELEMENTS / (steps * dim)
REFIT_PATHS = (1 << 12, 1 << 17)
POINT_REFIT_PATHS = 1 << 19
REFIT_ELEMENTS = 1 << 24
#: paths per chunk: at most this many numbers per (paths, steps, dim) tensor
CHUNK_ELEMENTS = 1 << 21
#: the second-order control variate is used up to this dimension (it costs d + 1 Jacobian-vector products)
CONTROL_MAX_DIM = 10
#: relative ridge on the normal equations (tanh features can be nearly collinear)
RIDGE = 1e-10
#: the L-BFGS pass over all start parameters: on this many of the paths, at most this many evaluations. On
#: fewer it fits the hidden layers to the paths' noise: HJB over [-1, 1]^10 (20 steps), worst u error on the
#: box's diagonal over seeds 0-2 was 0.46/1.21/0.88% on 2^14 paths and 0.59/0.58/0.58% on 2^16 (the rest is the
#: 20 steps' bias, about +0.45% at x0), for about 10 s more (scratch study, 2-core EPYC)
LBFGS_PATHS = 1 << 16
LBFGS_EVALUATIONS = 100


@dataclass(frozen=True)
class Refit:
    """Mean squared residual on the refit's paths before and after (the latter with the control variate),
    the paths, the Gauss-Newton rounds, the control variate's coefficient (None where not used) and the
    variance behind the excess correction (None where there is none)."""

    loss_before: float
    loss_after: float
    paths: int
    rounds: int
    control_coefficient: float | None
    #: under a controlled measure with a driver -(c/2)|z|^2 + ...: the mean of Var(S | x) taken off as (c/2) V(x)
    variance: float | None = None


def region_numbers_per_path(dim: int) -> int:
    """Numbers a region's refit keeps per path, its :class:`_Linearised` fields: x0, slope_z and z_k (dim each);
    residual, slope_y, y_k and control (one each). For the memory check of ``solver.refit_paths``."""
    return 3 * dim + 4


def refit_paths(dim: int, steps: int, drawn: int, *, region: bool = True) -> int:
    """Paths for the refit of a solve whose training drew ``drawn`` paths (see REFIT_PATHS; a point solve's refit
    streams its paths and has no memory bound)."""
    bound = min(REFIT_PATHS[1], REFIT_ELEMENTS // (dim * steps)) if region else POINT_REFIT_PATHS
    return max(REFIT_PATHS[0], min(drawn, bound))


def second_order_term(z_of: Callable[[torch.Tensor], torch.Tensor], process: Process, x: torch.Tensor,
                      dw: torch.Tensor, dt: float, times: torch.Tensor | float | None = None) -> torch.Tensor:
    """(1/2) (dW^T M dW - dt tr M), M = grad Z(x) sigma(t, x), over the last axis (mean zero given x).

    ``z_of`` maps states (..., d) to Z (..., d); M v by one forward-mode product each (d + 1 in all);
    ``times``: t for a time-dependent sigma (a float, or shaped like x[..., 0]).
    """
    _, along = torch.func.jvp(z_of, (x,), (diffusion_times(process, x, dw, times),))
    total = (dw * along).sum(-1)
    for k in range(x.shape[-1]):
        unit = torch.zeros_like(x)
        unit[..., k] = 1.0
        _, column = torch.func.jvp(z_of, (x,), (diffusion_times(process, x, unit, times),))
        total = total - dt * column[..., k]
    return 0.5 * total


@dataclass
class _Linearised:
    """Per path: start x0, residual Y_N - g at (Y_0^k, Z_0^k), slopes a (n,), b (n, d), and the control variate."""

    x0: torch.Tensor
    residual: torch.Tensor
    slope_y: torch.Tensor
    slope_z: torch.Tensor
    y_k: torch.Tensor
    z_k: torch.Tensor
    control: torch.Tensor | None

    def line(self, y: torch.Tensor, z: torch.Tensor, beta: torch.Tensor | None, rows: slice = slice(None)):
        """Y_N - g (linearised) at Y_0 = y, Z_0 = z, with beta times the control variate."""
        out = (self.residual[rows] + self.slope_y[rows] * (y - self.y_k[rows])
               + (self.slope_z[rows] * (z - self.z_k[rows])).sum(-1))
        return out if beta is None else out + beta * self.control[rows]


class NormalEquations:
    """Least squares min |A theta - b|^2 by normal equations summed over row chunks, with a relative ridge; with
    ``groups`` > 1 also kept per group of rows (row i, counted over all chunks, in group i mod groups), so that
    :meth:`replicates` gives the jackknife's leave-one-group-out solutions at no extra pass over the rows.

    Always in float64, whatever the rows' dtype: the normal equations square the condition number, and the
    jackknife's differences cancel; a float32 run's sums inflated its Greeks' standard errors 10-30x (QA)."""

    def __init__(self, size: int, *, groups: int = 1, device: torch.device | None = None):
        self.groups, self.rows, self.target_sq = groups, 0, 0.0
        self.normal = torch.zeros(groups, size, size, dtype=torch.float64, device=device)
        self.rhs = torch.zeros(groups, size, dtype=torch.float64, device=device)

    def add(self, design: torch.Tensor, target: torch.Tensor) -> None:
        """Rows ``design`` (n, size) with targets ``target`` (n,), the next n rows."""
        design, target = design.to(torch.float64), target.to(torch.float64)
        for k in range(self.groups):
            first = (k - self.rows) % self.groups
            a, b = design[first::self.groups], target[first::self.groups]
            self.normal[k] += a.T @ a
            self.rhs[k] += a.T @ b
        self.rows += design.shape[0]
        self.target_sq += float(target.square().sum())

    @staticmethod
    def _solve(normal: torch.Tensor, rhs: torch.Tensor) -> torch.Tensor:
        ridge = RIDGE * float(normal.diagonal().sum()) / normal.shape[0]
        return torch.linalg.solve(normal + ridge * torch.eye(normal.shape[0], dtype=normal.dtype,
                                                             device=normal.device), rhs)

    def solve(self) -> tuple[torch.Tensor, float]:
        """theta over all rows, and the mean squared residual there."""
        normal, rhs = self.normal.sum(0), self.rhs.sum(0)
        theta = self._solve(normal, rhs)
        after = (self.target_sq - 2 * float(theta @ rhs) + float(theta @ normal @ theta)) / max(self.rows, 1)
        return theta, after

    def replicates(self) -> torch.Tensor:
        """(groups, size): theta fitted without each group's rows in turn (needs groups >= 2)."""
        normal, rhs = self.normal.sum(0), self.rhs.sum(0)
        return torch.stack([self._solve(normal - self.normal[k], rhs - self.rhs[k]) for k in range(self.groups)])


def start_values(model: DeepBSDE, x0: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(Y_0, Z_0) at starts x0 (n, d): the start network over a region, the trained constants at a point."""
    if isinstance(model, RegionBSDE):
        return model.start(x0)
    return model.y_start.expand(x0.shape[0]), model.z_start.expand(x0.shape[0], -1)


def _linearise(model: DeepBSDE, equation: Equation, settings: SolverSettings, paths: int, seed: int,
               controlled: bool, use_control: bool, mirrored: bool = False, *,
               source_trapezoid: bool = False) -> _Linearised:
    """All of :func:`_linearised_chunks` in one (the region's fits revisit the paths)."""
    parts = list(_linearised_chunks(model, equation, settings, paths, seed, controlled, use_control, mirrored,
                                    source_trapezoid=source_trapezoid))
    joined = {name: torch.cat([getattr(p, name) for p in parts]) for name in ("x0", "residual", "slope_y", "slope_z",
                                                                              "y_k", "z_k")}
    return _Linearised(**joined, control=torch.cat([p.control for p in parts]) if use_control else None)


def mirrored_first_step(equation: Equation, paths: Paths, generator: torch.Generator) -> Paths:
    """The paths and their twins: the same increments but the first, which is mirrored (dW_0 -> -dW_0); a process
    with sub-steps draws the twins' Brownian bridges within each step afresh from ``generator``.

    In a pair the residual's part that the later increments drive (the variance of g(X_T) that the step
    networks leave) is nearly the same, so it cancels where Z_0 is read off, in (R+ - R-) dW_0: a point solve's
    z0 then carries noise of order dt instead of order 1 (each path still has the law it had).
    """
    dw = paths.dw.clone()
    dw[:, 0] = -dw[:, 0]
    twins = states_from_increments(equation.process, paths.x[:, 0], dw, paths.dt, generator=generator)
    return Paths(torch.cat([paths.x, twins]), torch.cat([paths.dw, dw]), paths.dt)


def _linearised_chunks(model: DeepBSDE, equation: Equation, settings: SolverSettings, paths: int, seed: int,
                       controlled: bool, use_control: bool, mirrored: bool = False, *,
                       source_trapezoid: bool = False):
    """March fresh region paths (steered where ``controlled``; in mirrored pairs where ``mirrored``) and linearise
    Y_N in (Y_0, Z_0), chunk by chunk: yields a :class:`_Linearised` per chunk (the same paths for the same
    ``seed``). ``source_trapezoid``: an Euler march takes its source k(t, x) = f(t, x, 0, 0) by the trapezoid
    rule, as the control bound does (:func:`source_trapezoid_term`)."""
    steps, dim = model.time_steps, equation.dim
    chunk = max(256, min(paths, CHUNK_ELEMENTS // (dim * (steps + 1))))
    generator = torch.Generator(device=model.y0.device).manual_seed(seed)  # the same paths every round
    done = 0
    while done < paths:
        n = min(chunk, paths - done)
        data = sample(equation, settings, max(1, n // 2) if mirrored else n, generator, model.y0.device, region=True)
        if mirrored:
            data = mirrored_first_step(equation, data, generator)
            n = data.x.shape[0]
        x, dw, dt, x0 = data.x, data.dw, data.dt, data.x[:, 0]
        with torch.no_grad():
            if controlled:  # the paths the learned control steers from each start
                x = model.controlled_states(dw, dt, start=x0)
            later = model.z_scale * model.nets(x[:, 1:steps]) if steps > 1 else x[:, :0]
            terminal = equation.terminal(x[:, -1])
            y_k, z_k = start_values(model, x0)
        y_leaf, z_leaf = y_k.clone().requires_grad_(True), z_k.clone().requires_grad_(True)
        y_end = model.march(x, dw, dt, torch.cat([z_leaf.unsqueeze(1), later], dim=1), y_start=y_leaf)
        if source_trapezoid:
            y_end = y_end - source_trapezoid_term(equation, x, dt)
        slope_y, slope_z = torch.autograd.grad(y_end.sum(), (y_leaf, z_leaf))  # the paths are independent
        control = None
        if use_control:
            with torch.no_grad():
                times = (torch.arange(1, steps, dtype=x.dtype, device=x.device) * dt).expand(n, -1)
                control = second_order_term(lambda s: model.z_scale * model.nets(s), equation.process,
                                            x[:, 1:steps], dw[:, 1:], dt, times).sum(1)
        yield _Linearised(x0, (y_end - terminal).detach(), slope_y, slope_z, y_k, z_k, control)
        done += n


def source_trapezoid_term(equation: Equation, x: torch.Tensor, dt: float) -> torch.Tensor:
    """(dt / 2) (k(T, X_N) - k(0, X_0)), k(t, x) = f(t, x, 0, 0): what turns an Euler sum of the source,
    dt sum_{n<N} k(t_n, X_n), into the trapezoid rule's (the sum telescopes), an error of order dt^2, not dt.

    A region's refit marches with Euler sums under the learned control (see the module docstring); there the
    left point of a time-dependent source biased u over the whole box (QA: GBM d = 2 with k containing sin t,
    20 steps: u 2.4% low everywhere, the Euler sum's -(dt / 2) int k' dt; within 0.05% with this term)."""
    with torch.no_grad():
        zero = x.new_zeros(())
        no_z = torch.zeros_like(x[:, 0])
        steps = x.shape[1] - 1
        end = equation.driver(steps * dt, x[:, -1], zero, no_z)
        start = equation.driver(0.0, x[:, 0], zero, no_z)
    return 0.5 * dt * (end - start)


def _fit_all(model: RegionBSDE, data: _Linearised, rows: slice) -> None:
    """L-BFGS on every parameter of the start network (and the control's coefficient) over ``rows``."""
    beta = None if data.control is None else torch.zeros((), dtype=model.y0.dtype, device=model.y0.device,
                                                         requires_grad=True)
    parameters = [model.y0, *model.start_net.parameters(), *([beta] if beta is not None else [])]
    optimizer = torch.optim.LBFGS(parameters, lr=1.0, max_iter=LBFGS_EVALUATIONS, history_size=50,
                                  line_search_fn="strong_wolfe", tolerance_grad=1e-12, tolerance_change=1e-15)
    x0 = data.x0[rows]

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        y, z = model.start(x0)
        loss = data.line(y, z, beta, rows).square().mean()
        loss.backward()
        return loss

    optimizer.step(closure)


@torch.no_grad()
def _fit_last_layer(model: RegionBSDE, equation: Equation, data: _Linearised) -> tuple[float, float | None]:
    """The exact least-squares last layer and y0 over all paths (the surrogate is linear in them), and their
    jackknife replicates (``model.start_replicates``); returns the mean squared linearised residual after the fit
    and the control's coefficient."""
    last = model.start_net.layers[-1]
    width = last.weight.shape[1]
    use_control = data.control is not None
    kw = {"dtype": model.y0.dtype, "device": model.y0.device}
    equations = NormalEquations(1 + width + int(use_control), groups=JACKKNIFE_GROUPS, device=model.y0.device)
    current = torch.cat([(model.y0 + last.bias).reshape(1), last.weight.reshape(-1), torch.zeros(int(use_control), **kw)])
    total = data.x0.shape[0]
    step = max(256, CHUNK_ELEMENTS // max(width, 1))
    for begin in range(0, total, step):
        rows = slice(begin, min(total, begin + step))
        x0 = data.x0[rows]
        # Y_0 = y_offset + y_scale (c + w . h),  b . Z_0 = y_scale w . (grad h  sigma b)
        features, along = torch.func.jvp(model.start_net.features, (x0,),
                                         (diffusion_times(equation.process, x0, data.slope_z[rows], 0.0),))
        slope_y = data.slope_y[rows].unsqueeze(1)
        design = model.y_scale * torch.cat([slope_y, slope_y * features + along], dim=1)
        if use_control:
            design = torch.cat([design, data.control[rows].unsqueeze(1)], dim=1)
        y, z = model.start(x0)
        equations.add(design, design @ current - data.line(y, z, None, rows))  # line + design (theta - current) = 0
    theta, after = equations.solve()
    model.y0.copy_(theta[0] - last.bias[0])
    last.weight.copy_(theta[1:1 + width].reshape(1, -1))
    model.start_replicates.copy_(equations.replicates()[:, :1 + width])
    return after, float(theta[-1]) if use_control else None


@torch.no_grad()
def _subtract_excess(model: RegionBSDE, data: _Linearised, hessian: float) -> float:
    """u = J - (c/2) V with V(x) = E[(S - J(x))^2 | x] fitted on the same features (bsde.control_bound: J - u is
    (c/2) E int |e|^2 dt, and so is (c/2) Var S to leading order); returns the mean of V over the paths.

    S is the whole sample, without the control variate: the discrete hedge's error that the variate takes out
    is the part of e from Z held over a step, which is in J - u too (HJB over [-1, 1]^2, 20 steps: with the
    variate taken out, u was 8.8% above the radial value at x0; without, and with Euler sums, 0.2-0.65%)."""
    last = model.start_net.layers[-1]
    width = last.weight.shape[1]
    equations = NormalEquations(width + 1, groups=JACKKNIFE_GROUPS, device=model.y0.device)
    total_sq = 0.0
    total = data.x0.shape[0]
    step = max(256, CHUNK_ELEMENTS // max(width, 1))
    for begin in range(0, total, step):
        rows = slice(begin, min(total, begin + step))
        y, z = model.start(data.x0[rows])
        spread = data.line(y, z, None, rows).square()
        design = torch.cat([torch.ones_like(spread).unsqueeze(1), model.start_net.features(data.x0[rows])], dim=1)
        equations.add(design, spread)
        total_sq += float(spread.sum())
    theta, _ = equations.solve()
    shift = 0.5 * hessian / model.y_scale
    model.y0.sub_(shift * theta[0])
    last.weight.sub_(shift * theta[1:].reshape(1, -1))
    model.start_replicates.sub_(shift * equations.replicates())  # the jackknife of J - (c/2) V, group by group
    return total_sq / total


def _fit_point(model: DeepBSDE, chunks) -> tuple[float, float, float | None]:
    """The exact least-squares y0 and z0 of a point solve (Y_0 = y_offset + y_scale y0, Z_0 = z_scale z0), the
    normal equations summed over the chunks; returns the mean squared residual before and after, and the
    control variate's coefficient."""
    dim = model.z0.shape[0]
    kw = {"dtype": model.y0.dtype, "device": model.y0.device}
    equations = current = None
    squares, total = 0.0, 0
    for data in chunks:
        with torch.no_grad():
            columns = [model.y_scale * data.slope_y.unsqueeze(1), model.z_scale * data.slope_z]
            design = torch.cat(columns + ([data.control.unsqueeze(1)] if data.control is not None else []), dim=1)
            if current is None:
                current = torch.cat([model.y0.reshape(1), model.z0, torch.zeros(design.shape[1] - 1 - dim, **kw)])
                equations = NormalEquations(design.shape[1], device=model.y0.device)
            equations.add(design, design @ current - data.residual)
            squares += float(data.residual.square().sum())
            total += data.residual.shape[0]
    theta, after = equations.solve()
    with torch.no_grad():
        model.y0.copy_(theta[0])
        model.z0.copy_(theta[1:1 + dim])
    return squares / total, after, float(theta[-1]) if theta.shape[0] > 1 + dim else None


def refit_start(model: DeepBSDE, equation: Equation, settings: SolverSettings, *, generator: torch.Generator,
                paths: int | None = None, rounds: int | None = None) -> Refit:
    """Refit the start values (see the module docstring); updates ``model``. A region's start network: per
    Gauss-Newton round, L-BFGS on all its parameters over LBFGS_PATHS of the paths (the hidden layers' shape),
    then its last layer and y0 exactly over all; a point solve's y0 and z0 exactly."""
    steps, dim = model.time_steps, equation.dim
    paths = paths or settings.refit_paths or refit_paths(dim, steps, settings.iterations * settings.batch_size,
                                                         region=isinstance(model, RegionBSDE))
    model.eval()
    was_controlled, was_scheme = model.controlled, model.scheme
    controlled = model.controlled = steers(equation, settings)
    # the fit is J(x): take off J - u
    excess = bool(controlled and equation.z_hessian and isinstance(model, RegionBSDE))
    if excess:  # Euler sums of the driver, so that S is the control bound's sample (bsde.control_bound)
        model.scheme = "euler"
    try:
        rounds = rounds or (1 if equation.driver_is_linear and not controlled else 2)
        use_control = dim <= CONTROL_MAX_DIM and steps > 1
        seed = int(torch.randint(0, 2**62, (), generator=generator, device=generator.device))
        before, after, coefficient = float("nan"), float("nan"), None
        for k in range(rounds):
            if not isinstance(model, RegionBSDE):  # streamed (nothing per path is kept), in mirrored pairs
                chunks = _linearised_chunks(model, equation, settings, paths, seed, controlled, use_control, True)
                squares, after, coefficient = _fit_point(model, chunks)
                before = squares if k == 0 else before
                continue
            data = _linearise(model, equation, settings, paths, seed, controlled, use_control, source_trapezoid=excess)
            if k == 0:
                before = float(data.residual.square().mean())
            _fit_all(model, data, slice(0, min(paths, LBFGS_PATHS)))
            after, coefficient = _fit_last_layer(model, equation, data)
        variance = _subtract_excess(model, data, equation.z_hessian) if excess else None
    finally:
        model.controlled, model.scheme = was_controlled, was_scheme
    return Refit(before, after, paths, rounds, coefficient, variance)
