"""A trained solution you can keep: u0, delta, gamma and Z_n; u and its derivatives over solver.region; save, load.

delta = grad u(0, x0) = sigma(x0)^{-T} Z_0, gamma = Hess u(0, x0):
- a region solve (``solver.region``) has u(0, .) as a network over the box: delta and gamma by autograd at
  any x (the full Hessian up to GAMMA_FULL_MAX_DIM = 100 dimensions, its diagonal above), and their standard
  errors from the refit's paths: sqrt((K - 1)/K sum_k (q_k - mean q)^2) over the jackknife replicates q_k
  (the last layer refitted without each of K groups of the paths; ``standard_errors``);
- a point solve knows Z_0 at x0 only; its gamma is the first-step estimate
  e^{-r dt} d^2/dx0^2 E[u(t_1, X_1)] from the trained Z_1 (:func:`bsde.greeks.first_step_greeks`), exact up to
  the network's error for f = -r y and O(dt) otherwise; u(0, x) elsewhere is not available.

A saved solution is a folder with ``solution.pt`` (weights and the resolved configuration, loadable with
``torch.load(weights_only=True)``) and ``config.yaml`` (the same configuration, readable); loading refuses a
folder saved by another version, or whose config.yaml no longer matches the weights.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from bsde import __version__
from bsde.arguments import describe, integer, path as folder_argument
from bsde.checkpoint import flatten, format_hint, readable_format
from bsde.errors import ArgumentError, ProblemError
from bsde.greeks import GAMMA_FULL_MAX_DIM, GAMMA_MAX_DIM, TRANSITION_GREEKS, first_step_greeks, gradient_from_z
from bsde.io import (check_writable, ensure_folder, temporary_files, torch_load_safely, torch_save_atomic,
                     write_text_atomic)
from bsde.model import DeepBSDE, terminal_z
from bsde.problem import Problem, problem_from_dict, read_yaml
from bsde.region_model import JACKKNIFE_GROUPS, RegionBSDE, make_model
from bsde.runtime import resolve_device

SOLUTION_FILE = "solution.pt"
CONFIG_FILE = "config.yaml"
FORMAT = 2  # 2: a correlation matrix's symmetric root (Z of such a solution changed meaning)
#: how close a point must be to x0 for a point solve to answer there (relative, per coordinate): loose enough for
#: x0 written in float32 (torch's default dtype rounds 0.1 by 1.5e-8 relative), far below any solve's accuracy
SAME_POINT = 1e-6


def check_save_folder(folder: Path, problem: Problem | None = None) -> Path:
    """Fail before training when ``folder`` cannot take a saved solution: a file, a folder with other files, or
    (with ``problem``) one that holds the solution of another problem, another name or equation section (QA: a
    region solve's was replaced without a word). A previous solution of the same problem there is replaced (a
    rerun); nothing else is overwritten."""
    folder = folder_argument("folder", folder)
    if folder.exists() and not folder.is_dir():
        raise ProblemError(f"save folder {folder}: is a file, expected a folder")
    if folder.is_dir():
        ours = {SOLUTION_FILE, CONFIG_FILE} if (folder / SOLUTION_FILE).is_file() else {SOLUTION_FILE}
        ours |= {p.name for name in ours for p in temporary_files(folder / name)}  # an interrupted save's debris
        others = sorted(p.name for p in folder.iterdir() if p.name not in ours)  # a config.yaml alone is not ours
        if others:
            raise ProblemError(f"save folder {folder}: holds other files ({', '.join(others[:3])}); give a new or "
                               "empty folder")
        if (folder / SOLUTION_FILE).exists():
            saved = _saved_solution(folder / SOLUTION_FILE)
            if saved is None:
                raise ProblemError(f"save folder {folder}: its {SOLUTION_FILE} is not a solution bsde saved; not "
                                   "replacing it: give a new or empty folder")
            if problem is not None and (other := _another_problem(saved, problem)) is not None:
                raise ProblemError(f"save folder {folder}: holds the solution of another problem ({other}); not "
                                   "replacing it: give a new or empty folder (or delete that one)")
    check_writable(folder / SOLUTION_FILE)
    return folder


def _saved_solution(path: Path) -> dict[str, Any] | None:
    """What ``path`` holds where it is a solution bsde saved (of any format: a newer one is replaced too)."""
    try:
        data = torch_load_safely(path, "solution")
    except ProblemError:
        return None
    return data if isinstance(data, dict) and "bsde_version" in data and "config" in data else None


def _another_problem(saved: dict[str, Any], problem: Problem) -> str | None:
    """None where a saved solution is of ``problem`` (its name and equation section); else which problem it is, in
    a few words (its name, and the equation keys that differ where both sections are mappings)."""
    theirs = saved["config"].get("equation") if isinstance(saved["config"], dict) else None
    ours = problem.to_dict()["equation"]
    if saved.get("name") == problem.name and theirs == ours:
        return None
    keys = ([key for key in dict.fromkeys([*theirs, *ours]) if theirs.get(key) != ours.get(key)]
            if isinstance(theirs, dict) else [])
    return f"'{saved.get('name')}'" + (f", whose equation differs in {', '.join('equation.' + k for k in keys[:3])}"
                                       if keys else "")


@dataclass(frozen=True)
class StandardErrors:
    """Standard errors at n points of a region solve: of u (n,), grad u (n, d) and Hess u (n, d, d), or its
    diagonals (n, d) above GAMMA_FULL_MAX_DIM dimensions. They count the refit's path noise, not the networks'
    bias (the time step, the step networks)."""

    u: np.ndarray
    grad: np.ndarray
    hessian: np.ndarray


def _derivatives(function, points: torch.Tensor, *, hessian: bool, full: bool):
    """(value (n,), grad (n, d), Hessian (n, d, d) symmetrised if ``full`` else its diagonals (n, d), or None
    without ``hessian``) of ``function``: (n, d) -> (n,), whose value at each point depends on that point only."""
    d = points.shape[1]
    with torch.enable_grad():
        leaf = points.detach().requires_grad_(True)
        value = function(leaf)
        (grad,) = torch.autograd.grad(value.sum(), leaf, create_graph=hessian)
        if not hessian:
            return value.detach(), grad, None
        # row i of every point's Hessian in one backward pass (the points are independent)
        rows = [torch.autograd.grad(grad[:, i].sum(), leaf, retain_graph=i < d - 1)[0] for i in range(d)]
    second = torch.stack(rows, dim=1)  # (n, d, d): [k, i, j] = d^2 f / dx_i dx_j at point k
    second = 0.5 * (second + second.transpose(1, 2)) if full else second.diagonal(dim1=1, dim2=2)
    return value.detach(), grad.detach(), second


def diagonal_of(hessian: np.ndarray) -> np.ndarray:
    """The diagonal (d,) of one point's Hessian (or of its standard errors): of the (d, d) matrix, or the (d,)
    diagonal itself where only that is kept (above GAMMA_FULL_MAX_DIM)."""
    return np.diagonal(hessian).copy() if hessian.ndim == 2 else hessian


#: up to this dimension QA found a region's standard errors about right (error / s.e. rms 1.0-1.4; README, "The refit")
CALIBRATED_UP_TO_DIM = 3


class OutsideRegionWarning(UserWarning):
    """Points outside the box a region solve was trained on: its network extrapolates there."""


class Solution:
    """The trained model of one solve with the problem it solves (see the module docstring)."""

    def __init__(self, model: DeepBSDE, problem: Problem, *, seed: int = 0, u0: float | None = None,
                 warnings: list[str] | None = None, u0_error: float | None = None, u0_error_basis: str | None = None):
        self.model = model.eval()
        self.problem = problem
        self.equation = problem.equation
        self.seed = seed
        #: what the solve warned of (the list SolveResult.warnings; saved and loaded with the solution)
        self.warnings = warnings if warnings is not None else []
        #: the solve's error estimate of u0 and what it counts (SolveResult.error_estimate, .error_basis), or None
        self.u0_error = u0_error
        self.u0_error_basis = u0_error_basis
        self._u0 = u0
        self._first_step = None
        self._x0_errors = None

    # ------------------------------------------------------------------ at x0
    @property
    def is_region(self) -> bool:
        """Whether u(0, .) was trained over a box (``solver.region``) rather than at x0 alone."""
        return isinstance(self.model, RegionBSDE)

    @property
    def x0(self) -> np.ndarray:
        return np.array(self.equation.x_start)

    @property
    def u0(self) -> float:
        """u(0, x0): the value the solve reported (for HJB-type drivers the corrected control bound), else the
        trained Y_0."""
        if self._u0 is not None:
            return self._u0
        with torch.no_grad():
            return float(self.model.y_start)

    @property
    def z0(self) -> np.ndarray:
        with torch.no_grad():
            return self.model.z_start.detach().cpu().numpy().astype(float)

    @property
    def delta(self) -> np.ndarray:
        """grad u(0, x0) (d,): sigma(x0)^{-T} Z_0."""
        like = self.model.y0
        x0 = torch.as_tensor(self.equation.x_start, dtype=like.dtype, device=like.device)
        with torch.no_grad():
            step = self.equation.total_time / self.model.time_steps  # the step Z_0 hedges
            return gradient_from_z(self.equation.process, x0, self.model.z_start, 0.0, over=step).cpu().numpy().astype(
                float)

    @property
    def gamma(self) -> np.ndarray | None:
        """Hess u(0, x0): (d, d) up to GAMMA_FULL_MAX_DIM dimensions, its diagonal (d,) above; None where unavailable
        (a point solve with one time step or above GAMMA_MAX_DIM dimensions)."""
        if self.is_region:
            return self.hessian(self.x0)[0]
        greeks = self._first_step_greeks()
        return None if greeks is None else greeks.gamma.cpu().numpy().astype(float)

    @property
    def gamma_stderr(self) -> np.ndarray | None:
        """gamma's standard error, shaped as gamma: over a region the refit's jackknife (``standard_errors`` at x0;
        None without a refit; not the networks' bias). None for a point solve: its first step's Monte Carlo error
        leaves out Z_1's network error, which a QA pass found 20-50 times larger, so it would mislead."""
        return self._errors_at_x0().hessian[0] if self.has_standard_errors else None

    @property
    def gamma_diag_stderr(self) -> np.ndarray | None:
        error = self.gamma_stderr
        return None if error is None else diagonal_of(error)

    @property
    def delta_stderr(self) -> np.ndarray | None:
        """delta's standard error (d,) over a region, from the refit's jackknife (``standard_errors`` at x0); None
        for a point solve or without a refit."""
        return self._errors_at_x0().grad[0] if self.has_standard_errors else None

    @property
    def stderr_basis(self) -> str | None:
        """What delta's and gamma's standard errors count, in words (None where there are none)."""
        if not self.has_standard_errors:
            return None
        if self.equation.dim <= CALIBRATED_UP_TO_DIM:
            return "the refit's jackknife (not the networks' bias)"
        return ("the refit's jackknife (not the networks' bias, which at 5 and 10 dimensions was 2-10x these "
                "standard errors, and up to 56x for gamma: check against bsde reference --greeks)")

    @property
    def has_standard_errors(self) -> bool:
        """Whether :meth:`standard_errors` can answer: a region solve whose refit left its jackknife replicates."""
        return self.is_region and self.model.has_replicates

    def _errors_at_x0(self) -> StandardErrors:
        if self._x0_errors is None:
            self._x0_errors = self.standard_errors(self.x0)
        return self._x0_errors

    @property
    def gamma_diag(self) -> np.ndarray | None:
        gamma = self.gamma
        return None if gamma is None else diagonal_of(gamma)

    @property
    def gamma_source(self) -> str:
        """How gamma is obtained, in words."""
        if self.is_region:
            return "Hessian of the network of u(0, x) (autograd)"
        if not self._has_first_step():
            return ("none (a point solve's gamma needs 2 or more time steps, at most 10,000 dimensions and a "
                    "Brownian or GBM process)")
        exact = "exact for f = -r y" if self.equation.driver_is_linear else "O(dt) for this driver"
        discount = "e^(-r dt) " if self.equation.discount_rate else ""  # r = 0 where f is not -r y
        return (f"first step: {discount}Hess E[u(t_1, X_1)] from Z_1, likelihood ratio ({exact}); no error bar: "
                "Z_1's network error, often tens of times the Monte Carlo error, is not measured (its sign too has "
                "been wrong: check with bsde reference --greeks or a region solve)")

    def _has_first_step(self) -> bool:
        return (self.model.time_steps >= 2 and self.equation.dim <= GAMMA_MAX_DIM
                and isinstance(self.equation.process, TRANSITION_GREEKS))

    def _first_step_greeks(self):
        if not self._has_first_step():
            return None
        if self._first_step is None:
            # a CPU stream: a point solve's gamma is the same numbers (to rounding) on whatever device it is loaded
            generator = torch.Generator(device="cpu").manual_seed(self.seed + 3)
            self._first_step = first_step_greeks(self.model, generator=generator)
        return self._first_step

    # ------------------------------------------------------------------ at any x
    def _points(self, x: Any) -> torch.Tensor:
        """x as an (n, d) tensor of the model's dtype and device; a (d,) point becomes (1, d), a number the point
        with every coordinate that number."""
        like = self.model.y0
        expected = f"points: expected real numbers in an (n, {self.equation.dim}) array, got {describe(x)}"
        if x is None:  # np.asarray(None) is an object array that reads as nan
            raise ArgumentError(expected)
        try:
            given = np.asarray(x.detach().cpu() if isinstance(x, torch.Tensor) else x)
            text = given.dtype.kind == "O" and any(isinstance(v, (str, bytes)) for v in given.ravel())
            # bools, complex numbers, dates and text are refused (astype would read "100" as a number)
            values = None if given.dtype.kind in "bcmMUS" or text else given.astype(float)
        except (TypeError, ValueError) as exc:
            raise ArgumentError(f"{expected} ({str(exc).splitlines()[0]})") from None
        if values is None:
            raise ArgumentError(f"{expected} (of {given.dtype})")
        d = self.equation.dim
        points = torch.as_tensor(values, dtype=like.dtype, device=like.device)
        points = points.expand(1, d) if points.ndim == 0 else points  # a number sets every coordinate (as --x)
        points = points.unsqueeze(0) if points.ndim == 1 else points
        if points.ndim != 2 or points.shape[1] != d:
            raise ProblemError(f"points: expected an (n, {d}) array (or one point of {d} number{'s' if d > 1 else ''}), "
                               f"got shape {tuple(points.shape)}")
        if not bool(torch.isfinite(points).all()):
            raise ProblemError("points: every coordinate must be a finite number")
        if self.equation.process.positive and not bool((points > 0).all()):  # log-normal states: no u there
            bad = points[~(points > 0).all(-1)][0].tolist()
            raise ProblemError(f"points: a {type(self.equation.process).__name__}'s states are positive, got "
                               f"{bad if d > 1 else bad[0]}")
        return points

    def is_at_x0(self, point: Any) -> bool:
        """Whether one point (d,) is x0, to the tolerance a point solve answers at."""
        points = self._points(point)
        return bool(self._same_as_x0(points).all())

    def _same_as_x0(self, points: torch.Tensor) -> torch.Tensor:
        x0 = torch.as_tensor(self.equation.x_start, dtype=points.dtype, device=points.device)
        return ((points - x0).abs() <= SAME_POINT * (1.0 + x0.abs())).all(-1)

    def _at_x0_only(self, points: torch.Tensor, what: str) -> None:
        if not bool(self._same_as_x0(points).all()):
            raise ProblemError(f"a point solve knows {what} at x0 only; train over a box (solver.region: "
                               "{low: ..., high: ...}) to evaluate elsewhere")

    def outside(self, x: Any) -> int:
        """How many of the points x (n, d) lie outside the box a region solve was trained on (0 for a point solve)."""
        return sum(self.outside_flags(x))

    def outside_flags(self, x: Any) -> list[bool]:
        """Per point of x (n, d): whether it lies outside the box a region solve was trained on (False for a point
        solve, which has no box)."""
        return self._flags_outside(self._points(x))

    def _flags_outside(self, points: torch.Tensor) -> list[bool]:
        region = self.problem.solver.region
        return [region is not None and not region.contains(p) for p in points.tolist()]

    def _rows_outside(self, points: torch.Tensor) -> list[int]:
        return [i for i, outside in enumerate(self._flags_outside(points)) if outside]

    def _extrapolating(self, points: torch.Tensor) -> None:
        if self.is_region and (rows := self._rows_outside(points)):
            region = self.problem.solver.region
            shown = ", ".join(map(str, rows[:5])) + (", ..." if len(rows) > 5 else "")
            warnings.warn(f"{len(rows)} of {points.shape[0]} points lie outside the trained box [{region.low}, "
                          f"{region.high}] (extrapolated): point{'s' if len(rows) > 1 else ''} {shown}, counting "
                          "from 0 in the order given (a points file's blank and comment lines not counted)",
                          OutsideRegionWarning, stacklevel=3)

    def u(self, x: Any) -> np.ndarray:
        """u(0, x) for points x (n, d) -> (n,): the network over a region (at x0 too; an OutsideRegionWarning
        for points outside its box); a point solve answers u0 at x0 and refuses other points (ProblemError)."""
        points = self._points(x)
        if not self.is_region:
            self._at_x0_only(points, "u")
            return np.full(points.shape[0], self.u0)
        self._extrapolating(points)
        with torch.no_grad():
            return self.model.value(points).cpu().numpy().astype(float)

    def grad(self, x: Any) -> np.ndarray:
        """grad u(0, x) (the delta) for points x (n, d) -> (n, d)."""
        points = self._points(x)
        if not self.is_region:
            self._at_x0_only(points, "the gradient")
            return np.tile(self.delta, (points.shape[0], 1))
        self._extrapolating(points)
        return _derivatives(self.model.value, points, hessian=False, full=False)[1].cpu().numpy().astype(float)

    def hessian(self, x: Any) -> np.ndarray:
        """Hess u(0, x) for points x (n, d) -> (n, d, d), or the diagonals (n, d) above GAMMA_FULL_MAX_DIM."""
        points = self._points(x)
        d = self.equation.dim
        if not self.is_region:
            self._at_x0_only(points, "the Hessian")
            gamma = self.gamma
            if gamma is None:
                raise ProblemError(f"no gamma for this point solve: {self.gamma_source}")
            return np.tile(gamma, (points.shape[0],) + (1,) * gamma.ndim)
        self._extrapolating(points)
        hessian = _derivatives(self.model.value, points, hessian=True, full=d <= GAMMA_FULL_MAX_DIM)[2]
        return hessian.cpu().numpy().astype(float)

    def standard_errors(self, x: Any) -> StandardErrors:
        """Standard errors of u, grad u and Hess u at points x (n, d) of a region solve, from its refit's jackknife:
        sqrt((K - 1)/K sum_k (q_k - mean q)^2) over the K = JACKKNIFE_GROUPS replicates (the refit's last layer
        fitted without each group of its paths). The refit's path noise, which dominates a region's gamma; not the
        networks' bias. A point solve, or a region solved without its refit, has none (ProblemError)."""
        points = self._points(x)
        if not self.is_region:
            raise ProblemError("standard errors come from a region's refit (a jackknife over its paths); a point "
                               "solve has none: train over a box (solver.region: {low: ..., high: ...})")
        if not self.model.has_replicates:
            raise ProblemError("standard errors come from the refit, and this region solve has none (solved with "
                               "solver.refit: false, or saved before bsde kept them)")
        self._extrapolating(points)
        full = self.equation.dim <= GAMMA_FULL_MAX_DIM
        squares = None
        for k in range(JACKKNIFE_GROUPS):
            parts = _derivatives(lambda p, k=k: self.model.replicate_deviations(p)[:, k], points, hessian=True,
                                 full=full)
            squares = [q.square() if squares is None else squares[i] + q.square() for i, q in enumerate(parts)]
        factor = (JACKKNIFE_GROUPS - 1) / JACKKNIFE_GROUPS
        return StandardErrors(*((factor * total).sqrt().cpu().numpy().astype(float) for total in squares))

    def z(self, n: int, x: Any) -> np.ndarray:
        """Z_n = sigma^T grad u(t_n, .) at points x (m, d) -> (m, d), n = 0..N (Z_N = sigma^T grad g)."""
        steps = self.model.time_steps
        n = integer("n", n)
        if not 0 <= n <= steps:
            raise ProblemError(f"n: expected a step 0..{steps}, got {n}")
        points = self._points(x)
        if n == steps:
            return terminal_z(self.equation, points).detach().cpu().numpy().astype(float)
        if n == 0 and not self.is_region:
            self._at_x0_only(points, "Z_0")
        with torch.no_grad():
            return self.model.z_at(n, points).cpu().numpy().astype(float)

    # ------------------------------------------------------------------ keeping it
    def save(self, folder: Path, summary: dict[str, Any] | None = None) -> Path:
        """Write ``folder/solution.pt`` and ``folder/config.yaml`` (each atomically); returns the folder. A folder that
        holds other files (:func:`check_save_folder`), a ``summary`` of other than numbers, strings, lists and dicts,
        or a solution whose configuration would not load back (an equation of Python functions) is a ProblemError."""
        config = self.problem.to_dict()
        try:  # what load will read back: an equation of Python functions has no text to store
            problem_from_dict(config, self.problem.name)
        except ProblemError as exc:
            from bsde.equations.functions import CustomEquation

            if type(self.problem.equation) is CustomEquation:  # of Python functions (kind: custom from YAML saves)
                raise ProblemError(f"{folder}: this solution cannot be saved: an equation written as Python functions "
                                   "lives only in this process, and its configuration would not load back: keep the "
                                   "Solution object, or write the equation as YAML (kind: custom)") from None
            raise ProblemError(f"{folder}: this solution cannot be saved: its configuration would not load back "
                               f"({exc})") from None
        summary = _plain(summary or {}, "summary")
        folder = ensure_folder(check_save_folder(folder, self.problem))
        payload = {
            "format": FORMAT, "bsde_version": __version__, "name": self.problem.name, "config": config,
            "seed": self.seed, "u0": self._u0, "model": {k: v.detach().cpu() for k, v in self.model.state_dict().items()},
            "scales": {"z_scale": float(self.model.z_scale), "y_offset": float(self.model.y_offset),
                       "y_scale": float(self.model.y_scale)},
            "summary": summary, "warnings": [str(text) for text in self.warnings],
            "u0_error": self.u0_error, "u0_error_basis": self.u0_error_basis,
        }
        torch_save_atomic(folder / SOLUTION_FILE, payload)
        write_text_atomic(folder / CONFIG_FILE, yaml.safe_dump(config, sort_keys=False))
        return folder

    @classmethod
    def load(cls, folder: Path, *, device: str | torch.device = "cpu") -> Solution:
        """The solution saved in ``folder`` on ``device`` (auto, cpu, cuda or cuda:N); one-line :class:`ProblemError`
        for anything else (a :class:`BSDEError` for a device this machine lacks)."""
        device = resolve_device(device)
        folder = folder_argument("folder", folder)
        path = folder / SOLUTION_FILE
        if folder.is_file():
            raise ProblemError(f"{folder}: is a file, expected the folder written by bsde solve ... --save DIR")
        if not folder.is_dir():
            raise ProblemError(f"{folder}: no such folder")
        if not path.exists():
            raise ProblemError(f"{folder}: not a saved solution ({SOLUTION_FILE} missing; save one with "
                               "bsde solve ... --save DIR)")
        data = torch_load_safely(path, "solution")
        if not isinstance(data, dict) or "config" not in data or not readable_format(data.get("format"), FORMAT,
                                                                                     data["config"]):
            raise ProblemError(f"{path}: not a bsde solution of format {FORMAT}{format_hint(data, FORMAT)}")
        if data.get("bsde_version") != __version__:
            raise ProblemError(f"{path}: saved by bsde {data.get('bsde_version')}, this is bsde {__version__}; "
                               "solve again to evaluate with this version")
        try:
            problem = problem_from_dict(data["config"], str(data.get("name", "solution")))
        except ProblemError as exc:
            raise ProblemError(f"{path}: the saved configuration is not valid here ({exc})") from None
        config_file = folder / CONFIG_FILE
        if config_file.exists():
            written = read_yaml(config_file)
            changed = _differences(data["config"], written)
            if changed:
                raise ProblemError(f"{config_file}: differs from the configuration the weights were trained with "
                                   f"({'; '.join(changed[:3])})")
        model = make_model(problem.equation, problem.solver, device=device)
        try:
            model.load_state_dict(data["model"])
        except (RuntimeError, KeyError, TypeError) as exc:
            reason = str(exc).strip().splitlines()[0]
            raise ProblemError(f"{path}: the weights do not fit the saved configuration ({reason})") from None
        scales = data.get("scales", {})
        model.z_scale = float(scales.get("z_scale", 1.0))
        model.y_offset, model.y_scale = float(scales.get("y_offset", 0.0)), float(scales.get("y_scale", 1.0))
        u0, said = data.get("u0"), data.get("warnings", [])
        said = [str(text) for text in said] if isinstance(said, list) else []
        error, basis = data.get("u0_error"), data.get("u0_error_basis")  # absent in solutions saved before them
        return cls(model, problem, seed=int(data.get("seed", 0)), u0=None if u0 is None else float(u0), warnings=said,
                   u0_error=float(error) if isinstance(error, (int, float)) else None,
                   u0_error_basis=basis if isinstance(basis, str) else None)


def _plain(value: Any, where: str) -> Any:
    """``value`` as what ``torch.load(weights_only=True)`` reads back: dicts with string keys, lists, strings,
    numbers, None (numpy numbers and arrays, and tensors, become numbers and lists); a ProblemError for the rest."""
    if isinstance(value, (np.generic, np.ndarray, torch.Tensor)):  # before float: np.float64 is a float
        return _plain(value.tolist(), where)
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, dict):
        if not all(isinstance(key, str) for key in value):
            raise ProblemError(f"{where}: keys must be strings, got {sorted(map(repr, value))[:3]}")
        return {key: _plain(item, f"{where}.{key}") for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item, f"{where}[{i}]") for i, item in enumerate(value)]
    raise ProblemError(f"{where}: a saved summary holds numbers, strings, lists and dicts; got {type(value).__name__}")


def _differences(saved: dict[str, Any], written: dict[str, Any]) -> list[str]:
    """'key: trained with A, file says B' for each key whose value differs."""
    old, new = flatten(saved), flatten(written)
    return [f"{key}: trained with {old.get(key)!r}, file says {new.get(key)!r}"
            for key in sorted(old.keys() | new.keys()) if old.get(key) != new.get(key)]
