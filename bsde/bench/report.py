"""A :class:`~bsde.bench.BenchReport` as plain tables of strings, and as Markdown (``bench.md``).

The same :func:`tables` feed the Markdown file and the CLI's rich tables, so the two never differ.
"""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass, field
from pathlib import Path

from bsde.bench.accuracy import CLI_REPEATS, CLI_TARGET_S
from bsde.bench.cases import PEER_MS_PER_ITERATION
from bsde.bench.run import BenchReport
from bsde.io import OutputError

#: the first line of bench.md, and the keys every bench.json has: what marks them as bsde bench's own
TITLE = "# bsde bench"
REPORT_KEYS = ("machine", "command", "options")


@dataclass(frozen=True)
class TextTable:
    title: str
    columns: list[str]
    rows: list[list[str]]
    notes: list[str] = field(default_factory=list)


def _num(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}g}"


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{1e3 * seconds:.3g}"


def _pct(fraction: float | None, digits: int = 3) -> str:
    return "-" if fraction is None else f"{100 * fraction:.{digits}g} %"


def _mark(flag: bool) -> str:
    return "yes" if flag else "no"


def speed_table(report: BenchReport) -> TextTable:
    rows = [[r.case, str(r.time_steps), str(r.parameters), _ms(r.timing.median_s), _ms(r.timing.iqr_s),
             _ms(r.floor.median_s), f"{r.floor_ratio.median_s:.3g}", f"{r.floor_ratio.q25_s:.3g}-{r.floor_ratio.q75_s:.3g}",
             f"{r.gflops:.3g}", f"{r.floor_gflops:.3g}", f"{_pct(r.matmul_fraction)} of {r.matmul_peak_gflops:.3g}",
             f"{r.warmup_s:.3g}", _num(r.peer_ms), _num(r.peer_ratio)]
            for r in report.speed]
    size = report.options["effort"]["matmul_size"]
    effort = report.options["effort"]
    notes = [
        "ms/it: median over timed blocks of the trainer's own iterations (after the warm-up iterations, whose "
        "total, compilation included, is 'warm-up s'). Floor: the same iteration's network matmuls alone (forward, "
        "weight and input gradients, as batched matmuls of the networks' shapes and dtype), timed in blocks "
        f"alternating with the iteration blocks ({effort['blocks']} of each, {effort['block']} calls per block); "
        "x floor is the median (and quartiles) of iteration block / the floor block before it.",
        f"GFLOP/s counts the step networks' matmuls only: 2 B (N-1) (3 sum_l w_l w_(l+1) - w_0 w_1) per "
        f"iteration (forward 2x, backward 4x, but no input gradient for the first layer); the n^3 peak is a "
        f"{size}^3 torch.matmul in the same run and dtype.",
        "Peer: the reference TensorFlow implementation (frankhan91/DeepBSDE), float64, 2-core machine, after "
        f"its graph trace: {', '.join(f'{k} {v:g} ms' for k, v in PEER_MS_PER_ITERATION.items())} "
        "(benchmarks/peer_deepbsde.py remeasures it); peer/ours > 1 means faster than the peer.",
        *[f"Not measured: {text}" for text in report.skipped],
    ]
    return TextTable(
        "Per-iteration speed (sample paths + forward + backward + Adam, the trainer's loop) against the matmul floor",
        ["case", "steps", "params", "ms/it", "IQR ms", "floor ms", "x floor", "x floor IQR", "GFLOP/s",
         "floor GFLOP/s", "of n^3 matmul peak", "warm-up s", "peer ms/it", "peer/ours"],
        rows, notes,
    )


def profile_table(report: BenchReport) -> TextTable:
    rows = [[r.op, f"{r.ms_per_iteration:.3f}", _pct(r.share), f"{r.calls_per_iteration:.3g}"] for r in report.profile]
    return TextTable(
        f"Where an iteration goes ({report.profile_case}, torch.profiler self time (on CUDA the kernels' device "
        "time), top operators)",
        ["operator", "ms/it", "share", "calls/it"], rows,
        ["aten::bmm is the step networks' batched matmuls (3 forward, 5 backward per iteration): the floor that "
         "the matmul peaks above allow; the rest is batch norm, Adam, path sampling and small elementwise kernels. "
         "The profiler adds overhead, so the total exceeds the timed ms/it."],
    )


