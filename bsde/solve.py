"""One solve of a problem: train, then report y0 beside the baseline and the reference."""

from __future__ import annotations

import functools
import math
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Mapping, get_args

import torch

from bsde import arguments, distributed
from bsde.checkpoint import CheckpointWriter, load_checkpoint, run_config
from bsde.control_bound import ControlBound, bound_side
from bsde.equations.base import Equation
from bsde.error_estimate import GIRSANOV_BASIS, LinearValue, estimate, linear_value, paths_euler_error
from bsde.errors import ArgumentError, BSDEError, ProblemError, in_file
from bsde.memory import check_fits
from bsde.probing import verify_flags
from bsde.problem import Problem, as_problem
from bsde.reference import (ReferenceResult, cheap_method, check_declared_closed_form, describe,
                            reference as run_reference, why_no_cheap_method)
from bsde.reference.result import finite_json
from bsde.refit import refit_start
from bsde.runtime import (available_cores, callers_threads, keep_freed_memory, processes_here, resolve_device,
                          set_threads)
from bsde.settings import SolverSettings
from bsde.solution import Solution
from bsde.trainer import LogEntry, OnNaN, TrainHooks, TrainResult, sample, train, training_equation
from bsde.trivial import (ASTRAY_LOSS, driver_free_baseline, heavy_tail, trivial_solution_warning,
                          zero_z_value)

#: a warning when the estimated error exceeds this fraction of |y0|
WARN_ERROR = 0.01


