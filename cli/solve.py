"""`bsde solve`: train the deep BSDE solver on one problem and report y0."""

from __future__ import annotations

import shlex
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from bsde.errors import Interrupted, ProblemError

from .common import (DeviceOption, JsonOption, ProblemArgument, SeedOption, SetOption, ThreadsOption, command_line,
                     emit_json, err, fail, guarded, launch_workers, lead_process, load, note_z_term, out,
                     print_log_entry, path_value, progress_lines, refuse_overwriting, vector_text)
from .signals import StopRequest, Stopped, stop_on_signals

if TYPE_CHECKING:
    from bsde.problem import Problem
    from bsde.solve import SolveResult
    from bsde.trainer import LogEntry

RUN_PANEL = "Long runs"


class OnNaN(str, Enum):
    stop = "stop"
    rollback = "rollback"


def _progress(total: int, stop: StopRequest, quiet: bool):
    """Progress lines (unless quiet); the last validation tells ``stop`` that training is over."""
    def on_log(entry: LogEntry) -> None:
        if not quiet:
            print_log_entry(entry, total)
        if entry.iteration >= total:
            stop.training_over()
    return on_log


def report(result: SolveResult) -> None:
    """The human summary of a solve, on stdout."""
    out.print(f"{result.problem} ({result.kind}, dim {result.dim})", markup=False)
    estimate = f" +- {result.error_estimate:.2g} (estimated)" if result.error_estimate is not None else ""
    out.print(f"  y0         {result.y0:.6g}{estimate}", markup=False)
    out.print(f"  error est. {result.error_basis}", markup=False)
    if result.bound is not None:
        out.print(f"  {result.bound_side} bound {result.bound:.6g} +- {result.bound_stderr:.2g}  "
                  f"({result.bound_source}; deep BSDE y0 {result.y0_bsde:.6g})", markup=False)
    if result.reference is not None:
        if result.reference_ci95 is not None:
            spread = f" +- {(result.reference_ci95[1] - result.reference_ci95[0]) / 2:.2g} (95% CI)"
        elif result.reference_error_estimate is not None:
            spread = f" +- {result.reference_error_estimate:.2g} (its error estimate)"
        else:
            spread = f" +- {result.reference_stderr:.2g}" if result.reference_stderr is not None else ""
        out.print(f"  reference  {result.reference:.6g}{spread}  ({result.reference_source or 'no source'})",
                  markup=False)
        if result.rel_error is not None:
            out.print(f"  rel. error {100 * result.rel_error:.3f} %", markup=False)
        else:
            out.print(f"  abs. error {abs(result.y0 - result.reference):.3g}  (the reference is 0: no relative "
                      "error)", markup=False)
    elif result.no_reference is not None:
        out.print(f"  reference  none: {result.no_reference}", markup=False)
    if result.delta is not None:
        unchecked = ("; no error bar: from the trained Z_0, which can be off where y0 is right (`bsde reference "
                     "... --greeks` checks it)") if result.delta_stderr is None else ""
        out.print(f"  delta      {vector_text(result.delta)}  (grad u at x0{unchecked})", markup=False)
    if result.delta_stderr is not None:
        out.print(f"   +- s.e.   {vector_text(result.delta_stderr)}  ({result.greeks_stderr_basis})", markup=False)
    if result.gamma_diag is not None:
        out.print(f"  gamma_ii   {vector_text(result.gamma_diag)}  ({result.gamma_source})", markup=False)
    if result.gamma_diag_stderr is not None:
        out.print(f"   +- s.e.   {vector_text(result.gamma_diag_stderr)}  ({result.greeks_stderr_basis})", markup=False)
    if result.trained_under is not None:
        out.print(f"  trained    under {result.trained_under}", markup=False)
    if result.baseline is not None:
        under = " under that drift" if result.trained_under is not None else ""
        out.print(f"  baseline   {result.baseline:.6g} +- {result.baseline_stderr:.2g}  "
                  f"(driver-free E g(X_T){under}, times e^(-rT) where f = -r y)", markup=False)
    if result.zero_z_value is not None:
        apart = ""
        if result.reference is not None and result.reference != 0:  # QA: a reference on the Z = 0 value proves little
            apart = f"; {100 * abs(result.zero_z_value - result.reference) / abs(result.reference):.3g}% from the reference"
        out.print(f"  Z = 0      {result.zero_z_value:.6g}  (what a solver that learned no Z returns{apart})",
                  markup=False)
    processes = f" x {result.processes} processes" if result.processes > 1 else ""
    out.print(f"  {result.iterations} iterations in {result.train_s:.1f} s ({result.iterations_per_s:.0f} it/s), "
              f"wall {result.wall_s:.1f} s on {result.device}, {result.dtype}, {result.threads} "
              f"thread{'' if result.threads == 1 else 's'}{processes}, "
              f"seed {result.seed}", markup=False)


