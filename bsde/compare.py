"""Several seeded solves of one problem beside one reference: the data behind ``bsde compare``.

The relative error is |mean y0 - ref| / |ref| with ref = the reference engine's value
(:mod:`bsde.reference`, method "auto"); only when no engine method applies does the problem's
published ``reference.value`` stand in. Rendering (Markdown, PNG, the index) is in :mod:`bsde.report`.
"""

from __future__ import annotations

import functools
import math
import os
import platform
import statistics
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from importlib import metadata
from typing import Any, Callable

import numpy as np
import torch

from bsde import distributed
from bsde.errors import ProblemError
from bsde.problem import Problem
from bsde.reference import ReferenceResult, applicable_methods, describe, reference
from bsde.reference.result import finite_json
from bsde.reference.sampling import Progress
from bsde.runtime import available_cores, cpu_model, resolve_device, using_threads
from bsde.solve import SolveResult, solve
from bsde.trainer import LogEntry

#: marks a JSON file in a results folder as a comparison report (the index reads only these)
FORMAT = "bsde-compare/1"


@dataclass(frozen=True)
class Published:
    """The problem file's own reference value (from the literature), if any."""

    value: float | None
    source: str = ""
    stderr: float | None = None


@dataclass
class Comparison:
    """K solves (seeds 0..K-1) of one problem, our reference, the published value and the machine."""

    problem: str
    kind: str
    dim: int
    runs: list[SolveResult]
    reference: ReferenceResult | None
    published: Published
    environment: dict[str, Any] = field(default_factory=dict)

    @property
    def y0s(self) -> list[float]:
        return [run.y0 for run in self.runs]

    @property
    def y0_mean(self) -> float:
        return statistics.fmean(self.y0s)

    @property
    def y0_std(self) -> float | None:
        """Sample standard deviation over seeds (None for a single seed: no spread is measured)."""
        return statistics.stdev(self.y0s) if len(self.runs) > 1 else None

    @property
    def basis(self) -> str | None:
        """What relative errors are measured against: "bsde.reference", "published" or None."""
        if self.reference is not None:
            return "bsde.reference"
        return "published" if self.published.value is not None else None

    @property
    def ref_value(self) -> float | None:
        return self.reference.value if self.reference is not None else self.published.value

    @property
    def rel_error(self) -> float | None:
        """|mean y0 - ref| / |ref| against our reference (the published value only as a fallback)."""
        return relative_error(self.y0_mean, self.ref_value)

    @property
    def rel_error_published(self) -> float | None:
        return relative_error(self.y0_mean, self.published.value)

    @property
    def baseline(self) -> tuple[float, float] | None:
        """The driver-free value pooled over the runs' independent estimates: (mean, stderr)."""
        values = [(run.baseline, run.baseline_stderr) for run in self.runs if run.baseline is not None]
        if not values:
            return None
        mean = statistics.fmean(v for v, _ in values)
        return mean, math.sqrt(sum(s * s for _, s in values)) / len(values)

    @property
    def zero_z_value(self) -> float | None:
        """The Z = 0 value (bsde.trivial.zero_z_value) averaged over the runs that have one."""
        values = [run.zero_z_value for run in self.runs if run.zero_z_value is not None]
        return statistics.fmean(values) if values else None

    def summary(self) -> dict[str, Any]:
        """The facts of one table row (what the index and the console table show)."""
        ref = self.reference
        baseline = self.baseline
        return {
            "problem": self.problem, "kind": self.kind, "dim": self.dim, "seeds": len(self.runs),
            "y0_mean": self.y0_mean, "y0_std": self.y0_std,
            "reference": self.ref_value, "reference_basis": self.basis,
            "reference_error_bar": ref.error_bar if ref is not None else None,
            "reference_error_kind": ref.error_bar_kind if ref is not None else "none",
            "reference_method": ref.method if ref is not None else ("published" if self.basis else None),
            "reference_source": describe(ref) if ref is not None else self.published.source,
            "rel_error": self.rel_error,
            "published": self.published.value, "published_source": self.published.source,
            "rel_error_published": self.rel_error_published,
            "baseline": baseline[0] if baseline else None, "baseline_stderr": baseline[1] if baseline else None,
            "zero_z_value": self.zero_z_value,
            "wall_s_mean": statistics.fmean(run.wall_s for run in self.runs),
            "device": self.runs[0].device, "date": self.environment.get("date"),
        }

    def to_dict(self) -> dict[str, Any]:
        """Everything: the summary, our reference, the published value, every run with its history."""
        runs = []
        for run in self.runs:
            data = run.to_dict()
            data["history"] = [[e.iteration, e.loss, e.y0, e.elapsed_s] for e in run.history]
            runs.append(data)
        return finite_json({
            "format": FORMAT, "problem": self.problem, "kind": self.kind, "dim": self.dim,
            "summary": self.summary(), "agreement": agreement(self.reference, self.published),
            "reference": self.reference.to_dict() if self.reference is not None else None,
            "published": {"value": self.published.value, "source": self.published.source,
                          "stderr": self.published.stderr},
            "history_columns": ["iteration", "loss", "y0", "elapsed_s"],
            "runs": runs, "environment": self.environment,
        })


