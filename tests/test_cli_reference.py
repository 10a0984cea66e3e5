"""`bsde reference`, and `bsde solve` taking the engine's reference when the problem has none."""

import json
import math

import pytest
from typer.testing import CliRunner

from bsde.cli.app import app
from conftest import tiny_args

runner = CliRunner()
KEYS = ("problem", "dim", "value", "stderr", "ci95", "method", "paths", "wall_s", "details")


def reference_json(*args: str) -> dict:
    result = runner.invoke(app, ["reference", *args, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)  # stdout holds exactly one JSON object


def test_hjb_json_by_its_formula_and_by_the_radial_solve():
    data = reference_json("hjb", "--set", "equation.dim=3")
    assert tuple(data) == KEYS
    assert data["problem"] == "hjb" and data["dim"] == 3 and data["method"] == "semi-analytic"
    assert data["stderr"] is None and data["ci95"] is None and data["paths"] is None
    assert data["details"]["quad_error"] < 1e-10
    radial = reference_json("hjb", "--set", "equation.dim=3", "--method", "radial")
    assert abs(radial["details"]["half_resolution_difference"]) < 1e-3
    assert abs(radial["value"] - data["value"]) < radial["details"]["error_estimate"]  # about 0.78888


def test_paths_for_a_deterministic_method_is_a_warning():
    result = runner.invoke(app, ["reference", "hjb", "--set", "equation.dim=3", "--paths", "5", "--json", "-q"])
    assert result.exit_code == 0 and json.loads(result.stdout)["method"] == "semi-analytic"
    assert result.stderr == ("warning: --paths: method 'semi-analytic' is deterministic and draws no paths "
                             "(ignored unless it fails and auto goes on to a sampling method)\n")
    named = runner.invoke(app, ["reference", "hjb", "--set", "equation.dim=3", "--paths", "5", "--method",
                                "semi-analytic", "--json", "-q"])
    assert named.stderr == ("warning: --paths: method 'semi-analytic' is deterministic and draws no paths "
                            "(ignored)\n")


def test_max_call_mc_brackets_the_semi_analytic_value():
    mc = reference_json("max_call", "--set", "equation.dim=3", "--method", "mc", "--paths", "2000", "--seed", "1")
    exact = reference_json("max_call", "--set", "equation.dim=3", "--method", "semi-analytic")
    assert mc["method"] == "mc" and mc["paths"] == 2000 and mc["stderr"] > 0
    low, high = mc["ci95"]
    assert low < mc["value"] < high and high - low == pytest.approx(2 * 1.96 * mc["stderr"])
    assert abs(mc["value"] - exact["value"]) < 5 * mc["stderr"]
    assert exact["method"] == "semi-analytic" and exact["stderr"] is None


def test_human_output_and_progress_on_stderr():
    result = runner.invoke(app, ["reference", "max_call", "--set", "equation.dim=2", "--method", "mc",
                                 "--paths", "1000"])
    assert result.exit_code == 0, result.output
    for text in ("value", "+-", "95% CI", "method  mc", "paths   1000", "wall"):
        assert text in result.stdout
    assert "100%" in result.stderr and "100%" not in result.stdout


@pytest.mark.parametrize(("args", "message", "lines"), [
    (["max_call", "--set", "equation.dim=3", "--method", "radial"], "method 'radial' does not apply", 1),
    (["default_risk", "--method", "mc"], "applicable: mlp", 1),
    # the path count is checked by the method itself, after the announcement line
    (["max_call", "--set", "equation.dim=3", "--method", "mc", "--paths", "2"],
     "paths: mc needs at least 64 (32 antithetic pairs; its 95% interval is a normal approximation), got 2", 2),
])
def test_inapplicable_method_is_one_line_exit_2(args, message, lines):
    result = runner.invoke(app, ["reference", *args, "--json"])
    assert result.exit_code == 2
    assert result.stdout == ""
    assert message in result.stderr.splitlines()[-1] and result.stderr.count("\n") == lines


def test_solve_without_reference_gets_the_engines(tmp_path):
    args = ["solve", "hjb", *tiny_args(**{"equation.dim": 3, "solver.iterations": 10}), "--json", "-q",
            "--threads", "1"]
    data = json.loads(runner.invoke(app, args).stdout)
    assert "semi-analytic" in data["reference_source"] and "bsde.reference" in data["reference_source"]
    assert data["reference"] == pytest.approx(0.78888, abs=1e-4) and data["reference_stderr"] is None
    assert 0 < data["reference_error_estimate"] < 1e-10  # the quadrature's own bar, shown beside it (QA)
    text = runner.invoke(app, [arg for arg in args if arg != "--json"]).stdout
    assert f"+- {data['reference_error_estimate']:.2g} (its error estimate)  (semi-analytic formula" in text
    assert data["rel_error"] == pytest.approx(abs(data["y0"] - data["reference"]) / data["reference"])
    bare = json.loads(runner.invoke(app, [*args, "--no-reference"]).stdout)
    assert bare["reference"] is None and bare["rel_error"] is None and bare["y0"] == data["y0"]


def test_an_unsettled_euler_reference_says_so_and_its_interval_counts_the_bias(tmp_path):
    """dX_i = (x_1 + x_2) dt + x_i dW_i, g = x_1 + x_2: E g(X_1) = 2 e^2; Euler's first-order bias is still
    0.06 at 512 steps, which the interval (not the standard error) covers."""
    path = tmp_path / "linear_sde.yaml"
    path.write_text('equation: {kind: custom, dim: 2, x0: 1.0, terminal: "sum(x)",\n'
                    '           process: {kind: diffusion, drift: "sum(x)", sigma: "x", substeps: 2}}\n')
    result = runner.invoke(app, ["reference", str(path), "--json", "-q"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["details"]["converged"] is False and "did not settle by 512 steps" in result.stderr
    low, high, exact = *data["ci95"], 2 * math.e**2
    assert low <= exact <= high and abs(data["value"] - exact) > 3 * data["stderr"]


def test_a_fallback_from_pde_1d_is_a_warning_line(tmp_path):
    """g = log(x) from x0 = 10: pde-1d's grid crosses 0, auto goes on to mc and says why in one warning line."""
    path = tmp_path / "logfar.yaml"
    path.write_text("equation: {kind: custom, dim: 1, x0: 10.0, process: {kind: brownian, sigma: 1.0}, "
                    "terminal: 'log(x[0])', driver: '-0.1 * y'}\n")
    result = runner.invoke(app, ["reference", str(path), "--json", "-q"])
    assert result.exit_code == 0 and json.loads(result.stdout)["method"] == "mc"
    assert result.stderr.startswith("warning: pde-1d: equation.terminal: g is not finite at x = -2 on its grid")
    assert result.stderr.rstrip().endswith("this value is by mc, the next method that applies")
    assert result.stderr.count("\n") == 1
