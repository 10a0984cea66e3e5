"""`bsde eval`: u and delta of a saved solution (``bsde solve ... --save DIR``) at given points."""

from __future__ import annotations

import math
import re
import warnings
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml

from bsde.errors import ProblemError

from .common import JsonOption, emit_json, err, guarded, out, path_value, vector_text


class NumberLoader(yaml.SafeLoader):
    """Safe YAML that also reads 1e2 and 1.0e2 as numbers (YAML 1.1 wants a dot and a sign: 1.0e+2)."""


NumberLoader.add_implicit_resolver("tag:yaml.org,2002:float", re.compile(r"^[-+]?(?:\d+\.?\d*|\.\d+)[eE][-+]?\d+$"),
                                   list("-+0123456789."))


def points_from_text(text: str, dim: int) -> list[list[float]]:
    """--x: a YAML number (every coordinate), a list of dim numbers (one point) or a list of such lists."""
    try:
        value = yaml.load(text, Loader=NumberLoader)  # noqa: S506 - a safe loader
    except yaml.YAMLError as exc:
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ProblemError(f"--x: cannot parse {text!r} as YAML ({problem})") from None
    if _is_number(value):
        if not math.isfinite(value):
            raise ProblemError(f"--x: expected a finite number, got {text!r}")
        return [[float(value)] * dim]
    if isinstance(value, list) and value and all(_is_number(v) for v in value):
        return [_point(value, dim, "--x")]
    if isinstance(value, list) and value and all(isinstance(v, list) for v in value):
        return [_point(v, dim, f"--x[{i}]") for i, v in enumerate(value)]
    raise ProblemError(f"--x: expected a number, a list of {dim} numbers or a list of such lists, got {text!r}")


def points_from_file(path: Path, dim: int) -> list[list[float]]:
    """--points FILE: one point per line, numbers separated by commas or blanks; '#' starts a comment."""
    if not path.is_file():
        raise ProblemError(f"{path}: no such file" if not path.exists() else f"{path}: is a folder, expected a file")
    try:
        lines = path.read_bytes().decode("utf-8").splitlines()
    except UnicodeDecodeError as exc:
        raise ProblemError(f"{path}: expected UTF-8 text (byte offset {exc.start})") from None
    except OSError as exc:
        raise ProblemError(f"{path}: cannot read ({exc.strerror})") from None
    points = []
    for number, line in enumerate(lines, start=1):
        words = [w for w in re.split(r"[,\s]+", line.split("#", 1)[0].strip()) if w]
        if not words:
            continue
        try:
            values = [float(w) for w in words]
        except ValueError:
            raise ProblemError(f"{path}: line {number}: expected numbers, got {line.strip()!r}") from None
        points.append(_point(values, dim, f"{path}: line {number}"))
    if not points:
        raise ProblemError(f"{path}: no points (one point of {dim} number{'s' if dim != 1 else ''} per line)")
    return points


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _point(values: list[Any], dim: int, where: str) -> list[float]:
    if len(values) != dim or not all(_is_number(v) for v in values):
        raise ProblemError(f"{where}: expected {dim} number{'s' if dim != 1 else ''}, got {values!r}")
    if not all(math.isfinite(float(v)) for v in values):
        raise ProblemError(f"{where}: every coordinate must be finite, got {values!r}")
    return [float(v) for v in values]


