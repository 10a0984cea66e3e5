"""Time to accuracy for ``bsde bench``: ``solve`` over seeds against the reference engine. Never prints.

Each run is timed from before ``load_problem`` to the result, in process; the start-up of a fresh
interpreter importing ``bsde`` and the one-time cost of its first solve are measured once in
subprocesses and added, so the total is what a user waits for ``bsde solve`` from the shell.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from bsde.bench.cases import Effort, Progress, with_solver
from bsde.errors import BSDEError, TrainingError
from bsde.problem import Problem, load_problem
from bsde.reference import reference
from bsde.solve import solve


@dataclass(frozen=True)
class Target:
    """Time-to-accuracy goal: relative error of y0 within ``rel_error`` in ``seconds`` (start-up included)."""

    rel_error: float
    seconds: float


TARGETS = {"hjb": Target(2e-3, 10.0), "allen_cahn": Target(3e-3, 15.0)}


@dataclass(frozen=True)
class Startup:
    """What a fresh interpreter pays before its first solve runs at full speed.

    ``process_s``/``import_s``: a fresh ``python -c "import bsde.solve"`` (what a solve imports), the
    whole process and the import alone. ``first_solve_s``/``second_solve_s``: two identical small
    solves (:data:`FIRST_SOLVE`) in another fresh interpreter; the first pays the one-time costs
    (lazy imports, kernel and allocator warm-up), ``one_time_s`` is the difference. ``commands``:
    the whole process of each of :data:`CLI_COMMANDS`, best of :data:`CLI_REPEATS`; ``bytecode_cached``:
    whether the package's compiled modules were on disk (without them every start compiles its sources).
    """

    process_s: float
    import_s: float
    first_solve_s: float | None = None
    second_solve_s: float | None = None
    commands: dict[str, float] = field(default_factory=dict)
    bytecode_cached: bool | None = None

    @property
    def one_time_s(self) -> float:
        if self.first_solve_s is None or self.second_solve_s is None:
            return 0.0
        return max(self.first_solve_s - self.second_solve_s, 0.0)


#: the small solve timed twice for the one-time cost (the 10-d HJB, 50 iterations, no reference)
FIRST_SOLVE = {"equation.dim": 10, "solver.iterations": 50, "solver.log_every": 25}


#: the reading commands timed as fresh processes (``python -m bsde.cli ...``), and their goal in seconds
CLI_COMMANDS = ("--help", "list", "show hjb")
CLI_TARGET_S = 0.5
CLI_REPEATS = 5

#: seconds a start-up child (an import, or the small solve twice) may take before it is stopped
STARTUP_TIMEOUT_S = 600


def _run_fresh(arguments: list[str], what: str) -> tuple[str, float]:
    """stdout and wall time of ``python ARGUMENTS`` in a fresh interpreter; a BSDEError where it fails or runs over
    STARTUP_TIMEOUT_S."""
    start = time.perf_counter()
    try:
        done = subprocess.run([sys.executable, *arguments], capture_output=True, text=True,
                              cwd=tempfile.gettempdir(), timeout=STARTUP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise BSDEError(f"a fresh '{sys.executable}' {what} took over {STARTUP_TIMEOUT_S} s; stopped") from None
    wall = time.perf_counter() - start
    if done.returncode != 0:
        tail = (done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[-1]
        raise BSDEError(f"a fresh '{sys.executable}' {what} failed: {tail}")
    return done.stdout, wall


def _fresh_python(code: str, what: str) -> tuple[list[float], float]:
    """The numbers the last stdout line of ``python -c code`` holds (a JSON list), and the process wall time."""
    stdout, wall = _run_fresh(["-c", code], what)
    return json.loads(stdout.strip().splitlines()[-1]), wall


def _command_seconds(args: str) -> float:
    """Best wall time of ``python -m bsde.cli args`` over :data:`CLI_REPEATS` fresh processes."""
    runs = (_run_fresh(["-m", "bsde.cli", *args.split()], f"running 'bsde {args}'") for _ in range(CLI_REPEATS))
    return min(wall for _, wall in runs)


def _bytecode_cached() -> bool:
    """Whether the compiled modules of what ``bsde list`` reads are on disk (pip writes them; an
    editable install under PYTHONDONTWRITEBYTECODE has none)."""
    import bsde.equations.base
    import bsde.problem

    return all(Path(importlib.util.cache_from_source(module.__file__)).exists()
               for module in (bsde.problem, bsde.equations.base))


def measure_startup(device: torch.device | None = None, threads: int | None = None) -> Startup:
    """Start-up of a fresh interpreter and of the reading commands, and (given a device) the one-time
    cost of a first solve."""
    (import_s,), wall = _fresh_python("import json, time; t = time.perf_counter(); import bsde.solve; "
                                      "print(json.dumps([time.perf_counter() - t]))", 'importing bsde.solve')
    commands = {args: _command_seconds(args) for args in CLI_COMMANDS}
    if device is None:
        return Startup(wall, import_s, commands=commands, bytecode_cached=_bytecode_cached())
    code = ("import json, time, bsde, bsde.solve\n"
            f"problem = bsde.load_problem('hjb', {FIRST_SOLVE!r})\n"
            "times = []\n"
            "for _ in range(2):\n"
            "    t = time.perf_counter()\n"
            f"    bsde.solve(problem, seed=0, device={str(device)!r}, threads={threads!r})\n"
            "    times.append(time.perf_counter() - t)\n"
            "print(json.dumps(times))")
    (first, second), _ = _fresh_python(code, "solving a small problem twice")
    return Startup(wall, import_s, first, second, commands, _bytecode_cached())


@dataclass(frozen=True)
class SeedRun:
    seed: int
    y0: float | None
    rel_error: float | None
    wall_s: float        # load_problem .. result, in process
    total_s: float       # wall_s + the measured start-up
    train_s: float
    within_tolerance: bool
    within_time: bool
    error: str | None = None


@dataclass(frozen=True)
class AccuracyResult:
    """Case (c): time to accuracy of ``solve`` over seeds."""

    problem: str
    preset: str | None
    iterations: int
    reference: float
    reference_method: str
    target: Target
    runs: list[SeedRun]

    @property
    def within_tolerance(self) -> int:
        return sum(r.within_tolerance for r in self.runs)

    @property
    def within_time(self) -> int:
        return sum(r.within_time for r in self.runs)

    @property
    def within_both(self) -> int:
        return sum(r.within_tolerance and r.within_time for r in self.runs)


def _accuracy_problem(name: str, iterations: int | None) -> tuple[Problem, str | None]:
    problem = load_problem(name)
    preset = "fast" if "fast" in problem.presets else None
    if preset:
        problem = problem.with_preset(preset)
    if iterations is not None:
        problem = with_solver(problem, iterations=iterations, log_every=iterations)
    return problem, preset


def time_to_accuracy(name: str, device: torch.device, threads: int, seeds: int, effort: Effort,
                     startup: Startup, progress: Progress) -> AccuracyResult:
    """Solve ``name`` for seeds 0..seeds-1, timing from before ``load_problem`` to the result."""
    problem, preset = _accuracy_problem(name, effort.accuracy_iterations)
    ref = reference(problem)
    target = TARGETS[name]
    runs = []
    for seed in range(seeds):
        progress(f"time to accuracy: {name} seed {seed + 1}/{seeds}")
        start = time.perf_counter()
        try:
            solved = solve(_accuracy_problem(name, effort.accuracy_iterations)[0], seed=seed, device=str(device),
                           threads=threads)
        except TrainingError as exc:
            wall = time.perf_counter() - start
            runs.append(SeedRun(seed, None, None, wall, wall + startup.process_s + startup.one_time_s, 0.0, False,
                                False, str(exc)))
            continue
        wall = time.perf_counter() - start
        rel = abs(solved.y0 - ref.value) / abs(ref.value)
        total = wall + startup.process_s + startup.one_time_s
        runs.append(SeedRun(seed, solved.y0, rel, wall, total, solved.train_s, rel <= target.rel_error,
                            total <= target.seconds))
    return AccuracyResult(name, preset, problem.solver.iterations, ref.value, ref.method, target, runs)
