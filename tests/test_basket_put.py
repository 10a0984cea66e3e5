"""The shipped custom problem (problems/basket_put.yaml), solved and referenced from YAML alone (issue 10).

The basket put u(0, x0) = e^{-rT} E (K - mean X_T)^+ on five correlated GBM assets. ``bsde reference`` is
checked against a Monte Carlo written here from the YAML with numpy (its own Cholesky factor, exact
log-normal sampling, its own random numbers); ``bsde solve`` against ``bsde reference`` within the
reference's 95% interval plus 0.5%, as the issue asks. The driver -r y is linear, so y0 alone says nothing
about Z: the solve must also explain most of Var g(X_T) (its final loss well below it).
"""

from __future__ import annotations

import json
import math
from importlib import resources

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from bsde.cli.app import app

runner = CliRunner()


def independent_monte_carlo(pairs: int = 1 << 18, seed: int = 12345) -> tuple[float, float, float]:
    """(price, its standard error, Var g(X_T)) from the YAML file, with numpy only (antithetic pairs)."""
    text = resources.files("bsde.problems").joinpath("basket_put.yaml").read_text()
    eq = yaml.safe_load(text)["equation"]
    params, process, total_time = eq["params"], eq["process"], eq["total_time"]
    assert eq["terminal"] == "relu(K - mean(x))" and eq["driver"] == "-r * y"  # what the formula below prices
    factor = np.linalg.cholesky(np.array(process["correlation"]))
    vol = np.array(process["vol"])
    rng = np.random.default_rng(seed)
    normals = rng.standard_normal((pairs, eq["dim"])) @ factor.T

    def payoff(w: np.ndarray) -> np.ndarray:
        x = eq["x0"] * np.exp((process["drift"] - 0.5 * vol**2) * total_time + vol * math.sqrt(total_time) * w)
        return np.maximum(params["K"] - x.mean(-1), 0.0)

    up, down = payoff(normals), payoff(-normals)
    discounted = math.exp(-params["r"] * total_time) * 0.5 * (up + down)
    return float(discounted.mean()), float(discounted.std(ddof=1) / math.sqrt(pairs)), float(up.var())


def run_json(args: list[str]) -> dict:
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout.strip().splitlines()[-1])


def reference() -> dict:
    return run_json(["reference", "basket_put", "--json", "--seed", "0"])


def test_reference_agrees_with_an_independent_monte_carlo():
    ref = reference()
    assert ref["method"] == "mc"
    mine, stderr, _ = independent_monte_carlo()
    assert abs(ref["value"] - mine) < 4 * math.hypot(ref["stderr"], stderr), (ref, mine, stderr)
    assert ref["ci95"][0] < ref["value"] < ref["ci95"][1] and ref["stderr"] < 0.002 * ref["value"]


def check_solve(args: list[str]) -> dict:
    solved = run_json(["solve", "basket_put", "--json", "-q", "--device", "cpu", "--threads", "1", "--seed", "0",
                       *args])
    ref = reference()
    half_width = 0.5 * (ref["ci95"][1] - ref["ci95"][0])
    assert abs(solved["y0"] - ref["value"]) <= half_width + 0.005 * abs(ref["value"]), (solved["y0"], ref)
    assert solved["reference"] == pytest.approx(ref["value"])  # solve found the same reference by itself
    _, _, variance = independent_monte_carlo(pairs=1 << 16)
    assert solved["final_loss"] < 0.1 * variance, (solved["final_loss"], variance)  # Z explains g, not y0 alone
    return solved


def test_solve_at_the_files_settings_agrees_with_the_reference():
    """About 15 s on one core."""
    check_solve([])


@pytest.mark.slow
def test_fast_preset_solve_agrees_with_the_reference():
    check_solve(["--preset", "fast"])
