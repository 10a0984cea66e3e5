"""`bsde`: solve, inspect and check high-dimensional PDE problems from the terminal."""

from __future__ import annotations

from typing import Annotated

import typer

from bsde import __version__

from .bench import bench
from .compare import compare
from .eval import eval_command
from .inspect import list_problems, show
from .reference import reference_command
from .solve import solve

app = typer.Typer(
    name="bsde", help="Deep BSDE solver for high-dimensional semilinear parabolic PDEs.",
    no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
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


app.command("list")(list_problems)
app.command()(show)
app.command()(solve)
app.command("reference")(reference_command)
app.command()(compare)
app.command()(bench)
app.command("eval")(eval_command)


def main() -> None:
    app()