@guarded
def eval_command(
    folder: Annotated[Path, typer.Argument(parser=path_value, help="A folder written by bsde solve ... --save DIR.", metavar="DIR")],
    x: Annotated[str | None, typer.Option(
        "--x", help="Points as YAML: \\[x1, ..., xd] for one, [[...], [...]] for many; a number sets every "
                    "coordinate. Default: the problem's x0.")] = None,
    points: Annotated[Path | None, typer.Option(
        parser=path_value, help="A text file of points, one per line (numbers separated by commas or blanks).",
        metavar="FILE")] = None,
    gamma: Annotated[bool, typer.Option("--gamma", help="Also give the diagonal of the Hessian.")] = False,
    json_: JsonOption = False,
) -> None:
    """Print u(0, x) and delta = grad u(0, x) of the solution saved in DIR at the given points.

    A region solve (solver.region) answers anywhere (points outside its box are extrapolated, with a
    warning), with standard errors from its refit's jackknife (the paths' noise, not the networks' bias);
    a point solve answers at its x0 only.
    """
    from bsde.solution import OutsideRegionWarning, Solution, diagonal_of  # torch loads only here

    if x is not None and points is not None:
        raise ProblemError("give the points with --x or with --points, not both")
    solution = Solution.load(folder)
    dim = solution.equation.dim
    chosen = (points_from_text(x, dim) if x is not None else points_from_file(points, dim) if points is not None
              else [solution.x0.tolist()])
    region = solution.problem.solver.region
    try:  # the checks of the points themselves (a GBM's are positive), named after where they came from
        outside_flags = solution.outside_flags(chosen)
    except ProblemError as exc:
        text = str(exc)
        if not text.startswith("points: "):
            raise
        source = "--x" if x is not None else str(points) if points is not None else "x0"
        raise ProblemError(f"{source}: {text.removeprefix('points: ')}") from None
    with warnings.catch_warnings(record=True) as seen:  # said once, as one line, not per call in Python's format
        warnings.simplefilter("always", OutsideRegionWarning)
        values = solution.u(chosen)
        deltas = solution.grad(chosen)
        diagonals = None
        if gamma:
            hessians = solution.hessian(chosen)
            diagonals = [diagonal_of(h).tolist() for h in hessians]
        # a region's refit left jackknife replicates: standard errors of the three (the paths' noise, not the bias)
        errors = solution.standard_errors(chosen) if solution.has_standard_errors else None
    error_diagonals = None if errors is None or diagonals is None else [diagonal_of(h).tolist() for h in errors.hessian]
    basis = solution.stderr_basis if errors is not None else None
    for text in solution.warnings:  # what the solve said of this solution holds whenever it is evaluated
        err.print(f"warning: (from the solve) {text}", markup=False)
    outside = next((w for w in seen if issubclass(w.category, OutsideRegionWarning)), None)
    if outside is not None:
        err.print(f"warning: {outside.message}", markup=False)
    if json_:
        from bsde.reference.result import finite_json

        data = {"solution": str(folder), "problem": solution.problem.name, "dim": dim,
                "region": region.model_dump(mode="json") if region is not None else None, "points": chosen,
                "u": values.tolist(), "delta": deltas.tolist(),
                # per point: outside the trained box (extrapolated; the warning goes to stderr, which a JSON reader
                # may drop)
                "outside": outside_flags,
                # the solve's own u(0, x0) and its error estimate (a region's network may differ from it at x0)
                "y0": solution.u0, "y0_error_estimate": solution.u0_error,
                "y0_error_basis": solution.u0_error_basis if solution.u0_error is not None else None}
        if diagonals is not None:
            data["gamma_diag"], data["gamma_source"] = diagonals, solution.gamma_source
        # the same keys with or without standard errors (null where none, as solve --json has them)
        data["u_stderr"] = errors.u.tolist() if errors is not None else None
        data["delta_stderr"] = errors.grad.tolist() if errors is not None else None
        if diagonals is not None:
            data["gamma_diag_stderr"] = error_diagonals
        data["greeks_stderr_basis"] = basis
        data["solve_warnings"] = solution.warnings
        emit_json(finite_json(data))
        return
    kind = f"region {region.low}..{region.high}" if region is not None else "point solve"
    out.print(f"{solution.problem.name} ({solution.equation.kind}, dim {dim}, {kind})", markup=False)
    estimate = solution.u0_error
    for i, point in enumerate(chosen):
        out.print(f"  x {vector_text(point)}", markup=False)
        spread = (f"  +- {errors.u[i]:.2g}" if errors is not None else
                  f"  +- {estimate:.2g} (estimated)" if estimate is not None and not solution.is_region else "")
        out.print(f"    u      {values[i]:.8g}{spread}", markup=False)
        out.print(f"    delta  {vector_text(deltas[i].tolist())}", markup=False)
        if errors is not None:
            out.print(f"     +-    {vector_text(errors.grad[i].tolist())}", markup=False)
        if diagonals is not None:
            out.print(f"    gamma_ii {vector_text(diagonals[i])}", markup=False)
            if error_diagonals is not None:
                out.print(f"     +-      {vector_text(error_diagonals[i])}", markup=False)
    if diagonals is not None:
        out.print(f"  gamma: {solution.gamma_source}", markup=False)
    if basis is not None:
        out.print(f"  (+-: standard errors from {basis})", markup=False)
    if estimate is not None and not solution.is_region:
        out.print(f"  (u +-: the solve's error estimate of y0, {solution.u0_error_basis})", markup=False)
    at_x0 = (next((i for i, point in enumerate(chosen) if solution.is_at_x0(point)), None) if solution.is_region
             else None)  # the first point that is x0, of a region solve
    if at_x0 is not None and float(values[at_x0]) != solution.u0:
        spread = f" +- {estimate:.2g} (estimated: {solution.u0_error_basis})" if estimate is not None else ""
        out.print(f"  at x0 the solve reported y0 = {solution.u0:.8g}{spread}; u above is the network's, which "
                  "carries the time steps' error that y0 does not (README, Over a region)", markup=False)