def relative_error(value: float, ref: float | None) -> float | None:
    return None if ref is None or ref == 0 else abs(value - ref) / abs(ref)


def rounding(value: float) -> float:
    """Half a unit in the last digit of ``value`` as written (4.5901 -> 5e-5): a printed number's precision."""
    mantissa, _, exponent = repr(float(value)).partition("e")
    decimals = len(mantissa.partition(".")[2].rstrip("0"))
    return 0.5 * 10.0 ** (int(exponent or 0) - decimals)


def _evidence(ref: ReferenceResult, discrepancy: float) -> tuple[bool, str]:
    """(whether we trust our value over the published one, why), from the engine's details."""
    d = ref.details
    if ref.method == "exact":
        return True, "ours is the closed-form solution"
    if ref.method in ("radial", "pde-1d") and "half_resolution_difference" in d:
        ratio = discrepancy / max(abs(d["half_resolution_difference"]), 1e-300)
        what = "radial" if ref.method == "radial" else "one-dimensional"
        return True, (f"the {what} finite-difference solve ({d['points']} points, {d['steps']} BDF2 steps) differs "
                      f"from the same solve at half resolution ({d['coarse_points']} points, {d['coarse_steps']} "
                      f"steps) by only {abs(d['half_resolution_difference']):.2g}, {ratio:.3g} times less than "
                      "the discrepancy")
    if ref.method == "semi-analytic":
        return True, (f"the semi-analytic formula is exact up to a quadrature error of {d.get('quad_error', 0):.2g}")
    if ref.method in ("mc", "cole-hopf") and ref.stderr:
        return True, (f"our Monte Carlo estimate is unbiased (exact transitions) and the published value lies "
                      f"{discrepancy / ref.stderr:.3g} standard errors ({ref.stderr:.2g}, {ref.paths} paths) from it")
    if ref.method == "mlp":
        allowance = d.get("truncation_allowance")
        if allowance is None:
            return False, (f"our MLP interval covers only the statistical error of {d.get('repeats', '?')} repeats, "
                           f"not the truncation bias of level {d.get('level', '?')}")
        return True, (f"our MLP interval counts the spread of {d.get('repeats', '?')} repeats and a bound on the "
                      f"truncation bias of level {d.get('level', '?')} from the level below ({allowance:.2g})")
    return True, f"our {ref.method} value carries an error bar of {ref.error_bar or 0:.2g}"


def agreement(ref: ReferenceResult | None, published: Published) -> str | None:
    """A sentence on whether our reference and the published value agree, and which one we trust.

    They disagree when they differ by more than our error bar (95% CI half-width or the method's
    error estimate) plus the published value's own precision (half a unit in its last printed
    digit, and 1.96 of its stated stderr if any).
    """
    if ref is None or published.value is None:
        return None
    difference = abs(ref.value - published.value)
    ours = ref.error_bar or 0.0
    theirs = rounding(published.value) + 1.96 * (published.stderr or 0.0)
    relative = f"{difference / abs(published.value):.2g} relative" if published.value else "absolute"
    if difference <= ours + theirs:
        return (f"Our reference {ref.value:.8g} and the published {published.value:g} agree: they differ by "
                f"{difference:.2g} ({relative}), within our error bar {ours:.2g} plus the published precision "
                f"{theirs:.2g}.")
    trust_ours, evidence = _evidence(ref, difference)
    verdict = "we trust ours" if trust_ours else "we trust the published value"
    return (f"Our reference {ref.value:.8g} and the published {published.value:g} ({published.source or 'no source'}) "
            f"disagree by {difference:.3g} ({relative}), more than our error bar {ours:.2g} plus the published "
            f"precision {theirs:.2g}; {verdict}: {evidence}.")


