"""Training loop: Adam on the terminal mismatch, validation on a fixed batch. Never prints.

The loop reports through callbacks only: ``on_log`` at each validation point and a small
:class:`TrainHooks` object for snapshots (checkpoints), stop requests (signals) and warnings.
A snapshot is a plain dict of tensors and numbers (``TrainState``); passing one back as
``resume`` continues the run exactly where it stopped: same batches, same learning rates.
Each batch is drawn shard by shard, each fixed shard from its own random stream (solver.shards), so
that a data-parallel run (``group``: each process draws its own shards) trains on the same batches.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Literal

import torch

from bsde.adam import Adam
from bsde.compiled import compiled
from bsde.distributed import Group, ShardStreams
from bsde.equations.base import Equation
from bsde.errors import Interrupted, ProblemError, TrainingError
from bsde.model import DeepBSDE, terminal_loss, terminal_z
from bsde.region import draw_starts
from bsde.region_model import make_model
from bsde.runtime import fused_adam, matmul_precision
from bsde.settings import SolverSettings
from bsde.simulation import Paths, check_finite_states, simulate_paths
from bsde.trivial import ASTRAY_LOSS, zero_z_start

OnNaN = Literal["stop", "rollback"]
MAX_ROLLBACKS = 5

#: what a snapshot holds: iteration (the next one to run), model, optimizer, generator (state), streams
#: (generator state by shard), history (list of LogEntry dicts), lr_scale, rollbacks, elapsed_s
TrainState = dict[str, Any]


@dataclass(frozen=True)
class LogEntry:
    """One validation point: iteration, validation loss, y0, seconds since training began."""

    iteration: int
    loss: float
    y0: float
    elapsed_s: float


@dataclass
class TrainHooks:
    """How the caller follows and steers a run; every field is optional.

    ``save(state)`` is called after every ``save_every``-th iteration, after the last one and
    when a stop is requested; ``stop_requested()`` is polled after each iteration; ``on_warning(text)``
    hears about recoveries (rollbacks).
    """

    save: Callable[[TrainState], None] | None = None
    save_every: int = 0
    stop_requested: Callable[[], bool] | None = None
    on_warning: Callable[[str], None] | None = None


@dataclass
class TrainResult:
    model: DeepBSDE
    history: list[LogEntry] = field(default_factory=list)
    train_s: float = 0.0
    rollbacks: int = 0


def sample(equation: Equation, settings: SolverSettings, batch: int, generator: torch.Generator | list[torch.Generator],
           device: torch.device, *, region: bool = False) -> Paths:
    """A batch of forward paths on the solver's time grid (from one stream, or one per equal block of rows);
    with ``region``, from starts in ``solver.region``."""
    start = equation.x_start
    if region and settings.region is not None:
        streams = [generator] if isinstance(generator, torch.Generator) else generator
        start = torch.cat([draw_starts(settings.region, equation.dim, batch // len(streams), stream, device=device,
                                       dtype=settings.torch_dtype) for stream in streams])
    return simulate_paths(
        equation.process, start, equation.total_time, settings.time_steps, batch,
        generator=generator, device=device, dtype=settings.torch_dtype, float32_normals=True,
    )


def check_finite_terminal(terminal: torch.Tensor, x: torch.Tensor) -> None:
    """A one-line ProblemError naming the terminal condition where g(X_T) (``terminal`` at the states ``x``) is
    not finite on the validation paths: the problem, which no training can mend."""
    values = terminal.reshape(len(x), -1)
    bad = ~torch.isfinite(values).all(-1)
    if bool(bad.any()):
        first = int(bad.nonzero()[0, 0])
        where = x[first].tolist()
        shown = where[:3] + (["..."] if len(where) > 3 else [])
        raise ProblemError(f"equation.terminal: g(X_T) is not finite on {int(bad.sum())} of {len(x)} validation paths "
                           f"({values[first, 0].item()} at X_T = {shown}); rescale or guard it")


def spread(terminal: torch.Tensor) -> float | None:
    """The standard deviation of g(X_T) over the validation paths; None where it is 0 or not finite."""
    std = terminal.std().item() if terminal.numel() > 1 else 0.0
    return std if math.isfinite(std) and std > 0.0 else None


def output_scale(std: float | None, equation: Equation) -> float:
    """sqrt(Var g(X_T) / (T d)): the size of a coordinate of Z if E int_0^T |Z|^2 dt were Var g(X_T).

    Scaling the networks' output by it makes their parameters O(1) whatever the problem's units, so
    Adam's steps (of about the learning rate) move Z at a comparable relative pace on every problem.
    """
    return 1.0 / equation.dim if std is None else std / math.sqrt(equation.total_time * equation.dim)


def steered(model: DeepBSDE, paths: Paths, states: Callable[..., torch.Tensor] | None = None) -> Paths:
    """The paths the model trains on: as simulated, or driven by the same increments under its control from each
    path's own start (``states``: the model's controlled_states, or a compiled version of it)."""
    if not model.controlled:
        return paths
    return Paths((states or model.controlled_states)(paths.dw, paths.dt, paths.x[:, 0]), paths.dw, paths.dt)


def steers(equation: Equation, settings: SolverSettings) -> bool:
    """Whether training switches to the controlled measure (``solver.measure``; 'auto': where it applies)."""
    if settings.measure == "controlled" and not equation.controllable:
        raise ProblemError(f"solver.measure: 'controlled' does not apply to '{equation.kind}' (no control "
                           "representation: a driver -(c/2)|z|^2 + linear, without y, a steerable process)")
    return settings.measure == "controlled" or (settings.measure == "auto" and equation.controllable)


def training_equation(equation: Equation, settings: SolverSettings) -> Equation:
    """What training runs on: with ``solver.measure`` 'auto', a driver f(t, x, y, 0) + m . z (constant m; -r y + m . z
    for one) on a Brownian motion or a GBM trains as its linear twin (:func:`bsde.girsanov.linear_twin`: the same u
    and Z under the drift the z-term adds, where y0 no longer errs to first order in Z's error through the driver);
    otherwise the equation itself."""
    if settings.measure != "auto" or not equation.driver_uses_z:
        return equation
    from bsde.girsanov import linear_twin

    return linear_twin(equation) or equation


def evaluate(model: DeepBSDE, paths: Paths) -> float:
    """Validation loss with the networks in inference mode (running batch-norm statistics)."""
    model.eval()
    with torch.no_grad():
        paths = steered(model, paths)
        loss = terminal_loss(model(paths.x, paths.dw, paths.dt), model.equation.terminal(paths.x[:, -1]))
    model.train()
    return float(loss)


def _finite_parameters(model: DeepBSDE) -> bool:
    """Whether every parameter and buffer is finite: one device sync, not one per tensor."""
    return bool(torch.stack([torch.isfinite(t).all() for t in model.state_dict().values()]).all())


def start_fault(model: DeepBSDE, paths: Paths) -> str:
    """Why the validation loss before training is not finite, in words: g(X_T) or the start values, or Y_N
    overflowing where both are finite (QA: -y^3 + k(t, x), which the error had blamed on g or f)."""
    with torch.no_grad():
        terminal = model.equation.terminal(paths.x[:, -1])
    if not bool(torch.isfinite(terminal).all()) or not _finite_parameters(model):
        return "the terminal condition or the driver is not finite on the sampled paths (or the start values)"
    model.eval()
    with torch.no_grad():
        end = model(paths.x, paths.dw, paths.dt)
    model.train()
    overflows = int((~torch.isfinite(end)).sum())
    if overflows == 0:
        return "the terminal condition or the driver is not finite on the sampled paths"
    return (f"Y_N is not finite on {overflows} of {end.numel()} validation paths, where g(X_T) is finite: the march "
            "of Y runs forward in time, and a driver that falls steeply in y blows it up (more solver.time_steps "
            "help where the step is the cause, f_y dt below -2; a shorter total_time where the driver itself blows "
            "up forward in time, as -y^3 does; a start nearer u0, solver.y0_init: [low, high], where it blows up "
            "only from y0's start), or the driver is not finite at some state the march reaches")


class _Run:
    """The mutable state of one training run and the operations on it."""

    def __init__(self, equation: Equation, settings: SolverSettings, generator: torch.Generator,
                 device: torch.device, group: Group | None = None, on_warning: Callable[[str], None] | None = None):
        self.settings, self.generator, self.group = settings, generator, group
        self.model = make_model(equation, settings, device=device)
        #: from this iteration on the paths are steered by the learned control (never, for a plain measure)
        self.control_start = (math.ceil(settings.control_from * settings.iterations) if steers(equation, settings)
                              else settings.iterations + 1)
        from_baseline = settings.y0_init in ("baseline", "zero_z")
        self.model.reset_parameters(generator, (0.0, 0.0) if from_baseline else settings.y0_init)
        self.valid = sample(equation, settings, settings.valid_size, generator, device, region=True)
        check_finite_states(self.valid.x, self.valid.dt)
        terminal = equation.terminal(self.valid.x[:, -1])
        check_finite_terminal(terminal, self.valid.x[:, -1])
        std = spread(terminal)
        self.model.z_scale = settings.z_scale or output_scale(std, equation)
        if from_baseline:
            # start from the driver-free value and learn the correction in units of the spread of g(X_T):
            # Adam's steps (about the learning rate) then mean the same relative precision on every problem
            discount = equation.discount_factor
            self.model.y_offset = discount * terminal.mean().item()
            self.model.y_scale = discount * std if std is not None else 1.0
            with torch.no_grad():
                self.model.y0.zero_()
            if equation.driver_uses_y:
                self._start_at_zero_z(equation, terminal, settings.y0_init == "zero_z", on_warning)
        if group is not None and settings.compile:
            raise ProblemError("solver.compile: not in a data-parallel run (--nproc K, torchrun); set solver.compile=false")
        shards = settings.shard_count()
        self.streams = ShardStreams(generator.initial_seed(), shards, settings.batch_size,
                                    group.shards(shards, option="solver.shards") if group else range(shards),
                                    device)
        #: the training forward pass: the model itself, or wrapped to average gradients over the processes
        forward = self.forward = (group.data_parallel(self.model, unused_parameters=settings.time_steps == 1)
                                  if group else self.model)
        #: this process's share of the global batch's mean loss is (rows / batch) of its own mean; the
        #: backward pass takes it times the processes, as DistributedDataParallel averages the gradients
        self.share = self.streams.rows / settings.batch_size
        self.backward_scale = self.share * (group.size if group else 1)
        self.optimizer = Adam(self.model.parameters(), lr=settings.rate_at(0), eps=1e-8, fused=fused_adam(device))
        #: where every step's loss is checked before its backward (a CPU run: no device sync to pay for)
        self.check_every_step = device.type == "cpu"
        if group is None:  # the step networks' weights are updated during the backward (none, before an all-reduce)
            self.optimizer.update_during_backward()
        model = self.model
        # the measure is an argument, which torch.compile guards on (torch 2.3's missed a change of model.controlled);
        # so is Z_N (see step)
        self.loss = compiled(lambda x, dw, dt, controlled, z_end: terminal_loss(
            forward(x, dw, dt, controlled=controlled, z_end=z_end), equation.terminal(x[:, -1])), settings.compile)
        self.states = compiled(model.controlled_states, settings.compile)
        self.iteration, self.lr_scale, self.rollbacks = 0, 1.0, 0
        self.history: list[LogEntry] = []
        self.start = time.perf_counter()

    def _start_at_zero_z(self, equation: Equation, terminal: torch.Tensor, always: bool,
                         on_warning: Callable[[str], None] | None) -> None:
        """Y_0 from the Z = 0 value (bsde.trivial.zero_z_start) where asked (``always``), or where the march from
        the driver-free value blows up: a validation loss over ASTRAY_LOSS E g(X_T)^2 (QA: -0.5 y^3, loss 1e209,
        never recovered; from the Z = 0 value it trained to 0.075% of u0 in 300 iterations)."""
        if not always:
            loss, scale = evaluate(self.model, self.valid), float(terminal.to(torch.float64).square().mean())
            if loss <= ASTRAY_LOSS * scale or (scale == 0 and math.isfinite(loss)):  # g = 0 on every path (QA: a
                return  # put at zero volatility) gives no scale: only a march that is not finite is astray
        start = zero_z_start(self.model, equation, self.valid, terminal)
        if start is None:
            if always and on_warning is not None:  # asked for, and not had: said, not skipped silently
                on_warning("solver.y0_init: zero_z: the Z = 0 value could not be found (the march with Z = 0 is not "
                           f"finite or not increasing in y0 wherever it was tried), so y0 starts at the driver-free "
                           f"value {self.model.y_offset:.6g}; [low, high] sets a range")
            return
        if not always and on_warning is not None:
            why = "blows up (validation loss " + (f"{loss:.3g}, {loss / scale:.3g}x E g(X_T)^2)" if math.isfinite(loss)
                                                  else "not finite)")
            on_warning(f"y0 starts at the Z = 0 value {start:.6g}, not at the driver-free value "
                       f"{self.model.y_offset:.6g}: from there the march of Y with Z = 0 {why}; solver.y0_init: "
                       "zero_z starts there always, [low, high] sets a range")
        self.model.y_offset = start

    def state(self) -> TrainState:
        """A deep copy of everything the rest of the run depends on."""
        return {
            "iteration": self.iteration,
            "model": copy.deepcopy(self.model.state_dict()),
            "optimizer": copy.deepcopy(self.optimizer.state_dict()),
            "generator": self.generator.get_state(),
            "streams": self.streams.state(),
            "history": [asdict(h) for h in self.history],
            "lr_scale": self.lr_scale,
            "rollbacks": self.rollbacks,
            "elapsed_s": time.perf_counter() - self.start,
        }

    def restore(self, state: TrainState) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.generator.set_state(state["generator"])
        self.streams.restore(state["streams"])
        self.iteration = int(state["iteration"])
        self.history = [LogEntry(**h) for h in state["history"]]
        self.lr_scale, self.rollbacks = float(state["lr_scale"]), int(state["rollbacks"])
        self.start = time.perf_counter() - float(state["elapsed_s"])

    def last_good(self) -> str:
        if not self.history:
            return ""
        last = self.history[-1]
        return f" (last good y0 {last.y0:.6g} at iteration {last.iteration})"

    def logged(self) -> bool:
        """Whether the current iteration already has its validation entry (after a rollback)."""
        return bool(self.history) and self.history[-1].iteration == self.iteration

    def validate(self) -> LogEntry | None:
        """A log entry for the current iteration, or None when loss, y0 or a parameter is not finite."""
        self.steer()
        entry = LogEntry(self.iteration, evaluate(self.model, self.valid), self.model.y_start.item(),
                         time.perf_counter() - self.start)
        finite = math.isfinite(entry.loss) and math.isfinite(entry.y0) and _finite_parameters(self.model)
        return entry if finite else None

    def steer(self) -> None:
        """Set the model's measure for the current iteration."""
        self.model.controlled = self.iteration >= self.control_start

    def step(self, equation: Equation) -> torch.Tensor:
        """The gradient at the current iteration's (scaled) learning rate, the largest parameters already updated
        with it; returns this process's share of the loss (the loss itself in a single process), and no gradient
        where ``check_every_step`` finds the loss not finite."""
        self.steer()
        self.optimizer.lr = self.settings.rate_at(self.iteration) * self.lr_scale
        if self.settings.compile == "reduce-overhead":  # CUDA graphs: the last iteration's outputs may be reused
            torch.compiler.cudagraph_mark_step_begin()
        device = self.model.y0.device
        paths = steered(self.model, sample(equation, self.settings, self.streams.rows, self.streams.generators, device,
                                           region=True), self.states)
        with matmul_precision(self.settings, device):
            # Z_N = sigma^T grad g(X_N) outside the loss: autograd of g inside a compiled function breaks its graph
            z_end = terminal_z(equation, paths.x[:, -1]) if self.model.needs_z_end() else None
            loss = self.loss(paths.x, paths.dw, paths.dt, self.model.controlled, z_end)
            self.optimizer.zero_grad()
            if self.group is None:
                if not self.check_every_step or torch.isfinite(loss):
                    loss.backward()
                return loss
            (loss * self.backward_scale).backward()
        return loss * self.share


def train(
    equation: Equation, settings: SolverSettings, *, generator: torch.Generator, device: torch.device,
    on_log: Callable[[LogEntry], None] | None = None, hooks: TrainHooks | None = None,
    on_nan: OnNaN = "stop", resume: TrainState | None = None, group: Group | None = None,
) -> TrainResult:
    """Fit Y_0, Z_0 and the step networks; returns the model and its validation history.

    With ``group`` (a data-parallel run) every process calls this alike: each draws its own shards,
    and the loss checks and stop requests are agreed on by all, so all take the same path.

    Non-finite losses or parameters are caught every iteration on CPU and at validation points
    on other devices (to avoid a device sync per step). ``on_nan="stop"`` raises
    :class:`TrainingError` at once; ``"rollback"`` returns to the state of the last validation
    point, halves the learning rate and goes on, at most ``MAX_ROLLBACKS`` times.

    Raises:
        TrainingError: the run diverged (and could not be rolled back).
        Interrupted: ``hooks.stop_requested()`` became true (after ``hooks.save`` ran).
    """
    hooks = hooks or TrainHooks()
    settings = settings.for_device(device.type)
    run = _Run(equation, settings, generator, device, group, hooks.on_warning)
    if resume is not None:
        try:
            run.restore(resume)
        except (KeyError, TypeError, ValueError, RuntimeError, IndexError) as exc:  # a state edited or of another
            reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]    # version (QA)
            raise ProblemError(f"resume: the saved training state does not fit this run ({reason})") from None
    check_every_step = run.check_every_step
    good: TrainState | None = run.state() if on_nan == "rollback" and run.logged() else None

    def diverged(where: str) -> None:
        nonlocal good
        advice = "lower solver.learning_rate" + (" or roll back (--on-nan rollback; on_nan=\"rollback\" in Python)"
                                                 if on_nan == "stop" else "")
        if run.iteration == 0:  # no step was taken: the problem, not the learning rate
            raise TrainingError(f"non-finite {where} at iteration 0, before any training step: "
                                + start_fault(run.model, run.valid))
        if on_nan == "stop" or good is None:
            raise TrainingError(f"non-finite {where} at iteration {run.iteration}{run.last_good()}; {advice}")
        if run.rollbacks >= MAX_ROLLBACKS:
            raise TrainingError(f"non-finite {where} at iteration {run.iteration} after {MAX_ROLLBACKS} rollbacks"
                                f"{run.last_good()}; {advice}")
        rollbacks, lr_scale, start = run.rollbacks + 1, run.lr_scale / 2, run.start
        run.restore(good)
        run.rollbacks, run.lr_scale, run.start = rollbacks, lr_scale, start
        run.streams.branch(rollbacks)  # fresh batches: a replay redrew the batch that failed, whatever the rate
        good = run.state()
        if hooks.on_warning is not None:
            hooks.on_warning(f"non-finite {where}: rolled back to iteration {run.iteration} and halved the "
                             f"learning rate (x{lr_scale:g}, rollback {rollbacks}/{MAX_ROLLBACKS})")

    def log() -> bool:
        nonlocal good
        entry = run.validate()
        if entry is None:
            diverged("validation loss or parameters")
            return False
        run.history.append(entry)
        if on_nan == "rollback":
            good = run.state()
        if on_log is not None:
            on_log(entry)
        return True

    try:
        while True:
            while run.iteration < settings.iterations:
                if run.iteration % settings.log_every == 0 and not run.logged() and not log():
                    continue  # rolled back
                loss = run.step(equation)
                stop = hooks.stop_requested is not None and hooks.stop_requested()
                if group is not None:
                    loss, stop = group.agree(loss, stop, loss=check_every_step)
                if check_every_step and not torch.isfinite(loss):
                    diverged("training loss")
                    continue
                run.optimizer.step()
                run.iteration += 1
                due = bool(hooks.save_every) and (run.iteration % hooks.save_every == 0
                                                  or run.iteration == settings.iterations)  # the last one too
                if hooks.save is not None and (due or stop):  # once, when a stop comes on a due iteration
                    hooks.save(run.state())
                if stop:
                    raise Interrupted(run.iteration)
            if log():
                return TrainResult(run.model, run.history, time.perf_counter() - run.start, run.rollbacks)
    finally:  # later backward passes through the model (a refit, say) must not step this run's Adam
        run.optimizer.stop_updating_during_backward()
