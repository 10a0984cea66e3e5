"""The in-process measurements of ``bsde bench`` (run by :mod:`bsde.bench.run`). Never prints.

All on the requested device:

* **speed**: seconds per training iteration (sample paths + forward + backward + Adam step,
  the trainer's own loop) for the PNAS 100-d configurations, against the matmul floor (the same
  iteration's network matmuls alone, :func:`matmul_floor`) timed in blocks alternating with the
  iterations, and the achieved GFLOP/s of the step networks;
* **loop**: the batched :class:`~bsde.networks.StackedGradientNets` against the plain per-step
  loop :class:`~bsde.per_step.PerStepGradientNets`, same weights, same training step.

Time to accuracy is in :mod:`bsde.bench.accuracy`, scale in :mod:`bsde.bench.worker`.
"""

from __future__ import annotations

import math
import statistics
import time
from dataclasses import dataclass, field, replace
from typing import Any, Callable

import torch

from bsde.adam import Adam
from bsde.model import DeepBSDE, terminal_loss
from bsde.networks import wide_input
from bsde.per_step import PerStepGradientNets
from bsde.problem import Problem, load_problem, problem_from_dict
from bsde.memory import estimate
from bsde.runtime import keep_freed_memory, matmul_precision
from bsde.settings import SolverSettings
from bsde.trainer import TrainHooks, sample, train

Progress = Callable[[str], None]

#: ms per iteration of the reference TensorFlow implementation (frankhan91/DeepBSDE, float64,
#: after its graph trace) on a 2-core machine, for context: run benchmarks/peer_deepbsde.py to remeasure
PEER_MS_PER_ITERATION = {"hjb": 25.6, "allen_cahn": 39.0, "default_risk": 89.0}


@dataclass(frozen=True)
class Effort:
    """How long each measurement runs."""

    warmup: int = 20          # untimed iterations before the speed and loop timings
    blocks: int = 7           # timed blocks; the per-iteration median and IQR are over blocks
    block: int = 15           # iterations per block
    matmul_size: int = 2048   # n of the n^3 peak matmul
    peak_repeats: int = 3     # best of this many for the peaks
    scale_warmup: int = 5
    scale_iterations: int = 10
    accuracy_iterations: int | None = None  # None: the preset's own
    compiled_cases: bool = True  # the speed cases with solver.compile (each compiles for tens of seconds)


FULL = Effort()
QUICK = Effort(warmup=3, blocks=3, block=2, matmul_size=512, peak_repeats=2, scale_warmup=2, scale_iterations=3,
               accuracy_iterations=40, compiled_cases=False)


@dataclass(frozen=True)
class Timing:
    """Seconds per iteration: median and quartiles over ``samples`` timed blocks."""

    median_s: float
    q25_s: float
    q75_s: float
    samples: int

    @property
    def iqr_s(self) -> float:
        return self.q75_s - self.q25_s

    @classmethod
    def of(cls, per_iteration: list[float]) -> Timing:
        if len(per_iteration) < 2:
            value = per_iteration[0]
            return cls(value, value, value, 1)
        q25, q50, q75 = statistics.quantiles(per_iteration, n=4, method="inclusive")
        return cls(q50, q25, q75, len(per_iteration))


