"""`bsde`: solve, inspect and check high-dimensional PDE problems from the terminal."""

from __future__ import annotations

import difflib
import inspect
import sys
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from bsde import __version__

from .bench import bench
from .common import PASS_THROUGH, err
from .compare import compare
from .eval import eval_command
from .inspect import list_problems, show
from .reference import reference_command
from .solve import solve

#: click's base of usage errors and bad option values (typer ships its own copy of click)
CLICK_ERROR = PASS_THROUGH[-1]
#: how close an unknown option must be to a known one to be suggested (click's 0.6 offers --out for --bogus)
SUGGEST_CUTOFF = 0.75


def help_command(ctx: Any) -> str:
    """'bsde solve --help' for the (sub)command whose arguments were wrong; 'bsde --help' at the top."""
    names = []
    while ctx is not None and ctx.parent is not None:
        names.insert(0, ctx.info_name)
        ctx = ctx.parent
    return " ".join(["bsde", *names, "--help"])


def usage_line(exc: Exception) -> str:
    """Click's message on one line, with a close option name as the only suggestion and where help is."""
    option, known = getattr(exc, "option_name", None), getattr(exc, "possibilities", None)
    text = exc.message if option and known else exc.format_message()  # type: ignore[attr-defined]
    message = next((line.strip() for line in text.splitlines() if line.strip()), "bad usage")
    message = message.replace(": Value error, ", ": ")  # typer's wording of a bad choice
    if option and known:
        close = difflib.get_close_matches(option, known, n=1, cutoff=SUGGEST_CUTOFF)
        message += f" (did you mean {close[0]}?)" if close else ""
    ctx = getattr(exc, "ctx", None)
    return f"{message} (see {help_command(ctx)})" if ctx is not None else message


class OneLineErrors(TyperGroup):
    """The root command: a usage error is one line 'error: ...' on stderr (exit 2), not click's box."""

    def main(self, args: Any = None, prog_name: str | None = None, complete_var: str | None = None,
             standalone_mode: bool = True, **extra: Any) -> Any:
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        if sys.stdout is None:  # started with stdout closed (>&-): a result printed there would be lost after the work
            err.print("error: standard output is closed (>&-): nothing could be printed; send it somewhere, e.g. "
                      "> /dev/null", markup=False)
            sys.exit(1)
        try:
            code = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except CLICK_ERROR as exc:
            code = exc.exit_code
            if type(exc).__name__ != "NoArgsIsHelpError":  # plain `bsde`: the help was printed already
                err.print(f"error: {usage_line(exc)}", markup=False)
        except typer.Abort:
            err.print("error: aborted", markup=False)
            code = 130
        sys.exit(code if isinstance(code, int) else 0)


app = typer.Typer(
    name="bsde", help="Deep BSDE solver for high-dimensional semilinear parabolic PDEs.",
    no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False, cls=OneLineErrors,
)


def _version(value: bool) -> None:
    if value:
        print(f"bsde {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Show the version and exit.")] = False,
) -> None:
    """Deep BSDE solver for high-dimensional semilinear parabolic PDEs."""


def _help(command: Any) -> str:
    """The command's docstring with each paragraph on one line: typer keeps the source's line breaks inside
    paragraphs after the first, which then break mid-sentence at any terminal width."""
    paragraphs = inspect.cleandoc(command.__doc__ or "").split("\n\n")
    return "\n\n".join(" ".join(line.strip() for line in p.splitlines()) for p in paragraphs)


for name, command in [("list", list_problems), ("show", show), ("solve", solve), ("reference", reference_command),
                      ("compare", compare), ("bench", bench), ("eval", eval_command)]:
    app.command(name, help=_help(command))(command)


def main() -> None:
    app()
