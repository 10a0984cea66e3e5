"""Bad arguments to the Python API are one-line bsde errors naming the argument, not errors from inside torch."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
import torch

import bsde
from bsde.errors import ArgumentError, ProblemError

from conftest import TINY


@pytest.fixture(scope="module")
def tiny_problem() -> bsde.Problem:
    return bsde.load_problem("hjb", {**TINY, "solver.iterations": 2})


@pytest.mark.parametrize(("arguments", "message"), [
    ({"seed": "a"}, "seed: expected an integer, got str 'a'"), ({"seed": 1.5}, "seed: expected an integer"),
    ({"seed": None}, "seed: expected an integer"), ({"seed": 2**70}, "seed: must be at most"),
    ({"seed": -1}, "seed: must be at least 0"), ({"threads": "2"}, "threads: expected an integer"),
    ({"threads": 0}, "threads: must be at least 1"), ({"checkpoint_every": 0}, "checkpoint_every: must be at least 1"),
    ({"on_nan": "bogus"}, "on_nan: expected one of 'stop', 'rollback'"), ({"reference": 4.5}, "reference: expected"),
    ({"device": 0}, "device: expected"), ({"checkpoint": 5}, "checkpoint: expected a folder"),
    ({"resume": ["run"]}, "resume: expected a folder"),
])
def test_solve_names_the_bad_argument(tiny_problem, arguments, message):
    with pytest.raises(ArgumentError, match=f"^{message}"):
        bsde.solve(tiny_problem, **{"threads": 1, **arguments})


def test_solve_takes_a_torch_device(tiny_problem):
    assert bsde.solve(tiny_problem, threads=1, device=torch.device("cpu")).device == "cpu"


def test_reference_and_greeks_name_the_bad_argument():
    hjb = bsde.load_problem("hjb", {"equation.dim": 2})
    with pytest.raises(ArgumentError, match="^paths: expected an integer"):
        bsde.reference(hjb, method="cole-hopf", paths="10")
    with pytest.raises(ArgumentError, match="^seed: expected an integer"):
        bsde.reference(hjb, method="cole-hopf", paths=1000, seed="a")
    with pytest.raises(ArgumentError, match="^method: expected a method name"):
        bsde.reference(hjb, method=None)
    with pytest.raises(ArgumentError, match="^overrides: expected a mapping"):
        bsde.load_problem("hjb", "equation.dim=3")


def test_reference_greeks_takes_an_equation():
    """As bsde.reference does: a put's Black-Scholes delta and gamma from an Equation instance."""
    put = bsde.custom_equation(dim=1, x0=90.0, process=bsde.GBM(0.05, 0.25),
                               terminal=lambda x: (100 - x[..., 0]).relu(), driver=lambda t, x, y, z: -0.05 * y)
    greeks = bsde.reference_greeks(put, "pde-1d")
    d1 = (math.log(90 / 100) + (0.05 + 0.25**2 / 2)) / 0.25
    assert greeks.delta[0] == pytest.approx(-0.5 * math.erfc(d1 / math.sqrt(2)), abs=2e-3)  # N(d1) - 1


@pytest.mark.parametrize(("arguments", "message"), [
    ({"process": "gbm"}, "custom_equation: process: expected a process"),
    ({"terminal": 5}, "custom_equation: terminal: expected a function, got int"),
    ({"dim": 0}, "custom_equation: dim: "),
    ({"x0": [1.0, 2.0, 3.0]}, "custom_equation: x0: expected a number or a list"),
    ({"x0": math.nan}, "custom_equation: x0: "), ({"total_time": 0}, "custom_equation: total_time: "),
    ({"process": bsde.GBM(0.05, [0.2, 0.3, 0.4])}, "custom_equation: vol: expected a number or a list of dim = 2"),
    ({"driver": lambda t, x, y, z: -0.05 * y * math.exp(-t)}, "driver: calling it as f.* with t a tensor"),
])
def test_custom_equation_names_the_bad_argument(arguments, message):
    given = {"dim": 2, "x0": 100.0, "process": bsde.GBM(0.05, 0.2), "terminal": lambda x: x.sum(-1), **arguments}
    with pytest.raises(ProblemError, match=f"^{message}"):
        bsde.custom_equation(**given)


@pytest.mark.parametrize(("make", "message"), [
    (lambda: bsde.BrownianMotion(-1.0), "sigma: must be positive"), (lambda: bsde.BrownianMotion(0.0), "sigma: must"),
    (lambda: bsde.BrownianMotion(True), "sigma: expected a number"), (lambda: bsde.GBM(0.05, [0.2, -0.1]), "vol: "),
])
def test_processes_refuse_bad_parameters(make, message):
    with pytest.raises(ProblemError, match=f"^{message}"):
        make()


def test_a_non_finite_reference_is_an_error():
    """A payoff that is infinite where the paths go: no 'value nan' reported as a result."""
    blows_up = bsde.custom_equation(dim=1, x0=1.0, process=bsde.GBM(0.0, 0.2),
                                    terminal=lambda x: 1 / (x[..., 0] - x[..., 0]), driver=lambda t, x, y, z: -0.05 * y)
    for method in ("mc", "mlp"):
        with pytest.raises(ProblemError, match=f"the {method} reference is (nan|inf)"):
            bsde.reference(blows_up, method, paths=64)


def test_a_non_finite_reference_of_a_file_names_the_file(tmp_path):
    """QA: 'logzero: the mc reference is nan' named the problem, not its file."""
    path = tmp_path / "logzero.yaml"
    path.write_text("equation: {kind: custom, dim: 1, x0: 1.0, terminal: 'log(x[0] - 0.5)', driver: '-0.05 * y',\n"
                    "           process: {kind: brownian, sigma: 1.0}}\n")
    with pytest.raises(ProblemError, match=f"^{re.escape(str(path))}: the mc reference is nan"):
        bsde.reference(bsde.load_problem(str(path)), "mc", paths=4096)


def test_solution_names_bad_points_and_steps(tmp_path):
    put = bsde.custom_equation(dim=1, x0=100.0, process=bsde.GBM(0.05, 0.2),
                               terminal=lambda x: (100 - x[..., 0]).relu(), driver=lambda t, x, y, z: -0.05 * y)
    result = bsde.solve(put, solver={"iterations": 2, "time_steps": 3, "batch_size": 8, "valid_size": 8}, threads=1)
    with pytest.raises(ArgumentError, match="^points: expected real numbers"):
        result.u("abc")
    with pytest.raises(ArgumentError, match="^points: expected real numbers"):
        result.u([[1.0, 2.0], [1.0]])
    with pytest.raises(ArgumentError, match="^points: expected real numbers .*, got NoneType None$"):
        result.u(None)  # not 'every coordinate must be a finite number' (QA)
    for not_real in (np.array([[100.0 + 1j]]), np.array([[True]]), torch.tensor([[True]]), [["100"]],
                     np.array([["100"]], dtype=object)):
        with pytest.raises(ArgumentError,
                           match=r"^points: expected real numbers .*\(of (complex128|bool|<U3|object)\)$"):
            result.u(not_real)  # text too: "100" was read as a number (QA)
    with pytest.raises(ArgumentError, match="^n: expected an integer, got float 1.5"):
        result.z(1.5, [[100.0]])
    assert np.isfinite(result.z(1, [[100.0]])).all()
    with pytest.raises(ProblemError, match="cannot be saved: .*Python functions"):
        result.solution.save(tmp_path / "saved")
    assert not (tmp_path / "saved").exists()