def environment(device: str, threads: int, seeds: list[int], command: str) -> dict[str, Any]:
    """Where and how a comparison ran: machine, device, versions, threads, seeds, command, date (UTC)."""
    dev = resolve_device(device)
    try:
        version = metadata.version("bsde")
    except metadata.PackageNotFoundError:  # pragma: no cover - running from a source tree
        version = "unknown"
    return {
        "platform": platform.platform(), "cpu": cpu_model(), "cores": os.cpu_count(),
        "available_cores": available_cores(), "device": str(dev),
        "device_name": torch.cuda.get_device_name(dev) if dev.type == "cuda" else cpu_model(),
        "python": platform.python_version(), "torch": torch.__version__, "numpy": np.__version__, "bsde": version,
        "threads": threads, "seeds": seeds, "command": command,
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def compare(
    problem: Problem, *, seeds: int = 3, device: str = "auto", threads: int | None = None,
    reference_paths: int | None = None, command: str = "",
    on_log: Callable[[int, LogEntry], None] | None = None, on_warning: Callable[[str], None] | None = None,
    on_reference: Callable[[str], None] | None = None, progress: Progress | None = None,
) -> Comparison:
    """Solve ``problem`` with seeds 0..seeds-1 and compute one reference (method "auto").

    Args:
        reference_paths: paths (or MLP repeats) for a statistical reference; default: the method's.
        command: the command line to record in the environment.
        on_log: hears (seed, entry) at each validation point of each solve.
        on_reference: hears the method's name before the reference runs.
        progress: the reference's progress callback(done, total).

    Raises:
        ProblemError: ``seeds`` < 1, or a solve would not fit in memory.
        TrainingError: a solve diverged.
    """
    if seeds < 1:
        raise ProblemError(f"seeds must be at least 1, got {seeds}")
    with using_threads(threads):  # the reference's too, not only the solves'; the caller's count back after
        ours = _reference(problem, reference_paths, on_reference, progress)
        runs = [_solve(problem, seed, ours, device, threads, on_log, on_warning) for seed in range(seeds)]
    return _comparison(problem, runs, ours, device, seeds, command)


def _reference(problem: Problem, paths: int | None, on_reference: Callable[[str], None] | None,
               progress: Progress | None) -> ReferenceResult | None:
    """The engine's value by method "auto", or None where no method applies."""
    methods = applicable_methods(problem)
    if not methods:
        return None
    if on_reference is not None:
        on_reference(methods[0])
    return reference(problem, "auto", paths=paths, progress=progress)


def _solve(problem: Problem, seed: int, ours: ReferenceResult | None, device: str, threads: int | None,
           on_log: Callable[[int, LogEntry], None] | None, on_warning: Callable[[str], None] | None) -> SolveResult:
    log = None if on_log is None else (lambda entry: on_log(seed, entry))
    warn = None if on_warning is None else (lambda text: on_warning(f"{problem.name}, seed {seed}: {text}"))
    return solve(problem, seed=seed, device=device, threads=threads, on_log=log, on_warning=warn,
                 reference=ours, auto_reference=False)


def _comparison(problem: Problem, runs: list[SolveResult], ours: ReferenceResult | None, device: str, seeds: int,
                command: str, processes: int = 1) -> Comparison:
    published = Published(problem.reference.value, problem.reference.source, problem.reference.stderr)
    env = environment(device, runs[0].threads, list(range(seeds)), command)
    env["processes"] = processes
    return Comparison(problem.name, problem.equation.kind, problem.equation.dim, runs, ours, published, env)


def compare_all(
    problems: list[Problem], *, seeds: int = 3, device: str = "auto", threads: int | None = None,
    reference_paths: int | None = None, command: str = "",
    on_log: Callable[[int, LogEntry], None] | None = None, on_warning: Callable[[str], None] | None = None,
    on_reference: Callable[[str], None] | None = None, progress: Progress | None = None,
    on_problem: Callable[[Problem], None] | None = None, on_done: Callable[[Comparison], None] | None = None,
) -> list[Comparison]:
    """:func:`compare` for each problem in turn (``on_problem`` before, ``on_done`` after each).

    Under torchrun (several processes, :mod:`bsde.distributed`) every process calls this alike: the
    references (one per problem) and then the solves (one per problem and seed) are dealt out to the
    processes in turn, each solving alone with its share of the cores (its own GPU on CUDA); every
    process returns every comparison, and ``on_done`` runs on the lead at the end. The callbacks hear
    about the lead's own work as it goes (``on_problem`` before its first solve of a problem), and
    ``on_warning`` the other processes' solves' warnings too, once they are gathered, each marked with
    its problem, seed and process. Each solve is the one a single process would make.
    """
    if seeds < 1:
        raise ProblemError(f"seeds must be at least 1, got {seeds}")
    group = distributed.group(resolve_device(device))
    if group is None:
        found = []
        for problem in problems:
            if on_problem is not None:
                on_problem(problem)
            found.append(compare(problem, seeds=seeds, device=device, threads=threads,
                                 reference_paths=reference_paths, command=command, on_log=on_log,
                                 on_warning=on_warning, on_reference=on_reference, progress=progress))
            if on_done is not None:
                on_done(found[-1])
        return found
    if not group.lead:
        on_log = on_warning = on_reference = progress = None
    with distributed.each_alone():
        refs = _dealt(group, [functools.partial(_reference, problem, reference_paths, on_reference, progress)
                              for problem in problems])
        announced: list[int] = []

        def solving(i: int, seed: int) -> SolveResult:
            if group.lead and on_problem is not None and announced[-1:] != [i]:
                announced.append(i)
                on_problem(problems[i])  # before the lead's first solve of each problem
            return _solve(problems[i], seed, refs[i], device, threads, on_log, on_warning)

        tasks = [(i, seed) for i in range(len(problems)) for seed in range(seeds)]
        # the trained models stay where they were trained: only the numbers travel between processes
        runs = _dealt(group, [functools.partial(solving, i, seed) for i, seed in tasks],
                      portable=lambda run: replace(run, solution=None))
    if on_warning is not None:  # the lead's: said as they came; the others' went nowhere (QA): said now, marked
        for j, ((i, seed), run) in enumerate(zip(tasks, runs)):
            if j % group.size != group.rank:
                for text in run.warnings:
                    on_warning(f"{problems[i].name}, seed {seed} (process {j % group.size}): {text}")
    found = [_comparison(problem, runs[i * seeds:(i + 1) * seeds], refs[i], device, seeds, command, group.size)
             for i, problem in enumerate(problems)]
    if group.lead and on_done is not None:
        for comparison in found:
            on_done(comparison)
    return found


def _dealt(group: distributed.Group, tasks: list[Callable[[], Any]],
           portable: Callable[[Any], Any] = lambda value: value) -> list[Any]:
    """The tasks' results in order, task j run by process j mod K; the first failure (in task order) is
    raised on every process. Results cross to the other processes as ``portable(result)``; each process
    keeps its own whole."""
    mine = {j: _attempt(task) for j, task in enumerate(tasks) if j % group.size == group.rank}
    results: dict[int, tuple[bool, Any]] = {}
    for part in group.all_gather({j: (done, portable(value) if done else value) for j, (done, value) in mine.items()}):
        results.update(part)
    results.update(mine)
    for j in range(len(tasks)):
        done, value = results[j]
        if not done:
            raise value
    return [results[j][1] for j in range(len(tasks))]


def _attempt(task: Callable[[], Any]) -> tuple[bool, Any]:
    try:
        return True, task()
    except Exception as exc:  # noqa: BLE001 - raised again on every process, in task order
        return False, exc
