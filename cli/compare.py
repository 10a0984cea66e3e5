"""`bsde compare`: several seeded solves per problem against the reference; reports in a folder."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from bsde.errors import ProblemError

from .common import (DeviceOption, JsonOption, NprocOption, SetOption, ThreadsOption, command_line, emit_json, err,
                     guarded, launch_workers, load, path_value, print_log_entry, print_table, progress_lines,
                     refuse_overwriting)
from .reference import PathsOption

if TYPE_CHECKING:
    from bsde.compare import Comparison
    from bsde.problem import Problem
    from bsde.trainer import LogEntry


def _log(total: dict[str, int]):
    def on_log(seed: int, entry: LogEntry) -> None:
        print_log_entry(entry, total["iterations"], prefix=f"seed {seed}  ")
    return on_log


def _source(problem: str, out_dir: Path) -> str:
    """What a report records of its problem: a shipped name or an installed kind as given, a file as its path from
    the report's folder (the same however the command spelled it, from wherever it ran)."""
    from bsde.problem import shipped_problems

    if problem in shipped_problems() or not Path(problem).expanduser().is_file():
        return problem
    return os.path.relpath(Path(problem).expanduser().resolve(), out_dir.expanduser().resolve())


def _tolerance(value: float | None) -> float | None:
    """--fail-above: a number >= 0 (NaN would compare false with every error, so nothing could fail)."""
    if value is not None and not value >= 0.0:
        raise typer.BadParameter(f"expected a number >= 0, got {value:g}")
    return value