def loop_table(report: BenchReport) -> TextTable:
    loop = report.loop
    if loop is None:
        return TextTable("Batched vs per-step networks", ["layout"], [])
    rows = [["batched (StackedGradientNets)", _ms(loop.batched.median_s), _ms(loop.batched.iqr_s), "1"],
            ["per-step loop (PerStepGradientNets)", _ms(loop.per_step.median_s), _ms(loop.per_step.iqr_s),
             f"{loop.speedup:.3g}"]]
    verdict = "agree" if loop.agree else "DISAGREE"
    return TextTable(
        f"Batched vs per-step networks: {loop.case}", ["layout", "ms/it", "IQR ms", "per-step / batched"], rows,
        [f"Same weights, same full training step (sample + forward + backward + Adam), timed on alternating blocks. "
         f"Forward outputs {verdict}: max |difference| {loop.max_abs_difference:.3g} (tolerance {loop.tolerance:.3g})."],
    )


def accuracy_tables(report: BenchReport) -> list[TextTable]:
    summary, seeds = [], []
    for acc in report.accuracy:
        errors = [r.rel_error for r in acc.runs if r.rel_error is not None]
        totals = [r.total_s for r in acc.runs]
        n = len(acc.runs)
        summary.append([acc.problem, acc.preset or "(default)", str(acc.iterations),
                        f"{acc.reference:.6g} ({acc.reference_method})",
                        f"{_pct(acc.target.rel_error, 2)} in {acc.target.seconds:g} s",
                        f"{acc.within_tolerance}/{n}", f"{acc.within_time}/{n}", f"{acc.within_both}/{n}",
                        _pct(statistics.median(errors) if errors else None), f"{statistics.median(totals):.3g}"])
        for r in acc.runs:
            seeds.append([acc.problem, str(r.seed), _num(r.y0, 6), _pct(r.rel_error), f"{r.wall_s:.3g}",
                          f"{r.total_s:.3g}", f"{r.train_s:.3g}", _mark(r.within_tolerance), _mark(r.within_time),
                          r.error or ""])
    start = report.startup
    note = (f"Wall time runs from before load_problem to the result, in process; total adds the start-up of a fresh "
            f"`python -c \"import bsde.solve\"` ({start.process_s:.3g} s, of which the import {start.import_s:.3g} s) "
            f"and the one-time cost of a first solve in a process ({start.one_time_s:.3g} s: a small solve took "
            f"{_num(start.first_solve_s)} s first, {_num(start.second_solve_s)} s again). "
            "Reference: the reference engine (bsde.reference).")
    return [
        TextTable("Time to accuracy", ["problem", "preset", "iterations", "reference", "target", "within tol.",
                                       "within time", "both", "median rel. error", "median total s"], summary, [note]),
        TextTable("Time to accuracy, per seed", ["problem", "seed", "y0", "rel. error", "wall s", "total s", "train s",
                                                 "tol.", "time", "error"], seeds),
    ]


def scale_tables(report: BenchReport) -> list[TextTable]:
    rows = [[r.problem, r.dtype or "-", str(r.dim), ",".join(map(str, r.hidden)),
             "-" if r.parameters is None else str(r.parameters),
             _num(r.flops_per_iteration and r.flops_per_iteration / 1e9), _ms(r.timing and r.timing.median_s),
             _ms(r.timing and r.timing.iqr_s), _ms(r.floor and r.floor.median_s),
             _num(r.floor_ratio and r.floor_ratio.median_s), _num(r.peak_rss_mb, 4), _num(r.cuda_peak_mb, 4),
             _num(r.estimated_mb, 4), r.error or ""]
            for r in report.scale]
    effort = report.options["effort"]
    fits = [[f.problem, f.dtype or "-", ",".join(map(str, f.dims)), _num(f.time_exponent),
             ", ".join(f"{x:.3g}" for x in f.time_ratio_per_10x) or "-", _num(f.memory_exponent),
             _num(f.parameter_exponent)] for f in report.scale_fit]
    return [
        TextTable("Scale (one subprocess per case)", ["problem", "dtype", "d", "hidden", "params", "GFLOP/it", "ms/it",
                                                      "IQR ms", "floor ms", "x floor", "peak RSS MB", "CUDA peak MB",
                                                      "estimate MB", "error"], rows,
                  [f"{effort['scale_warmup']} warm-up + {effort['scale_iterations']} timed iterations per case; "
                   "plain paths (no steering by the learned control); the floor (as in the speed table) "
                   "alternates with the iterations; "
                   "peak RSS is the child's VmHWM (interpreter and torch included); estimate: bsde.memory. "
                   "On CPU each child keeps freed memory for reuse as solve does (bsde.runtime.keep_freed_memory): "
                   "blocks under 32 MB, and larger ones too in a child that needs 256 MB or more."]),
        TextTable("Growth with d", ["problem", "dtype", "dims", "time ~ d^a", "time ratio per 10x d", "memory ~ d^a",
                                    "params ~ d^a"], fits,
                  ["Exponents are least-squares slopes in log-log; memory is peak memory above the smallest case's."]),
    ]


