"""`bsde solve`: train the deep BSDE solver on one problem and report y0."""

from __future__ import annotations

from typing import Annotated

import typer

from bsde.runtime import resolve_device
from bsde.solve import SolveResult
from bsde.solve import solve as solve_problem
from bsde.trainer import LogEntry

from .common import (DeviceOption, JsonOption, SeedOption, SetOption, ThreadsOption, emit_json, err, fmt,
                     guarded, load, out)


def _progress(total: int):
    def on_log(entry: LogEntry) -> None:
        err.print(f"  iter {entry.iteration:>6}/{total}  loss {entry.loss:.4e}  y0 {entry.y0:.6g}  "
                  f"{entry.elapsed_s:7.1f} s", markup=False)
    return on_log


def report(result: SolveResult) -> None:
    """The human summary of a solve, on stdout."""
    out.print(f"{result.problem} ({result.kind}, dim {result.dim})", markup=False)
    out.print(f"  y0         {result.y0:.6g}", markup=False)
    if result.reference is not None:
        out.print(f"  reference  {result.reference:.6g}  ({result.reference_source or 'no source'})", markup=False)
        out.print(f"  rel. error {100 * result.rel_error:.3f} %", markup=False)
    out.print(f"  baseline   {result.baseline:.6g} +- {result.baseline_stderr:.2g}  (driver-free e^(-rT) E g(X_T))",
              markup=False)
    out.print(f"  {result.iterations} iterations in {result.train_s:.1f} s ({result.iterations_per_s:.0f} it/s), "
              f"wall {result.wall_s:.1f} s on {result.device}, {result.dtype}, {result.threads} threads, "
              f"seed {result.seed}", markup=False)


@guarded
def solve(
    problem: Annotated[str, typer.Argument(help="Shipped problem name or path to a YAML file.")],
    set_: SetOption = None,
    preset: Annotated[str | None, typer.Option(help="Named solver overlay from the problem's presets.")] = None,
    seed: SeedOption = 0,
    device: DeviceOption = "auto",
    threads: ThreadsOption = None,
    json_: JsonOption = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress lines.")] = False,
) -> None:
    """Solve PROBLEM; print y0 beside its reference and the driver-free baseline."""
    loaded = load(problem, set_, preset)
    resolve_device(device)  # a bad device is bad input: fail before any work
    on_log = None if quiet else _progress(loaded.solver.iterations)
    if not quiet:
        eq = loaded.equation
        err.print(f"solving {loaded.name}: {eq.kind}, dim {eq.dim}, {loaded.solver.time_steps} steps, "
                  f"{loaded.solver.iterations} iterations", markup=False)
    result = solve_problem(loaded, seed=seed, device=device, threads=threads, on_log=on_log)
    for warning in result.warnings:
        err.print(f"warning: {warning}", markup=False)
    if json_:
        emit_json(result.to_dict(with_history=False) | {"history": [vars(h) for h in result.history]})
    else:
        report(result)