def synchronize(device: torch.device) -> None:
    """Wait for queued device work so that wall-clock times are honest."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def with_solver(problem: Problem, **changes: Any) -> Problem:
    """``problem`` with some solver settings replaced (presets and reference kept)."""
    raw = problem.to_dict()
    raw["solver"].update(changes)
    return replace(problem_from_dict(raw, problem.name), source=problem.source)


def network_widths(problem: Problem) -> list[int]:
    dim = problem.equation.dim
    return [dim, *problem.solver.widths(dim), dim]


def network_flops(problem: Problem) -> int:
    """Matmul FLOPs of the step networks in one training iteration.

    With S = N - 1 step networks, batch B and layer widths w_0 = d, w_1..w_L, w_{L+1} = d:
    forward 2 B S sum_l w_l w_{l+1}; backward twice that (gradients with respect to the layer
    input and to the weights) except for the first layer, whose input (the normalised X) needs no
    gradient: 6 B S sum_l w_l w_{l+1} - 2 B S w_0 w_1 in all. Batch norm, the driver, path
    simulation and Adam are not counted, so the GFLOP/s derived from it are a lower bound.
    """
    widths = network_widths(problem)
    steps = max(problem.solver.time_steps - 1, 1)
    products = [a * b for a, b in zip(widths, widths[1:])]
    return 2 * problem.solver.batch_size * steps * (3 * sum(products) - products[0])


@dataclass(frozen=True)
class TrainTiming:
    """Seconds per iteration; ``floor`` (when asked for) is the matmul floor timed in the blocks between."""

    timing: Timing
    parameters: int
    warmup_s: float                    # the untimed warm-up iterations (compilation included), in all
    floor: Timing | None = None        # seconds per iteration of the network matmuls alone
    floor_ratio: Timing | None = None  # iteration block / the floor block just before it


def time_training(problem: Problem, device: torch.device, *, warmup: int, blocks: int, block: int,
                  seed: int = 0, floor: Callable[[], None] | None = None) -> TrainTiming:
    """Time the trainer's own iterations: ``warmup`` untimed, then ``blocks`` blocks of ``block``.

    Runs :func:`bsde.trainer.train` with validation only at the start and end and reads the
    clock from its per-iteration ``stop_requested`` poll, synchronising the device only at
    block boundaries. With ``floor`` (one iteration's network matmuls, see :func:`matmul_floor`),
    a block of ``block`` floor calls runs before each block of iterations, so the two alternate
    and machine noise hits both alike.
    """
    if warmup < 1 or blocks < 1 or block < 1:
        raise ValueError(f"warmup, blocks and block must be positive, got {warmup}, {blocks}, {block}")
    total = warmup + blocks * block
    settings_problem = with_solver(problem, iterations=total, log_every=total)
    keep_freed_memory(device, estimate(settings_problem).total)  # as solve does
    spans: list[float] = []
    floors: list[float] = []
    opened: float | None = None
    done = 0
    start = time.perf_counter()
    warmup_s = 0.0

    def tick() -> bool:
        nonlocal done, opened, warmup_s
        done += 1
        if done >= warmup and (done - warmup) % block == 0:
            synchronize(device)
            now = time.perf_counter()
            if opened is None:
                warmup_s = now - start
            else:
                spans.append((now - opened) / block)
            if floor is not None and len(spans) < blocks:
                floors.append(_time_block(floor, block, device))
            opened = time.perf_counter()
        return False

    result = train(settings_problem.equation, settings_problem.solver, device=device,
                   generator=torch.Generator(device=device).manual_seed(seed), hooks=TrainHooks(stop_requested=tick))
    if len(spans) != blocks:
        raise RuntimeError(f"time_training expected train() to poll stop_requested once per iteration ({total}), "
                           f"got {done} polls; the trainer's hooks changed")
    ratios = [a / b for a, b in zip(spans, floors)]
    return TrainTiming(Timing.of(spans), sum(p.numel() for p in result.model.parameters()), warmup_s,
                       Timing.of(floors) if floors else None, Timing.of(ratios) if ratios else None)


def _time_block(work: Callable[[], object], count: int, device: torch.device) -> float:
    """Seconds per call of ``count`` calls of ``work``."""
    synchronize(device)
    start = time.perf_counter()
    for _ in range(count):
        work()
    synchronize(device)
    return (time.perf_counter() - start) / count


def matmul_floor(problem: Problem, device: torch.device) -> Callable[[], None]:
    """One training iteration's network matmuls alone, as batched matmuls of the same shapes and dtype.

    Forward (S, B, w_l) @ (S, w_l, w_(l+1)) for every layer; backward the weight gradients
    (S, w_l, B) @ (S, B, w_(l+1)) and the input gradients (S, B, w_(l+1)) @ (S, w_(l+1), w_l) of
    every layer but the first: the :func:`network_flops` of an iteration, on contiguous operands. A layer
    whose input is wide (bsde.networks.StackedLinear) has its weight and weight gradient in the transposed
    layout, as the networks do, where the matmul library runs about 1.3x faster: (S, B, w_l) @ (S, w_(l+1), w_l)^T
    and (S, w_(l+1), B) @ (S, B, w_l). An iteration cannot run faster than this.
    """
    settings = problem.solver.for_device(device.type)
    widths = network_widths(problem)
    steps, batch = max(settings.time_steps - 1, 1), settings.batch_size
    generator = torch.Generator(device=device).manual_seed(0)
    kw = {"generator": generator, "dtype": settings.torch_dtype, "device": device}
    wide = [wide_input(a, b) for a, b in zip(widths, widths[1:])]
    weights = [torch.randn(steps, b, a, **kw).transpose(1, 2) / math.sqrt(a) if transposed
               else torch.randn(steps, a, b, **kw) / math.sqrt(a) for a, b, transposed in zip(widths, widths[1:], wide)]
    inputs = [torch.randn(steps, batch, a, **kw) for a in widths[:-1]]
    output_grads = [torch.randn(steps, batch, b, **kw) for b in widths[1:]]
    # the weight gradient's two factors, contiguous, in the order that gives the weight's layout
    weight_grad_factors = [(g.transpose(1, 2).contiguous(), x) if transposed else (x.transpose(1, 2).contiguous(), g)
                           for x, g, transposed in zip(inputs, output_grads, wide)]
    weights_t = [w.transpose(1, 2).contiguous() for w in weights]

    def work() -> None:  # in the training step's matmul precision (TF32 for float32 on CUDA by default)
        with torch.no_grad(), matmul_precision(settings, device):
            for x, w in zip(inputs, weights):
                torch.bmm(x, w)
            for layer, ((a, b), w_t, g) in enumerate(zip(weight_grad_factors, weights_t, output_grads)):
                torch.bmm(a, b)
                if layer > 0:
                    torch.bmm(g, w_t)

    return work


def matmul_peak(size: int, settings: SolverSettings, device: torch.device, repeats: int) -> float:
    """GFLOP/s of the best of ``repeats`` (size x size) @ (size x size) products in ``settings``' dtype and matmul
    precision (:func:`bsde.runtime.matmul_precision`)."""
    generator = torch.Generator(device=device).manual_seed(0)
    a, b = (torch.randn(size, size, generator=generator, dtype=settings.torch_dtype, device=device) for _ in range(2))

    def work() -> torch.Tensor:
        with matmul_precision(settings, device):
            return a @ b

    return _best_rate(work, 2 * size**3, device, repeats)


def _best_rate(work: Callable[[], object], flops: int, device: torch.device, repeats: int) -> float:
    with torch.no_grad():
        work()  # warm-up
        best = math.inf
        for _ in range(repeats):
            synchronize(device)
            start = time.perf_counter()
            work()
            synchronize(device)
            best = min(best, time.perf_counter() - start)
    return flops / best / 1e9


@dataclass(frozen=True)
class SpeedCase:
    label: str
    problem: str
    overrides: dict[str, Any] = field(default_factory=dict)
    peer: bool = False     # the reference TensorFlow code runs this configuration (PEER_MS_PER_ITERATION)
    compiled: bool = False  # solver.compile: skipped where the effort says so or inductor fails


PLAIN = {"solver.measure": "plain"}
SPEED_CASES = (
    SpeedCase("hjb 100-d float64", "hjb", {"solver.dtype": "float64", **PLAIN}, peer=True),
    SpeedCase("hjb 100-d float32", "hjb", {"solver.dtype": "float32", **PLAIN}),
    SpeedCase("hjb 100-d float64 controlled", "hjb",
              {"solver.dtype": "float64", "solver.measure": "controlled", "solver.control_from": 0.0}),
    SpeedCase("allen_cahn 100-d float64", "allen_cahn", {"solver.dtype": "float64"}, peer=True),
    SpeedCase("default_risk 100-d float64", "default_risk", {"solver.dtype": "float64"}, peer=True),
    SpeedCase("hjb 100-d float64 compiled", "hjb", {"solver.dtype": "float64", "solver.compile": True, **PLAIN},
              compiled=True),
    SpeedCase("hjb 100-d float32 compiled", "hjb", {"solver.dtype": "float32", "solver.compile": True, **PLAIN},
              compiled=True),
)


@dataclass(frozen=True)
class SpeedResult:
    """Per-iteration speed of one configuration, against the matmul floor measured beside it, and the peer's number."""

    case: str
    problem: str
    dim: int
    time_steps: int
    batch_size: int
    hidden: list[int]
    dtype: str
    compiled: bool
    parameters: int
    timing: Timing
    warmup_s: float
    iterations_per_s: float
    flops_per_iteration: int
    gflops: float
    floor: Timing           # seconds per iteration of the network matmuls alone (matmul_floor)
    floor_gflops: float
    floor_ratio: Timing     # iteration time / floor time, per pair of adjacent blocks
    matmul_peak_gflops: float
    peer_ms: float | None
    peer_ratio: float | None  # peer time / ours: > 1 means faster than the peer

    @property
    def matmul_fraction(self) -> float:
        return self.gflops / self.matmul_peak_gflops


def measure_speed(case: SpeedCase, device: torch.device, effort: Effort,
                  peaks: dict[tuple[torch.dtype, bool], float]) -> SpeedResult:
    """Case (a): the trainer's seconds per iteration, alternating with blocks of its matmul floor.

    Raises:
        CompileError: a compiled case where torch.compile fails on this machine.
    """
    problem = load_problem(case.problem, case.overrides)
    problem = replace(problem, solver=problem.solver.for_device(device.type))
    settings, dtype = problem.solver, problem.solver.torch_dtype
    precision = (dtype, settings.tf32)
    if precision not in peaks:
        peaks[precision] = matmul_peak(effort.matmul_size, settings, device, effort.peak_repeats)
    measured = time_training(problem, device, warmup=effort.warmup, blocks=effort.blocks, block=effort.block,
                             floor=matmul_floor(problem, device))
    seconds = measured.timing.median_s
    flops = network_flops(problem)
    peer = PEER_MS_PER_ITERATION.get(case.problem) if case.peer else None
    return SpeedResult(
        case=case.label, problem=case.problem, dim=problem.equation.dim, time_steps=settings.time_steps,
        batch_size=settings.batch_size, hidden=settings.widths(problem.equation.dim), dtype=settings.dtype,
        compiled=settings.compile, parameters=measured.parameters, timing=measured.timing,
        warmup_s=measured.warmup_s, iterations_per_s=1.0 / seconds, flops_per_iteration=flops,
        gflops=flops / seconds / 1e9, floor=measured.floor, floor_gflops=flops / measured.floor.median_s / 1e9,
        floor_ratio=measured.floor_ratio, matmul_peak_gflops=peaks[precision],
        peer_ms=peer, peer_ratio=None if peer is None else peer / (1e3 * seconds),
    )


@dataclass(frozen=True)
class LoopComparison:
    """Case (b): batched step networks against the per-step loop, same weights and training step."""

    case: str
    batched: Timing
    per_step: Timing
    speedup: float            # per-step median / batched median
    max_abs_difference: float  # forward pass of the two on the same paths (train mode)
    tolerance: float

    @property
    def agree(self) -> bool:
        return self.max_abs_difference <= self.tolerance


def _adam_step(model: DeepBSDE, problem: Problem, generator: torch.Generator,
               device: torch.device) -> Callable[[], None]:
    """One full training step (sample, forward, backward, Adam) as the trainer takes it."""
    equation, settings = problem.equation, problem.solver
    optimizer = Adam(model.parameters(), lr=settings.rate_at(0), eps=1e-8)
    optimizer.update_during_backward()

    def step() -> None:
        paths = sample(equation, settings, settings.batch_size, generator, device)
        with matmul_precision(settings, device):
            loss = terminal_loss(model(paths.x, paths.dw, paths.dt), equation.terminal(paths.x[:, -1]))
            optimizer.zero_grad()
            loss.backward()
        optimizer.step()

    return step


def compare_loops(device: torch.device, effort: Effort, problem_name: str = "hjb") -> LoopComparison:
    """Time both network layouts on alternating blocks (so machine noise hits both alike)."""
    problem = load_problem(problem_name)
    problem = replace(problem, solver=problem.solver.for_device(device.type))
    equation, settings = problem.equation, problem.solver
    kw = {"dtype": settings.torch_dtype, "device": device}
    hidden = settings.widths(equation.dim)
    batched = DeepBSDE(equation, settings.time_steps, hidden, **kw)
    init = torch.Generator(device=device).manual_seed(0)
    batched.reset_parameters(init, (0.0, 1.0))
    with torch.no_grad():  # the last layer starts at zero: give it values so the agreement check means something
        for p in (batched.nets.linears[-1].weight, batched.nets.bias, batched.nets.diagonal):
            p.normal_(0.0, 0.1, generator=init)
    looped = DeepBSDE(equation, settings.time_steps, hidden, **kw)
    looped.load_state_dict(batched.state_dict())
    looped.nets = PerStepGradientNets(batched.nets.steps, equation.dim, hidden, dtype=settings.torch_dtype,
                                      device=device).load_from_stacked(batched.nets)
    x = sample(equation, settings, settings.batch_size, torch.Generator(device=device).manual_seed(1), device).x
    with torch.no_grad():
        expected = batched.nets(x[:, 1:settings.time_steps])
        difference = float((looped.nets(x[:, 1:settings.time_steps]) - expected).abs().max())
    tolerance = (1e-9 if settings.dtype == "float64" else 1e-3) * max(1.0, float(expected.abs().max()))
    steps = {name: _adam_step(model, problem, torch.Generator(device=device).manual_seed(2), device)
             for name, model in (("batched", batched), ("per_step", looped))}
    for step in steps.values():
        for _ in range(effort.warmup):
            step()
    samples: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(effort.blocks):
        for name, step in steps.items():
            synchronize(device)
            start = time.perf_counter()
            for _ in range(effort.block):
                step()
            synchronize(device)
            samples[name].append((time.perf_counter() - start) / effort.block)
    fast, slow = Timing.of(samples["batched"]), Timing.of(samples["per_step"])
    label = f"{problem_name} {equation.dim}-d {settings.dtype}, {settings.time_steps} steps, batch {settings.batch_size}"
    return LoopComparison(label, fast, slow, slow.median_s / fast.median_s, difference, tolerance)


@dataclass(frozen=True)
class ProfileRow:
    """One operator's share of a training iteration (torch.profiler self time)."""

    op: str
    ms_per_iteration: float
    share: float
    calls_per_iteration: float


def profile_step(device: torch.device, effort: Effort, problem_name: str = "hjb",
                 rows: int = 12) -> tuple[str, list[ProfileRow]]:
    """Where an iteration of the default config goes: torch.profiler self times of the top operators."""
    from torch.profiler import ProfilerActivity, profile

    problem = load_problem(problem_name)
    problem = replace(problem, solver=problem.solver.for_device(device.type))
    equation, settings = problem.equation, problem.solver
    model = DeepBSDE(equation, settings.time_steps, settings.widths(equation.dim), dtype=settings.torch_dtype,
                     device=device)
    model.reset_parameters(torch.Generator(device=device).manual_seed(0), (0.0, 1.0))
    step = _adam_step(model, problem, torch.Generator(device=device).manual_seed(1), device)
    for _ in range(effort.warmup):
        step()
    iterations = effort.blocks * effort.block
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        for _ in range(iterations):
            step()
        synchronize(device)
    # on CUDA the kernels' own time (the host's is mostly launches, and the final synchronisation)
    self_time = _self_device_time if device.type == "cuda" else (lambda e: e.self_cpu_time_total)
    events = [e for e in prof.key_averages() if self_time(e) > 0]
    total = sum(self_time(e) for e in events)
    events.sort(key=self_time, reverse=True)
    label = f"{problem_name} {equation.dim}-d {settings.dtype}, {settings.time_steps} steps, batch {settings.batch_size}"
    return label, [ProfileRow(e.key, self_time(e) / 1e3 / iterations, self_time(e) / total, e.count / iterations)
                   for e in events[:rows]]


def _self_device_time(event: Any) -> float:
    """A profiler event's own time on the device (``self_cuda_time_total`` before torch 2.4)."""
    return event.self_device_time_total if hasattr(event, "self_device_time_total") else event.self_cuda_time_total
