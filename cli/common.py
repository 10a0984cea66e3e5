"""Pieces every command shares: consoles, option types, loading with overrides, error exits."""

from __future__ import annotations

import errno
import functools
import json
import os
import shlex
import sys
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Callable

import typer
from rich.console import Console

from bsde.arguments import SEED_LIMIT
from bsde.errors import BSDEError, ProblemError, TrainingError
from bsde.launcher import die_with_launcher

if TYPE_CHECKING:
    from bsde.problem import Problem
    from bsde.trainer import LogEntry

# the problem modules (pydantic, the equations: about 0.3 s) load inside the commands that read a problem, so that
# --help does not wait for them

#: results and tables go to stdout; progress, warnings and errors to stderr
out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)
#: the width of a table printed to a pipe or a file: whole rows, not cells folded or cut to 80 columns
WIDE = 250

SetOption = Annotated[
    list[str] | None,
    typer.Option("--set", "-s", help="Override a key: section.key=value (YAML value), repeatable.",
                 metavar="KEY=VALUE"),
]


def _seed(value: int) -> int:
    """The range of a seed, checked without typer printing [0<=x<=4611686018427387903] in every --help."""
    if not 0 <= value < SEED_LIMIT:
        raise typer.BadParameter(f"{value} is not in 0 .. 2^62 - 1")
    return value


def path_value(text: str | Path) -> Path:
    """A file or folder named on the command line; an empty name is an error (``Path('')`` reads as '.').
    typer passes an option's default through too, as it is."""
    if isinstance(text, Path):
        return text
    if not text.strip():
        raise typer.BadParameter("an empty path: name a file or folder")
    return Path(text)


SeedOption = Annotated[int, typer.Option(callback=_seed, metavar="N",
                                         help="Random seed, 0 .. 2^62 - 1 (reproducible runs).")]
ProblemArgument = Annotated[str, typer.Argument(help="Shipped problem name or path to a YAML file.", metavar="PROBLEM")]
DeviceOption = Annotated[str, typer.Option(help="auto | cpu | cuda")]
JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout and nothing else there.")]
ThreadsOption = Annotated[int | None, typer.Option(
    min=1, help="torch CPU threads (default: the cores this process may use).")]
NprocOption = Annotated[int, typer.Option(
    min=1, help="Processes on this machine, started through torch.distributed.run (torchrun).", metavar="K")]


def _no_type_for_flags() -> None:
    """typer 0.29 shows a flag's type, '--json <bool>', as if it took a value: show none (a flag takes none)."""
    option = getattr(getattr(typer, "core", None), "TyperOption", None)
    shown = getattr(option, "display_type_rich", None)
    if shown is None or getattr(shown, "flags_bare", False):
        return

    def display_type_rich(self: Any, ctx: Any) -> str | None:
        return None if getattr(self, "is_flag", False) else shown(self, ctx)

    display_type_rich.flags_bare = True  # type: ignore[attr-defined]
    option.display_type_rich = display_type_rich


_no_type_for_flags()


def lead_process() -> bool:
    """Whether this process prints: always, except a follower (RANK > 0) among those torchrun started."""
    return os.environ.get("RANK", "0") in ("", "0")


def follow_lead() -> None:
    """In a follower process, send the consoles and stdout nowhere: only the lead (rank 0) prints."""
    if not lead_process():
        sink = open(os.devnull, "w")  # noqa: SIM115 - for the rest of the process
        out.file = err.file = sys.stdout = sink


def load(problem: str, overrides: list[str] | None, preset: str | None = None, *, probe: bool = True) -> Problem:
    """A problem by name or path with a preset and then its --set overrides applied (--set wins). ``probe``: also
    the pricing-measure note of a z-term (:func:`note_z_term`; not for ``show``, nor before a memory check)."""
    from bsde.equations.base import pricing_measure_note
    from bsde.problem import load_problem, parse_override

    parsed = dict(parse_override(text) for text in overrides or [])
    loaded = load_problem(problem, parsed, preset=preset, overrides_from="--set")
    measure = pricing_measure_note(loaded.equation)
    if measure is not None:
        err.print(f"note: {problem}: {measure}", markup=False)
    if probe:
        note_z_term(problem, loaded)
    shadowed = local_namesake(problem)
    if shadowed is not None:
        err.print(f"note: '{problem}' is the shipped problem; for the file {shadowed} here, give its path "
                  f"(./{shadowed})", markup=False)
    return loaded


def note_z_term(problem: str, loaded: Problem) -> None:
    """The pricing-measure note of a driver -r y + m . z on a GBM, whose z-term moves the assets' rates: found by
    probing the driver (torch, and memory in proportion to dim: after a memory check)."""
    from bsde.equations.base import pricing_measure_note
    from bsde.processes import GBM

    equation = loaded.equation
    if not (equation.driver_uses_z and isinstance(equation.process, GBM)):
        return
    from bsde.girsanov import girsanov_drift

    linear = girsanov_drift(equation)
    measure = None if linear is None else pricing_measure_note(equation, linear)
    if measure is not None:
        err.print(f"note: {problem}: {measure}", markup=False)