def processes() -> int:
    """How many processes this run has (torchrun's WORLD_SIZE; 1 alone)."""
    from bsde.distributed import world

    return world()


def resume_hint(ctx: typer.Context, folder: Path, nproc: int, machines: int | None = None) -> str:
    """The command that resumes this run from ``folder``: this one with --resume, on as many processes (--nproc);
    a run over several ``machines`` (torchrun's WORLD_SIZE above LOCAL_WORLD_SIZE) by the same torchrun launch,
    with process 0 on the machine that holds the checkpoint (``--nproc`` starts processes on one machine only)."""
    from bsde.distributed import local_world, world

    machines = machines if machines is not None else -(-world() // local_world())
    if machines > 1:
        line = command_line(ctx, checkpoint=None, resume=folder, nproc=1).removeprefix("bsde ")
        return (f"torchrun <the same options> -m bsde.cli {line}   (process 0 on this machine, which holds the "
                "checkpoint)")
    return command_line(ctx, checkpoint=None, resume=folder, nproc=max(nproc, world()))


def outputs(out_file: Path | None, plot: Path | None, save: Path | None, checkpoint: Path | None,
            resume: Path | None) -> dict[str, list[Path]]:
    """The files a solve may write, by option (to refuse any that is the problem file)."""
    from bsde.checkpoint import CHECKPOINT_FILE
    from bsde.solution import CONFIG_FILE, SOLUTION_FILE

    return {"--out": [out_file] if out_file else [], "--plot": [plot] if plot else [],
            "--save": [save / SOLUTION_FILE, save / CONFIG_FILE] if save else [],
            "--checkpoint": [checkpoint / CHECKPOINT_FILE] if checkpoint else [],
            "--resume": [resume / CHECKPOINT_FILE] if resume and not checkpoint else []}


def _stopped_now(exc: Stopped, folder: Path | None, hint: str) -> None:
    """A signal that no iteration would see: one line, exit 130 / 143."""
    when = "after training" if exc.after_training else "a second time, during training"
    kept = f"; the checkpoint in {shlex.quote(str(folder))} is kept, resume with: {hint}" if folder is not None else ""
    fail(f"interrupted by {exc.name} {when}{kept}", exc.exit_code)


def _stopped(stop: StopRequest, exc: Interrupted, folder: Path | None, hint: str) -> None:
    err.print(f"interrupted by {stop.name} after {exc.iteration} iterations", markup=False)
    if folder is None:
        err.print("no checkpoint was written (use --checkpoint DIR to make a run resumable)", markup=False)
    else:
        err.print(f"checkpoint written to {shlex.quote(str(folder))}; resume with:\n  {hint}", markup=False)
    raise typer.Exit(stop.exit_code)


@guarded
def solve(
    ctx: typer.Context,
    problem: ProblemArgument,
    set_: SetOption = None,
    preset: Annotated[str | None, typer.Option(help="Named solver overlay from the problem's presets.")] = None,
    seed: SeedOption = 0,
    device: DeviceOption = "auto",
    threads: ThreadsOption = None,
    nproc: Annotated[int, typer.Option(
        min=1, help="Train on K processes, data parallel over the batch (started through torchrun); the same "
                    "result as one process (solver.shards must be at least K).", metavar="K")] = 1,
    json_: JsonOption = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress lines.")] = False,
    no_reference: Annotated[bool, typer.Option(
        "--no-reference", help="Do not compute a reference with bsde.reference when the problem has none.")] = False,
    out_file: Annotated[Path | None, typer.Option(
        "--out", parser=path_value, help="Also write the JSON result (with history) to FILE, atomically; creates its folder. An "
                      "existing FILE is replaced only if it is a solve's JSON result.",
        metavar="FILE")] = None,
    checkpoint: Annotated[Path | None, typer.Option(
        parser=path_value, help="Keep a resumable checkpoint in DIR (rewritten atomically).", metavar="DIR",
        rich_help_panel=RUN_PANEL)] = None,
    checkpoint_every: Annotated[int | None, typer.Option(
        min=1, help="Iterations between checkpoints (default: solver.log_every).", rich_help_panel=RUN_PANEL)] = None,
    resume: Annotated[Path | None, typer.Option(
        parser=path_value, help="Continue the run checkpointed in DIR (same problem, settings, seed, device); keeps "
             "checkpointing there unless --checkpoint says otherwise.", metavar="DIR", rich_help_panel=RUN_PANEL)] = None,
    save: Annotated[Path | None, typer.Option(
        parser=path_value, help="Keep the trained solution in DIR (weights and resolved config) for `bsde eval DIR`; DIR must be new, "
             "empty, or hold a solution bsde saved.",
        metavar="DIR")] = None,
    plot: Annotated[Path | None, typer.Option(
        parser=path_value, help="With solver.region: draw u along the box's diagonal against reference values at 7 points, the corners among them (PNG; an "
             "existing FILE is replaced only if bsde drew it).",
        metavar="FILE")] = None,
    on_nan: Annotated[OnNaN, typer.Option(
        "--on-nan", help="On a non-finite loss: stop (exit 1), or roll back to the last validation point and "
                         "halve the learning rate (at most 5 times).", rich_help_panel=RUN_PANEL)] = OnNaN.stop,
) -> None:
    """Solve PROBLEM; print y0 beside its reference and the driver-free baseline.

    Without a reference value in the problem (or when --set changed the equation), a cheap one
    comes from the reference engine (see `bsde reference`) unless --no-reference is given.

    Ctrl-C or SIGTERM finishes the current iteration, writes the checkpoint (if --checkpoint or
    --resume is given), prints the command that resumes, and exits 130 or 143.

    --nproc K (or `torchrun --nproc-per-node K -m bsde.cli solve ...`, also across machines) splits
    each batch over K processes; process 0 prints and writes.
    """
    from bsde.distributed import check_gpus, process_device
    # the solver's modules (torch) load only to solve
    from bsde.io import check_replaceable, check_writable, is_bsde_png, is_solve_json
    from bsde.memory import check_fits
    from bsde.runtime import resolve_device
    from bsde.solve import solve as solve_problem

    loaded = load(problem, set_, preset, probe=False)
    dev = resolve_device(device)  # bad device or too big: fail before any output or work
    if nproc <= 1 or dev.type != "cuda":  # a launcher of CUDA workers keeps off the GPUs (a memory check makes a
        check_fits(loaded, process_device(dev))  # CUDA context, for the whole run): each worker checks its own GPU
    note_z_term(problem, loaded)
    folder = checkpoint if checkpoint is not None else resume
    if checkpoint_every is not None and folder is None:
        raise ProblemError(f"--checkpoint-every {checkpoint_every}: needs --checkpoint DIR (or --resume DIR)")
    refuse_overwriting([problem], outputs(out_file, plot, save, checkpoint, resume))
    if out_file is not None and lead_process():  # process 0 alone writes it (on its own node's file system)
        check_writable(check_replaceable(out_file, is_solve_json, "a solve's JSON result"))
    if nproc > 1 or processes() > 1:
        if loaded.solver.region is not None or save is not None or plot is not None:
            raise ProblemError("--nproc: solver.region, --save and --plot run in one process only (for now)")
    if nproc > 1:
        check_gpus(dev, nproc)
        if loaded.solver.compile:
            raise ProblemError("solver.compile: not in a data-parallel run (--nproc K); set solver.compile=false")
        if nproc > loaded.solver.shard_count():
            count = loaded.solver.shard_count()
            raise ProblemError(f"--nproc {nproc}: more processes than the {count} shard{'s' if count != 1 else ''} of "
                               "each batch; set solver.shards (a divisor of solver.batch_size) to at least that")
        launch_workers(ctx, nproc)
    if plot is not None:
        if loaded.solver.region is None:
            raise ProblemError(f"--plot {plot}: needs solver.region (u over a box), e.g. "
                               "--set 'solver.region={low: 80, high: 120}'")
        check_writable(check_replaceable(plot, is_bsde_png, "a plot"))
    if save is not None:
        from bsde.solution import check_save_folder

        check_save_folder(save, loaded)
    if not quiet:
        eq = loaded.equation
        err.print(f"solving {loaded.name}: {eq.kind}, dim {eq.dim}, {loaded.solver.time_steps} steps, "
                  f"{loaded.solver.iterations} iterations" + (f", resuming from {resume}" if resume else ""),
                  markup=False)
    hint = resume_hint(ctx, folder, nproc) if folder else ""
    from bsde.runtime import set_threads

    set_threads(threads)  # the command's, not only the solve's: --plot's reference checks run after it
    with stop_on_signals() as stop:  # to the end: a signal after training ends the command too
        try:
            try:
                result = solve_problem(
                    loaded, seed=seed, device=device, threads=threads,
                    on_log=_progress(loaded.solver.iterations, stop, quiet),
                    on_warning=lambda text: err.print(f"warning: {text}", markup=False), on_nan=on_nan.value,
                    checkpoint=folder, checkpoint_every=checkpoint_every, resume=resume, stop_requested=stop,
                    auto_reference=not no_reference,
                )
            except Interrupted as exc:
                _stopped(stop, exc, folder, hint)
            stop.training_over()  # whatever on_log saw: no iteration polls the flag any more
            _write(result, loaded, save=save, plot=plot, out_file=out_file, json_=json_, quiet=quiet)
        except Stopped as exc:
            _stopped_now(exc, folder, hint)


def _write(result: SolveResult, problem: Problem, *, save: Path | None, plot: Path | None, out_file: Path | None,
           json_: bool, quiet: bool) -> None:
    """After training: --save, --plot, --out, then the result on stdout."""
    from bsde.io import write_json_atomic
    from bsde.solution import SOLUTION_FILE

    if save is not None:
        replaced = (save / SOLUTION_FILE).exists()  # a solution of this problem (check_save_folder refused others)
        result.solution.save(save, {"y0": result.y0, "delta": result.delta, "gamma_diag": result.gamma_diag})
        err.print(f"saved the solution to {save}{', replacing the earlier one' if replaced else ''} "
                  f"(bsde eval {shlex.quote(str(save))} --x ...)", markup=False)
    if plot is not None:
        from bsde.region_plot import PLOT_FRACTIONS, diagonal_checks, plot_region

        checks = diagonal_checks(result.solution, problem, PLOT_FRACTIONS,
                                 progress=None if quiet else progress_lines("references"))
        replaced = plot.exists()
        plot_region(result.solution, problem, checks, plot)
        err.print(f"plot written to {plot}{', replacing the earlier one' if replaced else ''}", markup=False)
    data = result.to_dict()
    if out_file is not None and lead_process():
        replaced = out_file.exists()  # a solve's JSON result (refuse_overwriting refused anything else)
        write_json_atomic(out_file, data)
        if replaced:  # said as bsde compare says it: a rerun's earlier result (another problem's, maybe) is gone
            err.print(f"note: replaced the earlier result in {out_file}", markup=False)
    if json_:
        emit_json(data)
    else:
        report(result)
