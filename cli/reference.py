"""`bsde reference`: an independent value of u(0, x0) with its error bar."""

from __future__ import annotations

from enum import Enum
from typing import TYPE_CHECKING, Annotated, Any

import typer

from bsde.errors import ProblemError

from .common import (JsonOption, NprocOption, ProblemArgument, SeedOption, SetOption, ThreadsOption, emit_json, err,
                     guarded, launch_workers, load, out, progress_lines)

if TYPE_CHECKING:
    from bsde.problem import Problem
    from bsde.reference import ReferenceResult

#: the engine's registry (bsde.reference.METHODS), named here so that --help need not load it (0.3 s); a test keeps
#: the two the same
METHOD_NAMES = ("exact", "closed-form", "semi-analytic", "radial", "pde-1d", "cole-hopf", "girsanov", "mc", "mlp")
#: auto plus every method of the engine's registry
ReferenceMethod = Enum("ReferenceMethod", {name: name for name in ("auto", *METHOD_NAMES)}, type=str)

MethodOption = Annotated[ReferenceMethod, typer.Option(
    help="Reference method; auto takes the most accurate per unit of time that applies.")]
PathsOption = Annotated[int | None, typer.Option(
    min=1, help="Monte Carlo paths (mc, cole-hopf, girsanov) or independent repeats (mlp); default: the method's own.",
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
    problem: ProblemArgument,
    set_: SetOption = None,
    method: MethodOption = ReferenceMethod("auto"),
    paths: PathsOption = None,
    seed: SeedOption = 0,
    shards: Annotated[int | None, typer.Option(
        min=1, help="Split the samples into S shards, each its own random stream (mc, cole-hopf, girsanov, mlp); the value "
                    "depends on S, not on the processes. Default: one shard per process (none alone).",
        metavar="S")] = None,
    nproc: NprocOption = 1,
    threads: ThreadsOption = None,
    json_: JsonOption = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress lines.")] = False,
    greeks: Annotated[bool, typer.Option(
        "--greeks", help="Delta and gamma at x0 instead: closed form, semi-analytic, radial, or Monte Carlo "
                         "(pathwise / likelihood ratio, 95% CIs); other methods by central differences (flagged).")] = False,
) -> None:
    """Compute a reference value of u(0, x0) for PROBLEM, independent of the deep BSDE solver.

    Monte Carlo and MLP values come with a standard error and a 95% interval; the deterministic
    radial, semi-analytic and pde-1d methods with their own error estimate. A method that does not apply
    to the problem is an error (exit 2).

    --nproc K (or torchrun) shares the shards out over K processes and merges their moments exactly:
    the same value as one process with --shards K.
    """
    from bsde import distributed
    from bsde.reference import METHODS, describe, reference, resolve_method
    from bsde.runtime import set_threads

    loaded = load(problem, set_)
    set_threads(threads)  # deliberately: the cores this process may use, shared among torchrun's processes
    if greeks:
        _greeks(loaded, method.value, paths, seed, json_, quiet)
        return
    spread = nproc > 1 or shards is not None or distributed.launched()
    name = resolve_method(loaded, method.value, sampled=spread)  # bad input fails here, before any output
    if spread and not METHODS[name].sampled:
        raise ProblemError(f"--nproc/--shards: method '{name}' is deterministic; only the sampling methods "
                           f"({', '.join(n for n, m in METHODS.items() if m.sampled)}) run in shards")
    if paths is not None and not METHODS[name].sampled:
        unless = " unless it fails and auto goes on to a sampling method" if method.value == "auto" else ""
        err.print(f"warning: --paths: method '{name}' is deterministic and draws no paths (ignored{unless})",
                  markup=False)
    if nproc > 1:
        launch_workers(ctx, nproc)
    if not quiet:
        err.print(f"reference for {loaded.name} ({loaded.equation.kind}, dim {loaded.equation.dim}) "
                  f"by {name}", markup=False)
        if (alone := resolve_method(loaded, method.value)) != name:  # QA: auto with --nproc had refused hjb
            err.print(f"note: auto in shards takes the preferred sampling method, {name}; without --nproc and "
                      f"--shards it takes {alone} (deterministic)", markup=False)
    group = distributed.group(distributed.CPU) if spread else None
    result = reference(loaded, method.value, paths=paths, seed=seed, shards=shards, group=group,
                       progress=None if quiet else progress_lines(name))
    for failed in result.details.get("fallback", []):
        err.print(f"warning: {failed}; this value is by {result.method}, the next method that applies", markup=False)
    if result.caveat is not None:
        err.print(f"warning: {result.caveat}", markup=False)
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


def _greeks(loaded: Problem, method: str, paths: int | None, seed: int, json_: bool, quiet: bool) -> None:
    """``bsde reference --greeks``: reference delta and gamma at x0 (bsde.reference.greeks)."""
    from bsde.reference.greeks import fallback_reason, greeks_method, reference_greeks

    name, fallback = greeks_method(loaded, method)  # bad input fails here, before any output
    eq = loaded.equation
    if not quiet:
        how = f"central differences of {name} (fallback)" if fallback else name
        err.print(f"reference Greeks for {loaded.name} ({eq.kind}, dim {eq.dim}) by {how}", markup=False)
    if fallback:
        err.print(f"warning: {fallback_reason(loaded, name)}: central differences with common random "
                  f"numbers, {2 * eq.dim + 1} runs of it, no error bar", markup=False)
    result = reference_greeks(loaded, method, paths=paths, seed=seed,
                              progress=None if quiet else progress_lines("coordinates" if fallback else name))
    if json_:
        emit_json({"problem": loaded.name, "dim": eq.dim, **result.to_dict()})
        return
    out.print(f"{loaded.name} ({eq.kind}, dim {eq.dim}): Greeks at x0 by {result.method}"
              + (" (FALLBACK: central differences, common random numbers)" if result.fallback else ""), markup=False)
    if result.value is not None:
        spread = f" +- {result.value_stderr:.2g} (standard error)" if result.value_stderr is not None else ""
        out.print(f"  value     {result.value:.8g}{spread}", markup=False)
    bar = {"95% CI half-width": "95% CI"}.get(result.error_kind, result.error_kind)
    out.print(f"  {'i':>4}  {'delta':>12}  {'+-':>9}  {'gamma_ii':>12}  {'+-':>9}   ({bar})", markup=False)
    shown = range(eq.dim) if eq.dim <= 10 else [0, 1, 2, eq.dim - 1]
    for i in shown:
        if eq.dim > 10 and i == eq.dim - 1:
            out.print(f"  {'...':>4}", markup=False)
        out.print(f"  {i + 1:>4}  {result.delta[i]:>12.6g}  {_bar(result.delta_error, i):>9}  "
                  f"{result.gamma_diag[i]:>12.6g}  {_bar(result.gamma_diag_error, i):>9}", markup=False)
    if eq.dim > 1:
        mean_delta = sum(result.delta) / eq.dim
        mean_gamma = sum(result.gamma_diag) / eq.dim
        out.print(f"  {'mean':>4}  {mean_delta:>12.6g}  {'':>9}  {mean_gamma:>12.6g}", markup=False)
    out.print(f"  paths   {result.paths if result.paths is not None else '-'}", markup=False)
    out.print(f"  wall    {result.wall_s:.2f} s (seed {seed})", markup=False)


def _bar(errors: list[float] | None, i: int) -> str:
    return "-" if errors is None or errors[i] is None else f"{errors[i]:.2g}"