def check_paths(dim: int, steps: int) -> int:
    """Fresh paths for the error estimate: 4096, fewer where they would hold more than 2^22 numbers."""
    return max(256, min(4096, (1 << 22) // (dim * (steps + 1))))


@dataclass
class SolveResult:
    """What a solve returns; ``to_dict`` is the CLI's JSON."""

    problem: str
    kind: str
    dim: int
    y0: float
    error_estimate: float | None
    error_basis: str
    y0_bsde: float
    bound: float | None
    bound_stderr: float | None
    bound_side: str | None
    #: what the bound is: the learned control's value (bsde.control_bound) or a linear piece's (bsde.regime_bound)
    bound_source: str | None
    z0: list[float]
    baseline: float | None
    baseline_stderr: float | None
    #: the y0 a solver stuck at Z = 0 returns (bsde.trivial.zero_z_value), None where it could not be had
    zero_z_value: float | None
    reference: float | None
    reference_source: str | None
    reference_stderr: float | None
    rel_error: float | None
    iterations: int
    time_steps: int
    batch_size: int
    #: this process's time, from load to result (a resumed run: since its resume)
    wall_s: float
    #: training time of the whole run, the parts before any resume included (so it may exceed wall_s)
    train_s: float
    iterations_per_s: float
    final_loss: float
    device: str
    dtype: str
    seed: int
    threads: int
    warnings: list[str] = field(default_factory=list)
    history: list[LogEntry] = field(default_factory=list)
    #: processes that trained it (data parallel over the batch; see bsde.distributed)
    processes: int = 1
    #: grad u(0, x0) and the diagonal of its Hessian (None where unavailable; see bsde.solution), how gamma was had
    delta: list[float | None] | None = None
    gamma_diag: list[float | None] | None = None
    gamma_source: str = ""
    #: their standard errors where known (Solution.delta_stderr, gamma_diag_stderr): over a region the refit's
    #: jackknife, which does not count the networks' bias; None for a point solve (see Solution.gamma_stderr)
    delta_stderr: list[float | None] | None = None
    gamma_diag_stderr: list[float | None] | None = None
    #: what those standard errors count (None where there are none): sampling only, never the networks' error
    greeks_stderr_basis: str | None = None
    #: the least-squares refit of the start values after training (bsde.refit.Refit as a mapping), if any
    refit: dict[str, Any] | None = None
    #: the reference engine's 95% interval (a Monte Carlo reference; it counts a discretisation bias where one is known)
    reference_ci95: list[float] | None = None
    #: a deterministic reference's own error estimate (the grid methods' half-resolution difference, a quadrature's)
    reference_error_estimate: float | None = None
    #: why a solve asked for a reference in passing (auto_reference) has none, in words; None otherwise
    no_reference: str | None = None
    #: the measure training ran under where it is not the process's own, in words (a driver f(t, x, y, 0) + m . z
    #: trains under the drift its z-term adds, bsde.trainer.training_equation; baseline and zero_z_value are then of it)
    trained_under: str | None = None
    #: the trained model (not in the JSON): u, grad, hessian, z, save
    solution: Solution | None = field(default=None, repr=False, compare=False)

    def to_dict(self, *, with_history: bool = True) -> dict[str, Any]:
        data = asdict(replace(self, solution=None))
        data.pop("solution")
        if not with_history:
            data.pop("history")
        return data

    # the trained solution's answers (see bsde.solution.Solution)
    @property
    def u0(self) -> float:
        """u(0, x0): the reported y0."""
        return self.y0

    @property
    def gamma(self):
        """Hess u(0, x0) as an array ((d, d), or its diagonal above 100 dimensions), or None."""
        return self.solution.gamma if self.solution is not None else None

    def z(self, n: int, x):
        """Z_n at points x (m, d) -> (m, d)."""
        return self._trained().z(n, x)

    def u(self, x):
        """u(0, x) at points x (n, d) -> (n,) (a region solve; a point solve answers at x0 only)."""
        return self._trained().u(x)

    def grad(self, x):
        """grad u(0, x) at points x (n, d) -> (n, d)."""
        return self._trained().grad(x)

    def _trained(self) -> Solution:
        if self.solution is None:
            raise BSDEError("this result holds no trained model (it was read back from JSON)")
        return self.solution


def cheap_reference(problem: Problem) -> ReferenceResult | None:
    """The engine's value for ``problem`` by its cheap method (a few seconds), or None if none is cheap."""
    method = cheap_method(problem)
    return None if method is None else run_reference(problem, method)


def _with_autograd_and_the_callers_threads(function: Callable[..., SolveResult]) -> Callable[..., SolveResult]:
    """``function`` run with autograd on (a caller's ``torch.no_grad()`` or ``inference_mode()`` would stop
    training), giving the caller's torch thread count back afterwards (the solve sets its own)."""
    @functools.wraps(function)
    def run(*args: Any, **kwargs: Any) -> SolveResult:
        with callers_threads(), torch.inference_mode(False), torch.enable_grad():
            return function(*args, **kwargs)
    return run


@_with_autograd_and_the_callers_threads
def solve(
    problem: Problem | Equation, *, solver: SolverSettings | Mapping[str, Any] | None = None, seed: int = 0,
    device: str = "auto", threads: int | None = None,
    on_log: Callable[[LogEntry], None] | None = None, on_warning: Callable[[str], None] | None = None,
    on_nan: OnNaN = "stop", checkpoint: Path | None = None, checkpoint_every: int | None = None,
    resume: Path | None = None, stop_requested: Callable[[], bool] | None = None,
    reference: ReferenceResult | None = None, auto_reference: bool = False,
) -> SolveResult:
    """Solve ``problem`` with the deep BSDE method; reproducible for a given seed and device.

    ``problem`` is a :class:`Problem` or an :class:`Equation` instance (``bsde.custom_equation(...)``, a
    subclass); ``solver``, a mapping of solver keys, is laid over its solver section (complete
    :class:`SolverSettings` replace it). The
    driver's declared flags are checked by probing it first (a wrong one is a ProblemError).

    The reported reference is, in this order: ``reference`` when given; the problem's own
    ``reference.value``; with ``auto_reference`` (what ``bsde solve`` does), the engine's value by
    the cheap method (:func:`bsde.reference.cheap_method`, a few seconds), computed after training
    and not counted in ``wall_s``.

    Args:
        on_nan: "stop" (default) fails at the first non-finite loss; "rollback" returns to the
            last validation point with half the learning rate (see :func:`bsde.trainer.train`).
        checkpoint: folder to keep ``checkpoint.pt`` in, rewritten atomically every
            ``checkpoint_every`` iterations (default ``solver.log_every``) and on a stop request.
        resume: a checkpoint folder of the same run (same problem, solver settings, seed and
            device) to continue from; the result equals an uninterrupted run's bit for bit on CPU.
        stop_requested: polled after every iteration; when true the run checkpoints and raises
            :class:`bsde.errors.Interrupted`.
        reference: a reference already computed (``bsde compare`` computes one for many seeds).
        auto_reference: when the problem has no reference value, compute one with the engine
            (a failure there becomes a warning, not an error).

    Under torchrun (several processes; see :mod:`bsde.distributed`) every process calls this alike and
    training is data parallel over the batch; the lead process alone reads and writes checkpoints, calls
    ``on_log`` and ``on_warning``, and computes what follows training (baseline, bound, error estimate,
    reference, with all its cores); every process returns its result.

    Raises:
        ProblemError: the solve would not fit in memory, ``resume`` is not a checkpoint of this run, or
            the equation's flags disagree with its driver.
        TrainingError: training diverged.
        Interrupted: ``stop_requested()`` became true.
    """
    start = time.perf_counter()
    seed = arguments.seed(seed)
    checkpoint, resume = arguments.optional_path("checkpoint", checkpoint), arguments.optional_path("resume", resume)
    checkpoint_every = arguments.optional_integer("checkpoint_every", checkpoint_every, minimum=1)
    if checkpoint_every is not None and checkpoint is None:
        raise ArgumentError(f"checkpoint_every={checkpoint_every}: needs checkpoint=FOLDER (where to write them)")
    on_nan = arguments.choice("on_nan", on_nan, get_args(OnNaN))
    for name, hook in (("on_log", on_log), ("on_warning", on_warning), ("stop_requested", stop_requested)):
        arguments.optional_callable(name, hook)
    if reference is not None and not isinstance(reference, ReferenceResult):
        raise ArgumentError(f"reference: expected a ReferenceResult (bsde.reference(...)), got "
                            f"{arguments.describe(reference)}")
    problem = as_problem(problem, solver)
    verify_flags(problem.equation, problem.source)
    check_declared_closed_form(problem)  # before training, as `bsde reference` would refuse it after
    used_threads = set_threads(threads)
    dev = resolve_device(device)
    problem = replace(problem, solver=problem.solver.for_device(dev.type))  # dtype: float32 on CUDA unless set
    need = check_fits(problem, distributed.process_device(dev))  # under torchrun on CUDA: this process's own GPU
    keep_freed_memory(dev, need.total)  # process-wide, for good
    group = distributed.group(dev)
    if group is not None:
        group.same_everywhere(problem.source, {"equation": problem.equation.model_dump(mode="python"),
                                               "solver": problem.solver.model_dump(mode="python"), "seed": seed})
        dev = group.device
        on_log, on_warning = (on_log, on_warning) if group.lead else (None, None)
    settings = problem.solver
    # what identifies the run, where a checkpoint is read or written (its probe values cost a small simulation)
    config = run_config(problem, seed=seed, device=dev) if checkpoint is not None or resume is not None else None
    state = None
    if resume is not None:
        read = functools.partial(load_checkpoint, resume, config)
        state = read() if group is None else group.from_lead(read)
    warnings: list[str] = []

    def warn(text: str) -> None:
        warnings.append(text)
        if on_warning is not None:
            on_warning(text)

    if dev.type == "cpu" and used_threads * processes_here() > available_cores():
        warn(f"{used_threads} threads{f' x {processes_here()} processes' if processes_here() > 1 else ''} on the "
             f"{available_cores()} cores this process may use: oversubscribed, torch runs several times slower "
             f"({'leave threads unset to use the cores' if threads is not None else 'start fewer processes'})")
    hooks = TrainHooks(stop_requested=stop_requested, on_warning=warn)
    writer = None
    if checkpoint is not None:  # first: a folder holding another run's checkpoint is refused before any output
        start_at = int(state["iteration"]) if state is not None else 0  # a checkpoint further along is not replaced
        make = functools.partial(CheckpointWriter, checkpoint, config, start_at)
        writer = make() if group is None else group.from_lead(make)
        hooks.save = writer if group is None else group.lead_saves(writer)
        hooks.save_every = checkpoint_every or settings.log_every
    try:
        if (late := settings.schedule_warning()) is not None:
            warn(late)
        generator = torch.Generator(device=dev).manual_seed(seed)
        trained = train(training_equation(problem.equation, settings), settings, generator=generator, device=dev,
                        on_log=on_log, hooks=hooks,
                        on_nan=on_nan, resume=state, group=group)
    except ProblemError as exc:  # the trainer knows no files: name the problem's
        raise in_file(exc, problem.source) from None
    finally:
        if writer is not None:
            writer.release()
    if group is None:
        return _finish(problem, trained, dev, seed, start, used_threads, warn, warnings, reference, auto_reference)
    group.alone(trained.model)  # the lead evaluates it alone
    if threads is None:  # the other processes wait: the lead takes every core
        torch.set_num_threads(available_cores())
    kept: list[Solution | None] = [None]

    def finish() -> tuple[SolveResult, dict[str, torch.Tensor] | None]:
        """The lead's result without its model, and the model's tensors on the CPU: an object collective
        unpickles a CUDA tensor on the device it left (the lead's GPU), not on the receiver's."""
        result = _finish(problem, trained, dev, seed, start, used_threads, warn, warnings, reference, auto_reference,
                         processes=group.size)
        kept[0] = result.solution
        state = (None if result.solution is None else
                 {name: value.detach().cpu() for name, value in result.solution.model.state_dict().items()})
        return replace(result, solution=None), state

    result, state = group.from_lead(finish)
    if group.lead:
        return replace(result, solution=kept[0])
    if state is not None:  # the lead's model (the refit may have changed it), on this process's device
        trained.model.load_state_dict(state)
        result = replace(result, solution=Solution(trained.model, problem, seed=seed, u0=result.y0,
                                                   warnings=result.warnings, u0_error=result.error_estimate,
                                                   u0_error_basis=result.error_basis))
    return result


#: the measure of a solve that trained on its linear twin (bsde.trainer.training_equation), and its error basis
TWIN_MEASURE = "the drift its z-term adds (Girsanov), with the driver {driver} (solver.measure: plain turns it off)"
GENERAL_TWIN_MEASURE = ("the drift its z-term m . z adds (Girsanov), with the driver f(t, x, y, 0) "
                        "(solver.measure: plain turns it off)")
TWIN_BASIS = f"{GIRSANOV_BASIS}, where the solve trained"


def _finish(problem: Problem, trained: TrainResult, dev: torch.device, seed: int, start: float, used_threads: int,
            warn: Callable[[str], None], warnings: list[str], reference: ReferenceResult | None,
            auto_reference: bool, processes: int = 1) -> SolveResult:
    """What follows training: the baseline, the error estimate (and bound), the reference, the result.

    All but the reference read the equation training ran on (its linear twin, bsde.girsanov, where it had one)."""
    settings = problem.solver
    equation = trained.model.equation
    baseline = driver_free_baseline(equation, generator=torch.Generator(device=dev).manual_seed(seed + 1),
                                    device=dev, dtype=settings.torch_dtype, steps=settings.time_steps)
    model = trained.model.eval()
    refitted = None
    if settings.refits:  # least squares for the start values, the step networks frozen (bsde.refit)
        refitted = finite_json(asdict(refit_start(model, equation, settings,
                                      generator=torch.Generator(device=dev).manual_seed(seed + 4))))
    y0_bsde = model.y_start.item()
    final_loss = trained.history[-1].loss
    finite = math.isfinite(baseline.value) and math.isfinite(baseline.stderr)
    tail = heavy_tail(baseline) if finite else None  # a payoff Monte Carlo cannot average: said once, named below
    if tail:
        warn(tail)
    check_generator = torch.Generator(device=dev).manual_seed(seed + 2)
    checks = check_paths(equation.dim, settings.time_steps)
    fresh_paths = functools.partial(sample, equation, settings, checks, check_generator, dev)
    zero_z_paths = sample(equation, settings, checks, torch.Generator(device=dev).manual_seed(seed + 6), dev)
    zero_z = zero_z_value(model, equation, zero_z_paths, baseline) if finite else None
    warning = trivial_solution_warning(y0_bsde, final_loss, baseline, zero_z=zero_z,
                                       linear=equation.driver_is_linear)
    if warning:
        warn(warning)
    twin = equation is not problem.equation
    if equation.driver_is_linear:  # f = -r y, or the linear twin of -r y + m . z: the baseline is the answer
        linear = (LinearValue(baseline.value, baseline.stderr, TWIN_BASIS if twin else LinearValue.basis)
                  if finite else None)
    else:  # -r y + m . z + k(t, x) (a twin with a source, or measure plain): Girsanov with the source's integral;
        linear = linear_value(problem.equation, None, seed=seed + 7)  # None for other drivers (Richardson below)
        linear = replace(linear, basis=TWIN_BASIS) if twin and linear is not None else linear
    checked = estimate(model, fresh_paths, linear=linear,
                       generator=check_generator, history=[(h.iteration, h.y0) for h in trained.history],
                       iterations=settings.iterations, seed=seed + 8)
    if checked.bound is None and bound_side(equation) is not None:  # a bound applies, but none came
        warn("no control bound for y0: the learned control overflows on fresh paths (the run diverged without a "
             f"NaN; lower solver.learning_rate); the error estimate falls back to {checked.basis}")
    if finite and not equation.process.exact:  # the paths' own Euler error, which no basis above sees
        fine = functools.partial(sample, equation, settings.model_copy(update={"time_steps": 2 * settings.time_steps}),
                                 checks, torch.Generator(device=dev).manual_seed(seed + 5), dev)
        euler = paths_euler_error(model, fine)
        checked = replace(checked, error=checked.error + euler,
                          basis=f"{checked.basis}; plus the paths' Euler error (the Z = 0 march on paths of half the "
                                "step, the same increments)")
    y0, error = checked.y0, checked.error if math.isfinite(checked.error) else None
    if isinstance(checked.bound, ControlBound) and checked.bound.collapsed:
        warn(f"the value sampled under the learned control rests on {checked.bound.effective_paths:.0f} of its "
             f"{checked.bound.paths} paths (its samples S have a heavy tail: a driver or terminal condition singular "
             "where the paths go, or a learned Z far off), so y0 is the march's, with the time-step estimate")
    if checked.raised is not None:  # u is beyond the bound: the march's y0 on the other side is wrong by the gap
        side = "below a lower" if checked.bound.side == "lower" else "above an upper"
        warn(f"the march's y0 ({checked.raised:.6g}) lies {side} bound of u ({checked.bound.value:.6g} +- "
             f"{checked.bound.stderr:.2g}: {checked.bound.source}, by the comparison "
             "theorem), so y0 is that bound: the learned Z is further off than the error estimate saw "
             "(more iterations or another learning rate may help)")
    astray = None  # what to do where the final loss says training went astray (QA: -0.5 y^3 from the baseline)
    if finite and baseline.payoff_var > 0 and not final_loss <= ASTRAY_LOSS * baseline.payoff_var:
        astray = (f"the final loss, {final_loss:.3g}, is {final_loss / baseline.payoff_var:.3g}x Var g(X_T): training "
                  "went astray, where a start nearer u0 helps (solver.y0_init: [low, high] or zero_z"
                  + ("" if zero_z is None else f"; the Z = 0 value is {zero_z:.6g}") + ")")
    if error is None:
        if checked.applies:  # an estimate that applies, yet gave no number: an overflow
            warn(f"no error estimate for y0 ({checked.basis} gave {checked.error}): y0 = {y0:.6g} is unchecked; "
                 + (astray or "a terminal condition near the float range overflows (rescale it)"))
        else:  # QA: one time step, 20% off (Burgers, d = 3), said nothing
            warn(f"no error estimate for y0 ({checked.basis}): y0 = {y0:.6g} is unchecked, and one time step can "
                 "be far off (solver.time_steps: 2 or more)")
    elif checked.unconverged is not None:
        warn(f"y0 = {y0:.6g} has not converged: on fresh paths the loss's minimum for the trained Z lies "
             f"{checked.unconverged:.3g} from it, beyond what the adjoint-weighted residual allows, and the estimated "
             f"error of y0 ({error:.3g}, {100 * error / abs(y0):.2g}% of |y0|) counts it; "
             + (astray or "more iterations (or a larger learning rate) will move y0"))
    elif error > WARN_ERROR * abs(y0):
        # g(X_T) = 0 on every path (QA: a put 20% out of the money a month before expiry): u(0, x0) is about 0, and
        # an error as large as y0 is no fault of training
        zero = finite and baseline.value == 0 and baseline.payoff_var == 0 and error >= abs(y0)
        warn(f"the estimated error of y0 ({error:.3g}, {checked.basis}) "
             + (f"is at least |y0| = {abs(y0):.3g}: y0 is 0 within it, as g(X_T) is 0 on every sampled path" if zero
                else f"exceeds {WARN_ERROR:.0%} of |y0|; " + (astray or (
                    "g(X_T)'s tail is the likely cause (above)" if tail else "more time steps or iterations may help"))))
    solution = Solution(model, problem, seed=seed, u0=y0, warnings=warnings,  # the same list: later warnings too
                        u0_error=error, u0_error_basis=checked.basis)
    # y0 is not read off the network (HJB: V at x0): a gap over twice y0's error estimate (1% of |y0| without one)
    # says the network is off by more than that (QA: 0.2%, 7.5x the estimate, went unsaid under a 1% threshold)
    if solution.is_region and (gap := abs(float(solution.u([solution.x0])[0]) - y0)) > (
            2 * error if error is not None else WARN_ERROR * abs(y0)):
        beyond = f", over twice y0's error estimate {error:.2g}" if error is not None else ""
        warn(f"over the region, the network's u(0, x0) is {100 * gap / abs(y0):.2g}% from y0 = {y0:.6g} ({checked.basis}"
             f"{beyond}): u elsewhere in the box (bsde eval) is likely off by as much, beyond its +- (the network "
             "carries the time steps' error and the learned control's excess, which the value at x0 does not; more "
             "solver.time_steps may help)")
    delta, gamma_diag = solution.delta, solution.gamma_diag
    delta_stderr, gamma_stderr = solution.delta_stderr, solution.gamma_diag_stderr
    stderr_basis = solution.stderr_basis
    wall_s = time.perf_counter() - start
    no_reference = None
    if reference is None and problem.reference.value is None and auto_reference:
        try:
            reference = cheap_reference(problem)
            no_reference = why_no_cheap_method(problem) if reference is None else None
        except BSDEError as exc:
            warn(f"no reference: the engine failed ({exc})")  # said already: no_reference stays None
        except (ArithmeticError, ValueError, RuntimeError) as exc:  # a fault in the engine: the trained result stays
            warn(f"no reference: the engine failed unexpectedly ({type(exc).__name__}: {exc}; please report it)")
    if reference is not None:
        ref_value, ref_source, ref_stderr = reference.value, describe(reference), reference.stderr
        if reference.caveat is not None and not (tail and reference.heavy_tailed):  # the tail: said above
            warn(f"the reference: {reference.caveat}")
    else:
        ref_value, ref_stderr = problem.reference.value, problem.reference.stderr
        ref_source = (problem.reference.source or None) if ref_value is not None else None  # no reference: null
    rel_error = None if ref_value in (None, 0) else abs(y0 - ref_value) / abs(ref_value)
    bound = checked.bound
    return SolveResult(
        problem=problem.name, kind=problem.equation.kind, dim=problem.equation.dim, y0=y0, error_estimate=error,
        error_basis=checked.basis, y0_bsde=y0_bsde, bound=bound.value if bound else None,
        bound_stderr=bound.stderr if bound else None, bound_side=bound.side if bound else None,
        bound_source=bound.source if bound else None,
        z0=[float(v) for v in model.z_start.detach().cpu()], baseline=baseline.value if finite else None,
        baseline_stderr=baseline.stderr if finite else None, zero_z_value=zero_z, reference=ref_value,
        trained_under=(TWIN_MEASURE.format(driver=f"-{equation.discount_rate:g} y" if equation.discount_rate else "0")
                       if equation.driver_is_linear else GENERAL_TWIN_MEASURE) if twin else None,
        reference_source=ref_source, reference_stderr=ref_stderr, rel_error=rel_error, iterations=settings.iterations,
        time_steps=settings.time_steps, batch_size=settings.batch_size, wall_s=wall_s, train_s=trained.train_s,
        iterations_per_s=settings.iterations / trained.train_s if trained.train_s > 0 else 0.0,
        final_loss=final_loss, device=str(dev), dtype=settings.dtype, seed=seed, threads=used_threads,
        warnings=warnings, history=trained.history, delta=finite_json(delta.tolist()),
        gamma_diag=None if gamma_diag is None else finite_json(gamma_diag.tolist()), gamma_source=solution.gamma_source,
        delta_stderr=None if delta_stderr is None else finite_json(delta_stderr.tolist()),
        gamma_diag_stderr=None if gamma_stderr is None else finite_json(gamma_stderr.tolist()),
        greeks_stderr_basis=stderr_basis, refit=refitted, solution=solution, processes=processes,
        reference_ci95=list(reference.ci95) if reference is not None and reference.ci95 is not None else None,
        reference_error_estimate=(reference.error_bar if reference is not None and reference.error_bar_kind ==
                                  "error estimate" else None),
        no_reference=no_reference,
    )
