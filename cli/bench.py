"""`bsde bench`: how fast, how accurate per second, and how far in d the solver goes on this machine."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from .common import (DeviceOption, JsonOption, ThreadsOption, command_line, emit_json, err, fail, guarded, out, path_value,
                     print_table)

if TYPE_CHECKING:
    from bsde.bench import BenchOptions, BenchReport


def _dims(text: str | None) -> tuple[int, ...] | None:
    if text is None:
        return None
    try:
        dims = tuple(int(part) for part in text.split(","))  # an empty entry (10,,100) is an error too
    except ValueError:
        raise typer.BadParameter(f"expected comma-separated integers such as 10,100,1000, got '{text}'",
                                 param_hint="'--dims'") from None
    if not dims or any(d < 1 for d in dims):
        raise typer.BadParameter(f"expected positive dimensions, got '{text}'", param_hint="'--dims'")
    return dims


def run_bench(options: BenchOptions, **kwargs: Any) -> BenchReport:
    """:func:`bsde.bench.run_bench`, imported (with torch) only when a bench runs."""
    from bsde.bench import run_bench as run

    return run(options, **kwargs)


def _print(report: BenchReport) -> None:
    from bsde.bench.report import machine_lines, tables

    for key, value in machine_lines(report):
        out.print(f"{key}: {value}", markup=False)
    for table in tables(report):
        rich_table = Table(*table.columns, title=table.title, title_justify="left", caption="\n".join(table.notes),
                           caption_justify="left")
        for row in table.rows:
            rich_table.add_row(*row)
        print_table(rich_table)  # a pipe or file gets whole rows rather than folded cells


@guarded
def bench(
    ctx: typer.Context,
    quick: Annotated[bool, typer.Option("--quick", help="Tiny iteration counts, dims 10,100, 1 seed (for tests).")] = False,
    device: DeviceOption = "auto",
    dims: Annotated[str | None, typer.Option(
        help="Dimensions of the scale study, comma-separated (default 10,100,1000,10000; with --quick 10,100).",
        metavar="D,D,...")] = None,
    seeds: Annotated[int | None, typer.Option(
        min=1, help="Seeds of the time-to-accuracy runs (default 5; with --quick 1).")] = None,
    threads: ThreadsOption = None,
    only: Annotated[str | None, typer.Option(
        help="Run only these sections, comma-separated: startup, speed, loop, profile, accuracy, scale "
             "(default: all).", metavar="S,S,...")] = None,
    json_: JsonOption = False,
    folder: Annotated[Path, typer.Option("--out", parser=path_value, help="Folder for bench.json and bench.md (created if needed).",
                                         metavar="DIR")] = Path("results"),
) -> None:
    """Benchmark speed (vs the per-step loop and the TensorFlow peer), time to accuracy and scale in d.

    Progress goes to stderr, tables (or one JSON object with --json) to stdout; DIR/bench.json and
    DIR/bench.md record the machine, the versions, the command and every table. Exits 1 when the
    per-step loop does not reproduce the batched networks' forward pass.
    """
    from bsde.bench import BenchOptions
    from bsde.bench.report import check_bench_folder, to_markdown
    from bsde.io import check_writable, write_json_atomic, write_text_atomic
    from bsde.runtime import resolve_device

    sections = None if only is None else tuple(part.strip() for part in only.split(",") if part.strip())
    options = BenchOptions(device=device, dims=_dims(dims), seeds=seeds, threads=threads, quick=quick, only=sections)
    resolve_device(device)  # a bad device is bad input: fail before any work
    check_writable(folder / "bench.json")
    check_bench_folder(folder)  # a bench.json or bench.md of someone else's is not replaced
    start = time.perf_counter()

    def progress(text: str) -> None:
        err.print(f"[{time.perf_counter() - start:6.1f} s] {text}", markup=False)

    report = run_bench(options, command=command_line(ctx),
                       progress=progress)
    data = report.to_dict()
    write_json_atomic(folder / "bench.json", data)
    write_text_atomic(folder / "bench.md", to_markdown(report))
    err.print(f"wrote {folder / 'bench.json'} and {folder / 'bench.md'}", markup=False)
    if json_:
        emit_json(data)
    else:
        _print(report)
    if not report.checks_passed:
        fail("the per-step networks do not reproduce the batched networks' forward pass", 1)