def local_namesake(problem: str) -> str | None:
    """A file in the working folder that a shipped problem's bare name hides (``hjb`` -> ./hjb.yaml), or None."""
    from bsde.problem import shipped_problems

    if problem not in shipped_problems():
        return None
    return next((name for name in (problem, f"{problem}.yaml", f"{problem}.yml") if Path(name).is_file()), None)


def problem_file(problem: str) -> Path | None:
    """The file a PROBLEM argument reads (a shipped one or a path), or None (an installed kind)."""
    from bsde.problem import shipped_problems

    path = shipped_problems().get(problem) or Path(problem).expanduser()
    return path if path.is_file() else None


def refuse_overwriting(problems: list[str], outputs: dict[str, list[Path]]) -> None:
    """Fail when an output path (by option) is one of the problem files read, or where another option writes:
    one would overwrite the other."""
    writers: dict[Path, str] = {}
    for option, paths in outputs.items():
        for path in paths:
            resolved = path.expanduser().resolve()
            if writers.setdefault(resolved, option) != option:
                raise ProblemError(f"{option} {path}: is also where {writers[resolved]} writes; give another path")
    for problem in problems:
        source = problem_file(problem)
        for option, paths in outputs.items():
            for path in paths:
                if source is not None and path.expanduser().resolve() == source.resolve():
                    raise ProblemError(f"{option} {path}: is the problem file {problem}, which it would "
                                       "overwrite; give another path")


def fail(message: str, code: int) -> None:
    """One line on stderr, then exit ``code``; a follower process (whose consoles go nowhere) writes it to the
    real stderr, marked with its rank: the lead may not have seen the error (one node's bad path or file)."""
    if lead_process():
        err.print(f"error: {message}", markup=False)
    else:
        sys.__stderr__.write(f"error (process {os.environ.get('RANK')}): {message}\n")
    raise typer.Exit(code)


#: set to 1 to let an unexpected error end in its traceback instead of one line
DEBUG_VARIABLE = "BSDE_DEBUG"
#: typer's own exits and usage errors, which typer reports itself (click's ClickException is the base of the
#: latter, whether typer uses click or its own copy of it)
PASS_THROUGH = (typer.Exit, typer.Abort,
                next(cls for cls in typer.BadParameter.__mro__ if cls.__name__ == "ClickException"))