def startup_table(report: BenchReport) -> TextTable:
    start = report.startup
    rows = [] if start is None else [
        ["fresh `python -c \"import bsde.solve\"`, whole process", f"{start.process_s:.3g}"],
        ["  of which the import", f"{start.import_s:.3g}"],
        ["first small solve in a fresh process", _num(start.first_solve_s)],
        ["the same solve again, same process", _num(start.second_solve_s)],
        ["one-time cost of a first solve (difference)", f"{start.one_time_s:.3g}"],
    ] + [[f"`bsde {args}`, whole process (goal {CLI_TARGET_S:g})", f"{seconds:.3g}"]
         for args, seconds in start.commands.items()]
    notes = ["The small solve: the 10-d HJB, 50 iterations, no reference (bsde.bench.accuracy.FIRST_SOLVE), "
             "on the bench's device and threads."]
    if start is not None and start.commands:
        cached = {True: "on disk", False: "not on disk: every start compiled the package's sources",
                  None: "not checked"}[start.bytecode_cached]
        notes.append(f"Each command: `python -m bsde.cli ...` in a fresh process, best of {CLI_REPEATS}; "
                     f"the package's compiled modules were {cached}.")
    return TextTable("Start-up", ["what", "s"], rows, notes)


def tables(report: BenchReport) -> list[TextTable]:
    """The tables of the sections the bench ran."""
    sections = report.options.get("sections") or ["startup", "speed", "loop", "profile", "accuracy", "scale"]
    made = {"startup": lambda: [startup_table(report)], "speed": lambda: [speed_table(report)],
            "profile": lambda: [profile_table(report)], "loop": lambda: [loop_table(report)],
            "accuracy": lambda: accuracy_tables(report), "scale": lambda: scale_tables(report)}
    order = ("startup", "speed", "profile", "loop", "accuracy", "scale")
    return [table for name in order if name in sections for table in made[name]()]


def machine_lines(report: BenchReport) -> list[tuple[str, str]]:
    m = report.machine
    memory = "-" if m["memory_gib"] is None else f"{m['memory_gib']:.1f} GiB"
    return [
        ("machine", f"{m['cpu']}, {m['logical_cores']} logical cores ({m['available_cores']} available), {memory}"),
        ("device", m["device"] + (f" ({m['gpu']})" if m["gpu"] else "")),
        ("versions", f"python {m['python']}, torch {m['torch']}, numpy {m['numpy']}, bsde {m['bsde']}"),
        ("torch threads", str(m["torch_threads"])),
        ("date", m["date"]),
        ("mode", "quick (tiny iteration counts: checks the tool, not the solver)" if report.options["quick"]
         else "full"),
        ("command", report.command),
        ("bench wall time", f"{report.wall_s:.1f} s"),
    ]


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def to_markdown(report: BenchReport) -> str:
    """``bench.md``: machine, command and every table."""
    lines = [TITLE, ""]
    lines += [f"- **{key}**: `{value}`" if key == "command" else f"- **{key}**: {value}"
              for key, value in machine_lines(report)]
    for table in tables(report):
        lines += ["", f"## {table.title}", "", "| " + " | ".join(map(_cell, table.columns)) + " |",
                  "|" + "---|" * len(table.columns)]
        lines += ["| " + " | ".join(map(_cell, row)) + " |" for row in table.rows]
        for note in table.notes:
            lines += ["", note]
    return "\n".join(lines) + "\n"


def check_bench_folder(folder: Path) -> None:
    """Refuse (:class:`OutputError`, naming the file) to replace a ``bench.json`` or ``bench.md`` in ``folder`` that
    bsde bench did not write (a rerun replaces its own)."""
    for name, ours in (("bench.json", _is_bench_json), ("bench.md", _is_bench_md)):
        path = Path(folder) / name
        if path.exists() and not (path.is_file() and ours(path)):
            raise OutputError(f"{path}: not written by bsde bench; not replacing it: move it away, or give another "
                              "folder (--out DIR)")


def _is_bench_json(path: Path) -> bool:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and all(key in data for key in REPORT_KEYS)


def _is_bench_md(path: Path) -> bool:
    try:
        with path.open(encoding="utf-8") as handle:
            return handle.readline().rstrip("\r\n") == TITLE
    except (OSError, ValueError):
        return False
