"""`bsde reference`: an independent value of u(0, x0) with its error bar."""

from __future__ import annotations

from enum import Enum
from typing import Annotated, Any

import typer

from bsde.errors import ProblemError
from bsde.reference import METHODS, ReferenceResult, describe, reference, resolve_method

from .common import (JsonOption, NprocOption, SeedOption, SetOption, emit_json, err, guarded, launch_workers, load, out,
                     progress_lines)

#: auto plus every method of the engine's registry
ReferenceMethod = Enum("ReferenceMethod", {name: name for name in ("auto", *METHODS)}, type=str)

MethodOption = Annotated[ReferenceMethod, typer.Option(
    help="Reference method; auto takes the most accurate per unit of time that applies.")]
PathsOption = Annotated[int | None, typer.Option(
    min=1, help="Monte Carlo paths (mc, cole-hopf) or independent repeats (mlp); default: the method's own.",
    metavar="N")]


def uncertainty(result: ReferenceResult, digits: int = 2) -> str:
    """'+- 0.0012 (95% CI half-width)', '+- 7.9e-07 (error estimate)' or '(deterministic)'."""
    if result.error_bar is None:
        return "(deterministic)"
    what = "95% CI half-width" if result.ci95 is not None else "error estimate"
    return f"+- {result.error_bar:.{digits}g} ({what})"


def reference_dict(name: str, dim: int, result: ReferenceResult) -> dict[str, Any]:
    """The --json object: problem, dim, then the result's fields (details last)."""
    return {"problem": name, "dim": dim, **result.to_dict()}


@guarded
def reference_command(
    ctx: typer.Context,
    problem: Annotated[str, typer.Argument(help="Shipped problem name or path to a YAML file.")],
    set_: SetOption = None,
    method: MethodOption = ReferenceMethod("auto"),
    paths: PathsOption = None,
    seed: SeedOption = 0,
    shards: Annotated[int | None, typer.Option(
        min=1, help="Split the samples into S shards, each its own random stream (mc, cole-hopf, mlp); the value "
                    "depends on S, not on the processes. Default: one shard per process (none alone).",
        metavar="S")] = None,
    nproc: NprocOption = 1,
    json_: JsonOption = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress lines.")] = False,
) -> None:
    """Compute a reference value of u(0, x0) for PROBLEM, independent of the deep BSDE solver.

    Monte Carlo and MLP values come with a standard error and a 95% interval; the deterministic
    radial and semi-analytic methods with their own error estimate. A method that does not apply
    to the problem is an error (exit 2).

    --nproc K (or torchrun) shares the shards out over K processes and merges their moments exactly:
    the same value as one process with --shards K.
    """
    from bsde import distributed

    loaded = load(problem, set_)
    name = resolve_method(loaded, method.value)  # bad input fails here, before any output
    spread = nproc > 1 or shards is not None or distributed.launched()
    if spread and not METHODS[name].sampled:
        raise ProblemError(f"--nproc/--shards: method '{name}' is deterministic; only the sampling methods "
                           f"({', '.join(n for n, m in METHODS.items() if m.sampled)}) run in shards")
    if nproc > 1:
        launch_workers(ctx, nproc)
    if not quiet:
        err.print(f"reference for {loaded.name} ({loaded.equation.kind}, dim {loaded.equation.dim}) "
                  f"by {name}", markup=False)
    group = distributed.group(distributed.CPU) if spread else None
    result = reference(loaded, method.value, paths=paths, seed=seed, shards=shards, group=group,
                       progress=None if quiet else progress_lines(name))
    if json_:
        emit_json(reference_dict(loaded.name, loaded.equation.dim, result))
        return
    out.print(f"{loaded.name} ({loaded.equation.kind}, dim {loaded.equation.dim})", markup=False)
    out.print(f"  value   {result.value:.8g} {uncertainty(result)}", markup=False)
    if result.stderr is not None:
        out.print(f"  stderr  {result.stderr:.3g}", markup=False)
    if result.ci95 is not None:
        out.print(f"  95% CI  [{result.ci95[0]:.8g}, {result.ci95[1]:.8g}]", markup=False)
    out.print(f"  method  {result.method}: {describe(result)}", markup=False)
    out.print(f"  paths   {result.paths if result.paths is not None else '-'}", markup=False)
    if "shards" in result.details:
        processes = f" over {group.size} processes" if group is not None else ""
        out.print(f"  shards  {result.details['shards']}{processes}", markup=False)
    out.print(f"  wall    {result.wall_s:.2f} s (seed {seed})", markup=False)
    if loaded.reference.value is not None:
        out.print(f"  published {loaded.reference.value:g} ({loaded.reference.source or 'no source'})", markup=False)