@guarded
def compare(
    ctx: typer.Context,
    problems: Annotated[list[str] | None, typer.Argument(
        help="Shipped problem names or YAML paths.", show_default=False, metavar="PROBLEM")] = None,
    all_: Annotated[bool, typer.Option("--all", help="Every shipped problem.")] = False,
    seeds: Annotated[int, typer.Option(min=1, help="Solves per problem, with seeds 0..K-1.", metavar="K")] = 3,
    set_: SetOption = None,
    preset: Annotated[str | None, typer.Option(help="Named solver overlay from each problem's presets.")] = None,
    out_dir: Annotated[Path, typer.Option(
        "--out", parser=path_value, help="Folder for <problem>.json/.md/.png and README.md (created if missing; files bsde did "
        "not write there are never replaced).",
        metavar="DIR")] = Path("results"),
    fail_above: Annotated[float | None, typer.Option(
        callback=_tolerance, help="Exit 1 (after writing the reports) when a relative error of mean y0 is above TOL.",
        metavar="TOL")] = None,
    device: DeviceOption = "auto",
    threads: ThreadsOption = None,
    nproc: NprocOption = 1,
    reference_paths: PathsOption = None,
    json_: JsonOption = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress lines.")] = False,
) -> None:
    """Solve each PROBLEM with K seeds, compare y0 with the reference, write reports to DIR.

    The reference is ours (`bsde reference`, method auto); a published value in the problem
    file is shown beside it. DIR/README.md is rebuilt from every report JSON in DIR. Two problems of
    the same name get reports p and p-2 (README is the index's: a problem of that name gets README-2), as
    does a p whose DIR/p.json reports another problem file; a rerun updates its own report.
    A README.md or report file in DIR that bsde did not write is never replaced: exit 2 before any work.

    --nproc K (or torchrun) deals the references and the solves (one per problem and seed) out to K
    processes, each solving alone; process 0 writes the reports. Each solve is the same as alone.
    """
    from bsde import distributed
    from bsde.compare import compare_all  # the solver (torch) and matplotlib load only to compare
    from bsde.io import check_writable
    from bsde.problem import shipped_problems
    from bsde.report import COLUMNS, cells, check_folder, named, report_names, write_reports
    from bsde.runtime import resolve_device

    names = list(dict.fromkeys([*(sorted(shipped_problems()) if all_ else []), *(problems or [])]))
    if not names:
        raise ProblemError("no problem given: name one or more problems, or use --all")
    loaded = [load(name, set_, preset) for name in names]
    dev = resolve_device(device)  # bad input fails before any work
    # unique within the run and beside the folder's reports of other problems, never the index's
    sources = [_source(name, out_dir) for name in names]
    report_of = report_names([problem.name for problem in loaded], sources, out_dir)
    reports = [out_dir / f"{report}{suffix}" for report in report_of for suffix in (".json", ".md", ".png")]
    refuse_overwriting(names, {"--out": [*reports, out_dir / "README.md"]})
    for report in report_of:
        check_writable(out_dir / f"{report}.json")
    check_folder(out_dir, report_of)  # nothing bsde did not write is replaced
    next_report = iter(report_of)  # the comparisons come back in the order of the problems
    if nproc > 1:
        distributed.check_gpus(dev, nproc)
        launch_workers(ctx, nproc)
    for name, problem, report in zip(names, loaded, report_of):  # after every check: bad input is one line
        if report != problem.name:
            why = ("the index's name" if problem.name.casefold() == "readme"
                   else "the name of another problem of this run" if sum(
                       other.name.casefold() == problem.name.casefold() for other in loaded) > 1
                   else f"the name of another problem's report in {out_dir}")
            err.print(f"note: {name}: its report is {report}, since '{problem.name}' is {why}", markup=False)
    report_by_problem = {id(problem): report for problem, report in zip(loaded, report_of)}
    # each report records its problem's source: a rerun finds its own report by it
    source_of = dict(zip(report_of, sources))
    # a worker records the K that started it; the threads and seeds always, since they decide the digits
    from bsde.runtime import thread_count

    command = command_line(ctx, nproc=max(nproc, distributed.world()), threads=thread_count(threads),
                           keep=("threads", "seeds"))
    summaries = []
    total = {"iterations": 0}  # of the problem being solved, for the progress lines

    def starting(problem: Problem) -> None:
        eq = problem.equation
        total["iterations"] = problem.solver.iterations
        if not quiet:
            err.print(f"comparing {report_by_problem[id(problem)]}: {eq.kind}, dim {eq.dim}, {seeds} seeds x "
                      f"{problem.solver.iterations} iterations", markup=False)

    def done(result: Comparison) -> None:
        report = next(next_report)
        data = named(result.to_dict(), report, source_of.get(report))
        earlier = out_dir / f"{report}.json"
        replaced = earlier.exists()
        written = write_reports(data, out_dir)
        if replaced:  # a rerun of the same problem file: its earlier report (other settings, maybe) is gone
            err.print(f"note: replaced the earlier report {earlier} (and its .md and .png) with this run's",
                      markup=False)
        if not quiet:
            err.print(f"  wrote {', '.join(str(path) for path in written)}", markup=False)
        summaries.append(data["summary"])

    compare_all(
        loaded, seeds=seeds, device=device, threads=threads, reference_paths=reference_paths, command=command,
        on_log=None if quiet else _log(total),
        on_warning=lambda text: err.print(f"warning: {text}", markup=False),
        on_reference=None if quiet else (lambda name: err.print(f"  reference by {name}", markup=False)),
        progress=None if quiet else progress_lines("reference"), on_problem=starting, on_done=done,
    )
    failed = [] if fail_above is None else [
        s for s in summaries if s["rel_error"] is None or s["rel_error"] > fail_above]  # no reference: not a pass
    if json_:
        emit_json({"out": str(out_dir), "fail_above": fail_above, "failed": [s["report"] for s in failed],
                   "problems": summaries})
    else:
        table = Table(*COLUMNS, title=f"deep BSDE against the reference (reports in {out_dir})")
        for summary in summaries:
            table.add_row(*cells(summary))
        # a pipe or file gets the whole table, not one squeezed to 80 columns
        print_table(table)
    for summary in failed:
        if summary["rel_error"] is not None:
            why = f"rel. error {summary['rel_error']:.3g} above --fail-above {fail_above:g}"
        elif summary["reference"] == 0:
            why = (f"the reference is 0, so no relative error to hold to --fail-above {fail_above:g} (abs. error "
                   f"{abs(summary['y0_mean']):.3g})")
        else:
            why = f"no reference to hold it to --fail-above {fail_above:g}"
        err.print(f"check failed: {summary['report']}: {why}", markup=False)
    if failed:
        raise typer.Exit(1)
