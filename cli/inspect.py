"""`bsde list` and `bsde show`: what is shipped and what a run will use."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Column, Table

from .common import ProblemArgument, SetOption, guarded, load, out, print_table


@guarded
def list_problems() -> None:
    """Shipped problems with their dimension and reference value, then the kinds installed packages add."""
    from bsde.equations import EQUATIONS
    from bsde.problem import load_problem, shipped_problems

    titles = ("problem", "kind", "dim", "reference", "presets", "source")
    table = Table(*(Column(title, overflow="fold") for title in titles), box=None)  # narrow: folded, never cut
    for name in sorted(shipped_problems()):
        problem = load_problem(name)
        ref = problem.reference
        value, source = ("-" if ref.value is None else f"{ref.value:g}"), ref.source or "-"
        if ref.value is None and problem.equation.has_exact_solution:
            value, source = "exact", "closed-form solution (bsde reference)"
        table.add_row(name, problem.equation.kind, str(problem.equation.dim), value,
                      ", ".join(problem.presets) or "-", source)
    for kind in sorted(EQUATIONS.plugins()):  # named by metadata, not imported: the row says where it comes from
        table.add_row(kind, kind, "-", "-", "-", EQUATIONS.origin(kind) or "-")
    print_table(table)


@guarded
def show(
    problem: ProblemArgument,
    set_: SetOption = None,
    preset: Annotated[str | None, typer.Option(help="Apply a named solver preset.")] = None,
) -> None:
    """Print the fully resolved configuration as YAML (its presets listed at the end)."""
    import yaml

    loaded = load(problem, set_, preset, probe=False)
    out.print(yaml.safe_dump(loaded.to_dict(), sort_keys=False), end="", markup=False)