def first_line(exc: BaseException) -> str:
    """'RuntimeError: the first non-empty line of its message' (torch's messages run to many lines)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__


#: the system's refusals that a path given on the command line caused (exit 2, bad input, as bsde's own checks of
#: a path, when the path is one the command was given): too long, not permitted, read-only, a file where a folder
#: belongs or the other way round
PATH_ERRORS = frozenset({errno.ENAMETOOLONG, errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOTDIR, errno.EISDIR})


def _given(filename: Any, arguments: dict[str, Any]) -> bool:
    """Whether ``filename`` is a path the command was given (an option's file, or a file in its folder)."""
    if not filename:
        return False
    failed = os.path.abspath(os.fsdecode(filename))
    for value in arguments.values():
        if isinstance(value, (str, Path)) and value:
            given = os.path.abspath(os.fsdecode(value))
            if failed == given or failed.startswith(given.rstrip(os.sep) + os.sep):
                return True
    return False


def guarded(command: Callable[..., Any]) -> Callable[..., Any]:
    """Turn errors into one line on stderr: exit 2 for bad input, 1 for a failed run or an unexpected error.

    An error the library did not raise on purpose (a RuntimeError from torch, say) is one line too,
    with a hint; ``BSDE_DEBUG=1`` shows its traceback instead.
    """

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        die_with_launcher()
        follow_lead()
        try:
            done = command(*args, **kwargs)
            close_group()
            return done
        except typer.Exit as stop:
            if stop.exit_code == 0:
                close_group()
            raise
        except PASS_THROUGH:
            raise
        except ProblemError as exc:
            fail(str(exc), 2)
        except TrainingError as exc:
            fail(str(exc), 1)
        except BSDEError as exc:  # bad input; an output the machine could not write (a full disk) is exit 1
            fail(str(exc), 1 if getattr(exc, "machine", False) else 2)
        except MemoryError:
            fail("out of memory; lower solver.batch_size or use solver.dtype=float32", 1)
        except KeyboardInterrupt:  # Ctrl-C in a command without its own handling (solve has one): say so
            fail("interrupted by SIGINT", 130)
        except OSError as exc:  # the machine's doing (a full disk, a closed pipe, a permission), not a bsde bug
            if os.environ.get(DEBUG_VARIABLE, "") not in ("", "0"):
                raise
            where = f"{exc.filename}: " if exc.filename else ""
            text = f"{where}{exc.strerror or first_line(exc)}"
            fail(f"{text} (the system refused a read or write; {DEBUG_VARIABLE}=1 shows the traceback)",
                 2 if exc.errno in PATH_ERRORS and _given(exc.filename, kwargs) else 1)
        except Exception as exc:  # noqa: BLE001 - the last resort: one line, not a traceback
            if os.environ.get(DEBUG_VARIABLE, "") not in ("", "0"):
                raise
            fail(f"{first_line(exc)} (unexpected; {DEBUG_VARIABLE}=1 shows the traceback, please report it)", 1)

    return wrapper


def close_group() -> None:
    """After a command that ran in several processes (torchrun) and succeeded: leave the group in step."""
    if "torch.distributed" in sys.modules and os.environ.get("WORLD_SIZE", "1") not in ("", "1"):
        from bsde.distributed import close

        close()


def print_table(table: Any) -> None:
    """A rich table on stdout: the terminal's width, or WIDE for a pipe or a file (print's width= cannot widen)."""
    (out if out.is_terminal else Console(file=out.file, highlight=False, width=WIDE)).print(table)


def emit_json(data: dict[str, Any]) -> None:
    """Exactly one JSON object on stdout."""
    sys.stdout.write(json.dumps(data, allow_nan=False) + "\n")
    sys.stdout.flush()


def print_log_entry(entry: LogEntry, total: int, prefix: str = "") -> None:
    """One training progress line on stderr (validation loss and y0 at ``entry.iteration`` of ``total``)."""
    err.print(f"  {prefix}iter {entry.iteration:>6}/{total}  loss {entry.loss:.4e}  y0 {entry.y0:.6g}  "
              f"{entry.elapsed_s:7.1f} s", markup=False)


def launch_workers(ctx: typer.Context, nproc: int) -> None:
    """Run this command again in ``nproc`` processes through torchrun (without --nproc) and exit with their code.

    The input was checked here first; the workers print (the lead alone), this process adds nothing.
    """
    from bsde import distributed

    if distributed.launched():
        raise ProblemError(f"--nproc: this is already one of {distributed.world()} processes started by torchrun")
    arguments = shlex.split(command_line(ctx, nproc=1))[1:]
    raise typer.Exit(distributed.launch(arguments, nproc,
                                        quiet_launcher=os.environ.get(DEBUG_VARIABLE, "") in ("", "0")))
def vector_text(values: list[float | None], shown: int = 4) -> str:
    """'[0.1343, 0.1342]', or the first ``shown`` entries and the mean: '[0.1343, ..., 0.1341] (mean 0.1342)'."""
    def number(v: float | None) -> str:
        return "-" if v is None else f"{v:.6g}"

    if len(values) <= shown:
        return "[" + ", ".join(map(number, values)) + "]"
    known = [v for v in values if v is not None]
    mean = f" (mean {sum(known) / len(known):.6g})" if known else ""
    return "[" + ", ".join(map(number, values[:shown - 1])) + f", ..., {number(values[-1])}]" + mean


def progress_lines(label: str, step: float = 0.1) -> Callable[[int, int], None]:
    """A ``progress(done, total)`` callback printing '<label>: 40% (done/total)' on stderr every ``step``."""
    shown = [-1.0]

    def progress(done: int, total: int) -> None:
        fraction = done / total if total else 1.0
        if fraction >= shown[0] + step or (done >= total and shown[0] < 1.0):
            shown[0] = fraction
            err.print(f"  {label}: {100 * fraction:3.0f}% ({done}/{total})", markup=False)

    return progress


def command_line(ctx: typer.Context, *, keep: tuple[str, ...] = (), **changes: Any) -> str:
    """The running command as a shell line: 'bsde <command> ARGS' with every option not at its default.

    Rebuilt from what the parser read, so it is the same whichever way the command was started
    (console script, ``python -m bsde.cli`` or a test runner). ``changes`` replace parameters by
    their Python names (``checkpoint=None, resume=folder`` turns a run into the command that resumes it);
    the options named in ``keep`` are written even at their default.
    The one builder of the lines that ``solve`` (resume hint), ``bench`` and ``compare`` print or record.
    """
    unknown = (set(changes) | set(keep)) - {param.name for param in ctx.command.params}
    if unknown:
        raise ValueError(f"command_line: {ctx.info_name} has no parameter {sorted(unknown)}")
    params = {**ctx.params, **changes}
    words = ["bsde", ctx.info_name or ""]
    options: list[str] = []
    for param in ctx.command.params:
        value = params.get(param.name)
        if param.param_type_name == "argument":
            words += [str(v) for v in (value if isinstance(value, (list, tuple)) else [value]) if v is not None]
            continue
        if value is None or value == () or value == [] or param.name is None or (
                value == param.default and param.name not in keep):
            continue
        flag = next((opt for opt in param.opts if opt.startswith("--")), param.opts[0])
        if getattr(param, "is_flag", False):
            options.append(flag if value else (param.secondary_opts or [flag])[0])
            continue
        for item in value if isinstance(value, (list, tuple)) else [value]:
            options += [flag, str(item.value if isinstance(item, Enum) else item)]
    return shlex.join(words + options)
