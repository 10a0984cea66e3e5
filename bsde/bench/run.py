"""Run every measurement of ``bsde bench`` into one :class:`BenchReport` (see :mod:`bsde.bench`). Never prints."""

from __future__ import annotations

import datetime
import os
import platform
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy
import torch

import bsde
from bsde.bench.accuracy import TARGETS, AccuracyResult, Startup, measure_startup, time_to_accuracy
from bsde.bench.cases import (FULL, QUICK, SPEED_CASES, Effort, LoopComparison, ProfileRow, Progress, SpeedResult,
                              compare_loops, measure_speed, profile_step)
from bsde.bench.worker import ScaleFit, ScaleResult, fit, run_case
from bsde.compiled import CompileError
from bsde.errors import BSDEError
from bsde.runtime import available_cores, cpu_model, proc_field, resolve_device, set_threads

#: the scale study's (problem, dtype) cases; dtype None: the problem's own for the device (float64 on CPU)
SCALE_CASES = (("hjb", None), ("hjb", "float32"), ("allen_cahn", None))
DEFAULT_DIMS = (10, 100, 1000, 10000)
#: what a bench can measure, in the order it runs (accuracy needs startup, and takes it along)
SECTIONS = ("startup", "speed", "loop", "profile", "accuracy", "scale")
QUICK_DIMS = (10, 100)


@dataclass(frozen=True)
class BenchOptions:
    """What to run. ``dims``/``seeds`` None: the defaults of the mode (quick: dims 10, 100 and 1 seed);
    ``only`` None: every section of :data:`SECTIONS`."""

    device: str = "auto"
    dims: tuple[int, ...] | None = None
    seeds: int | None = None
    threads: int | None = None
    quick: bool = False
    only: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if self.dims is not None and (not self.dims or any(d < 1 for d in self.dims)):
            raise BSDEError(f"dims must be positive integers, got {list(self.dims)}")
        if self.seeds is not None and self.seeds < 1:
            raise BSDEError(f"seeds must be at least 1, got {self.seeds}")
        unknown = [name for name in self.only or () if name not in SECTIONS]
        if unknown or self.only == ():
            raise BSDEError(f"unknown bench section {', '.join(map(repr, unknown)) or '(none given)'}; "
                            f"choose from {', '.join(SECTIONS)}")

    @property
    def sections(self) -> tuple[str, ...]:
        """The sections to run: ``only`` (with startup where accuracy needs it), else all."""
        chosen = set(self.only or SECTIONS) | ({"startup"} if self.only and "accuracy" in self.only else set())
        return tuple(name for name in SECTIONS if name in chosen)

    @property
    def effort(self) -> Effort:
        return QUICK if self.quick else FULL

    @property
    def scale_dims(self) -> tuple[int, ...]:
        return self.dims if self.dims is not None else (QUICK_DIMS if self.quick else DEFAULT_DIMS)

    @property
    def seed_count(self) -> int:
        return self.seeds if self.seeds is not None else (1 if self.quick else 5)


@dataclass
class BenchReport:
    """Everything ``bsde bench`` measured, with the machine and the command that produced it."""

    machine: dict[str, Any]
    command: str
    options: dict[str, Any]
    startup: Startup | None
    speed: list[SpeedResult] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # cases not measured, with why
    loop: LoopComparison | None = None
    profile_case: str = ""
    profile: list[ProfileRow] = field(default_factory=list)
    accuracy: list[AccuracyResult] = field(default_factory=list)
    scale: list[ScaleResult] = field(default_factory=list)
    scale_fit: list[ScaleFit] = field(default_factory=list)
    wall_s: float = 0.0

    @property
    def checks_passed(self) -> bool:
        """The one hard check: the per-step loop computes what the batched networks compute."""
        return self.loop is None or self.loop.agree

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready, with the derived numbers (fractions of peak, seed counts) spelled out."""
        data = asdict(self)
        if self.startup is not None:
            data["startup"]["one_time_s"] = self.startup.one_time_s
        for row, result in zip(data["speed"], self.speed):
            row.update(matmul_fraction=result.matmul_fraction)
        if self.loop is not None:
            data["loop"]["agree"] = self.loop.agree
        for row, result in zip(data["accuracy"], self.accuracy):
            row.update(seeds=len(result.runs), within_tolerance=result.within_tolerance,
                       within_time=result.within_time, within_both=result.within_both)
        data["checks_passed"] = self.checks_passed
        return data


def _memory_gib() -> float | None:
    total = proc_field("/proc/meminfo", "MemTotal")  # "24681012 kB"
    return None if total is None else int(total.split()[0]) / 2**20


def machine_info(device: torch.device) -> dict[str, Any]:
    """CPU, cores, memory, accelerator, library versions, torch threads and the date (UTC)."""
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else None
    return {
        "cpu": cpu_model(), "logical_cores": os.cpu_count(), "available_cores": available_cores(),
        "memory_gib": _memory_gib(), "device": str(device), "gpu": gpu, "platform": platform.platform(),
        "python": platform.python_version(), "torch": torch.__version__, "numpy": numpy.__version__,
        "bsde": bsde.__version__, "torch_threads": torch.get_num_threads(),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def run_bench(options: BenchOptions, *, command: str = "", progress: Progress | None = None) -> BenchReport:
    """Run every measurement of ``options``; ``progress(text)`` hears what starts next.

    Raises:
        BSDEError: bad device or thread count (before any measurement).
    """
    say = progress or (lambda text: None)
    start = time.perf_counter()
    threads = set_threads(options.threads)
    device = resolve_device(options.device)
    effort, sections = options.effort, options.sections
    if "startup" in sections:
        say("start-up of a fresh interpreter (import bsde.solve) and the one-time cost of its first solve")
    report = BenchReport(machine_info(device), command or f"python {' '.join(sys.argv)}",
                         {**asdict(options), "dims": list(options.scale_dims), "seeds": options.seed_count,
                          "threads": threads, "effort": asdict(effort), "sections": list(sections)},
                         measure_startup(device, threads) if "startup" in sections else None)
    peaks: dict[tuple[torch.dtype, bool], float] = {}  # by dtype and TF32
    for case in SPEED_CASES if "speed" in sections else ():
        if case.compiled and not effort.compiled_cases:
            report.skipped.append(f"{case.label}: not in this mode (compiling takes tens of seconds)")
            continue
        say(f"speed: {case.label}" + (" (compiles first)" if case.compiled else ""))
        try:
            report.speed.append(measure_speed(case, device, effort, peaks))
        except CompileError as exc:
            report.skipped.append(f"{case.label}: {exc}")
    if "loop" in sections:
        say("batched networks against the per-step loop")
        report.loop = compare_loops(device, effort)
    if "profile" in sections:
        say("profile of one iteration (torch.profiler)")
        report.profile_case, report.profile = profile_step(device, effort)
    for name in TARGETS if "accuracy" in sections else ():
        report.accuracy.append(time_to_accuracy(name, device, threads, options.seed_count, effort, report.startup,
                                                say))
    for name, dtype in SCALE_CASES if "scale" in sections else ():
        cases = []
        for dim in options.scale_dims:
            say(f"scale: {name} d={dim}{' ' + dtype if dtype else ''} (subprocess)")
            cases.append(run_case(name, dim, device, threads, effort.scale_warmup, effort.scale_iterations, dtype))
        report.scale += cases
        report.scale_fit.append(fit(name, cases))
    report.wall_s = time.perf_counter() - start
    return report
