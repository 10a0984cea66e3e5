"""The command line of issue 11: delta/gamma in --json, --save and `bsde eval`, --plot, `reference --greeks`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from bsde.cli.app import app
from bsde.solution import SOLUTION_FILE

runner = CliRunner()
CALL = ["max_call", "--set", "equation.dim=1", "--set", "solver.time_steps=4", "--set", "solver.iterations=40",
        "--set", "solver.batch_size=16", "--set", "solver.valid_size=16", "--set", "solver.log_every=20",
        "--no-reference", "--device", "cpu", "-q"]
REGION = ["--set", "solver.region={low: 80, high: 120}"]


def one_line_error(result, code: int = 2) -> str:
    assert result.exit_code == code, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.output
    return lines[0]


@pytest.fixture(scope="module")
def saved_region(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("region") / "call"
    result = runner.invoke(app, ["solve", *CALL, *REGION, "--save", str(folder), "--json"])
    assert result.exit_code == 0, result.output
    json.loads(result.stdout)  # --save keeps stdout one clean JSON object
    assert f"saved the solution to {folder}" in result.stderr
    return folder


def test_eval_repeats_what_the_solve_warned_of(tmp_path: Path):
    """A solve's warnings (here: 40 iterations leave y0's estimated error above 1%) are saved with the solution and
    repeated by every eval (QA: 'the network's u(0, x0) is 10.6% from y0' was lost on --save)."""
    folder = tmp_path / "call"
    solved = runner.invoke(app, ["solve", *CALL, *REGION, "--save", str(folder), "--json"])
    said = json.loads(solved.stdout)["warnings"]
    assert solved.exit_code == 0 and any("exceeds 1% of |y0|" in text for text in said), said
    evaluated = runner.invoke(app, ["eval", str(folder), "--json"])
    assert evaluated.exit_code == 0 and json.loads(evaluated.stdout)["solve_warnings"] == said
    assert [line for line in evaluated.stderr.splitlines() if line] == [f"warning: (from the solve) {t}" for t in said]
    from bsde.solution import Solution

    assert Solution.load(folder).warnings == said


def test_solve_json_has_delta_and_gamma_diag():
    result = runner.invoke(app, ["solve", *CALL, "--set", "equation.dim=2", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert len(data["delta"]) == 2 and len(data["gamma_diag"]) == 2 and "first step" in data["gamma_source"]
    assert data["delta"][0] == pytest.approx(data["z0"][0] / (0.2 * 100.0))  # z0 / (vol S0), independent assets
    assert data["refit"] is None  # a point solve refits only when asked
    # no error bar: the first step's Monte Carlo error left out Z_1's network error, 20-50 times larger (a QA pass)
    assert data["delta_stderr"] is None and data["gamma_diag_stderr"] is None and data["greeks_stderr_basis"] is None
    assert "no error bar: Z_1's network error" in data["gamma_source"]
    human = runner.invoke(app, ["solve", *CALL, "--set", "equation.dim=2"]).stdout
    assert "gamma_ii" in human and "no error bar" in human and "+- s.e." not in human


def test_eval_prints_u_and_delta(saved_region: Path):
    result = runner.invoke(app, ["eval", str(saved_region), "--x", "[[85], [100], [115]]", "--json", "--gamma"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["points"] == [[85.0], [100.0], [115.0]] and len(data["u"]) == 3 and len(data["delta"]) == 3
    assert data["u"][0] < data["u"][1] < data["u"][2]  # a call's value rises with the spot
    assert len(data["gamma_diag"]) == 3 and data["region"]["low"] == 80
    # the refit's jackknife standard errors, as Solution.standard_errors gives them
    from bsde.solution import Solution

    errors = Solution.load(saved_region).standard_errors([[85.0], [100.0], [115.0]])
    assert data["u_stderr"] == pytest.approx(errors.u.tolist(), rel=1e-12)
    assert np.allclose(data["delta_stderr"], errors.grad, rtol=1e-12)
    assert np.allclose(data["gamma_diag_stderr"], errors.hessian[:, :, 0], rtol=1e-12)
    human = runner.invoke(app, ["eval", str(saved_region), "--x", "100"])
    assert human.exit_code == 0 and "u " in human.stdout and "delta" in human.stdout
    assert f"+- {errors.u[1]:.2g}" in human.stdout and "refit's jackknife" in human.stdout
    default = runner.invoke(app, ["eval", str(saved_region), "--json"])
    assert json.loads(default.stdout)["points"] == [[100.0]]  # x0


def test_eval_reads_a_file_of_points(saved_region: Path, tmp_path: Path):
    points = tmp_path / "points.txt"
    points.write_text("# spot\n90\n\n110, \n")
    result = runner.invoke(app, ["eval", str(saved_region), "--points", str(points), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["points"] == [[90.0], [110.0]]
    outside = runner.invoke(app, ["eval", str(saved_region), "--x", "[[150], [100], [10], [130]]"])
    lines = [line for line in outside.stderr.splitlines() if not line.startswith("warning: (from the solve)")]
    assert outside.exit_code == 0 and len(lines) == 1  # one line, not Python's warning format
    assert lines[0].startswith("warning: 3 of 4 points lie outside the trained box")
    assert "(extrapolated): points 0, 2, 3, counting from 0 in the order given" in lines[0]  # which ones
    flagged = runner.invoke(app, ["eval", str(saved_region), "--x", "[[150], [100], [10], [130]]", "--json"])
    assert json.loads(flagged.stdout)["outside"] == [True, False, True, True]  # in the JSON too (QA: stderr only)


@pytest.mark.parametrize("args,text", [
    (["--x", "[1, 2]"], "--x: expected 1 number, got"),
    (["--x", "[1, "], "--x: cannot parse"),
    (["--x", "abc"], "--x: expected a number"),
    (["--x", "[.nan]"], "finite"),
    (["--x", ".nan"], "--x: expected a finite number, got '.nan'"),
    (["--x", "-.inf"], "--x: expected a finite number"),
    (["--x", "1", "--points", "p.txt"], "not both"),
    (["--points", "missing.txt"], "missing.txt: no such file"),
    (["--x", "-5"], "--x: a GBM's states are positive, got -5.0"),  # was a price of -24.6 (QA)
    (["--x", "0"], "--x: a GBM's states are positive"),  # named after the option, not 'points' (QA)
])
def test_eval_bad_points_are_one_line_errors(saved_region: Path, args, text):
    assert text in one_line_error(runner.invoke(app, ["eval", str(saved_region), *args]))


@pytest.mark.parametrize("text", ["1e2", "1E+2", "[1.0e2]", "[[1e2]]", "10e1"])
def test_eval_reads_scientific_notation(saved_region: Path, text: str):
    plain = runner.invoke(app, ["eval", str(saved_region), "--x", "100", "--json"])
    result = runner.invoke(app, ["eval", str(saved_region), "--x", text, "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["u"] == json.loads(plain.stdout)["u"]


def test_eval_bad_file_line_names_it(saved_region: Path, tmp_path: Path):
    points = tmp_path / "bad.txt"
    points.write_text("90\nninety\n")
    assert f"{points}: line 2: expected numbers" in one_line_error(
        runner.invoke(app, ["eval", str(saved_region), "--points", str(points)]))
    points.write_text("90\n-2\n")
    assert f"{points}: a GBM's states are positive, got -2.0" in one_line_error(
        runner.invoke(app, ["eval", str(saved_region), "--points", str(points)]))


def test_eval_at_x0_of_a_region_says_what_the_solve_reported(saved_region: Path, tmp_path: Path):
    """Where the solve's y0 is not the network's u(0, x0) (HJB's corrected bound), eval says both (QA: it did
    not explain the difference); here the saved y0 is moved by hand."""
    moved = tmp_path / "moved"
    moved.mkdir()
    data = torch.load(saved_region / SOLUTION_FILE, weights_only=True)
    torch.save({**data, "u0": 123.25, "u0_error": 0.5, "u0_error_basis": "a basis"}, moved / SOLUTION_FILE)
    human = runner.invoke(app, ["eval", str(moved)])
    assert human.exit_code == 0, human.output
    assert "at x0 the solve reported y0 = 123.25 +- 0.5 (estimated: a basis); u above is the network's" in human.stdout
    elsewhere = runner.invoke(app, ["eval", str(moved), "--x", "90"]).stdout
    assert "the solve reported" not in elsewhere
    data = json.loads(runner.invoke(app, ["eval", str(moved), "--json"]).stdout)
    assert (data["y0"], data["y0_error_estimate"], data["y0_error_basis"]) == (123.25, 0.5, "a basis")
    assert "the solve reported" not in runner.invoke(app, ["eval", str(saved_region)]).stdout  # y0 is u there


def test_eval_refuses_other_folders(tmp_path: Path, saved_region: Path):
    assert "no such folder" in one_line_error(runner.invoke(app, ["eval", str(tmp_path / "none")]))
    afile = tmp_path / "afile"
    afile.write_text("x")
    assert f"{afile}: is a file, expected the folder written by" in one_line_error(
        runner.invoke(app, ["eval", str(afile)]))
    assert "not a saved solution" in one_line_error(runner.invoke(app, ["eval", str(tmp_path)]))
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    data = torch.load(saved_region / SOLUTION_FILE, weights_only=True)
    torch.save({**data, "bsde_version": "9.9"}, foreign / SOLUTION_FILE)
    assert "saved by bsde 9.9" in one_line_error(runner.invoke(app, ["eval", str(foreign)]))


def test_a_saved_point_solve_answers_at_x0_only(tmp_path: Path):
    folder = tmp_path / "point"
    solved = runner.invoke(app, ["solve", *CALL, "--save", str(folder), "--json"])
    assert solved.exit_code == 0, solved.output
    at_x0 = runner.invoke(app, ["eval", str(folder), "--x", "100", "--json"])
    assert at_x0.exit_code == 0 and len(json.loads(at_x0.stdout)["delta"][0]) == 1
    # u carries the solve's error estimate (QA: eval printed u without the solve's +-)
    reported, evaluated = json.loads(solved.stdout), json.loads(at_x0.stdout)
    assert evaluated["y0_error_estimate"] == reported["error_estimate"] is not None
    assert evaluated["y0_error_basis"] == reported["error_basis"] and evaluated["u"] == [reported["y0"]]
    assert f"+- {reported['error_estimate']:.2g} (estimated)" in runner.invoke(app, ["eval", str(folder)]).stdout
    assert "at x0 only" in one_line_error(runner.invoke(app, ["eval", str(folder), "--x", "90"]))
    # its gamma keeps what solve says of it: the source, and what the +- counts (QA: eval dropped both)
    from bsde.solution import Solution

    saved = Solution.load(folder)
    data = json.loads(runner.invoke(app, ["eval", str(folder), "--gamma", "--json"]).stdout)
    assert data["gamma_source"] == saved.gamma_source and data["gamma_source"].startswith("first step")
    assert saved.gamma_diag_stderr is None  # the keys solve --json has, null as there (QA: eval left them out)
    assert all(data[key] is None for key in ("u_stderr", "delta_stderr", "gamma_diag_stderr", "greeks_stderr_basis"))
    human = runner.invoke(app, ["eval", str(folder), "--gamma"]).stdout
    assert "gamma: first step" in human and "no error bar" in human
    assert [line for line in human.splitlines() if "+-" in line and "estimate" not in line] == []  # none for gamma


def test_save_refuses_a_folder_with_other_files_before_training(tmp_path: Path):
    (tmp_path / "notes.txt").write_text("mine")
    result = runner.invoke(app, ["solve", *CALL, "--save", str(tmp_path)])
    assert "holds other files (notes.txt)" in one_line_error(result)
    assert (tmp_path / "notes.txt").read_text() == "mine" and not (tmp_path / SOLUTION_FILE).exists()


def test_plot_needs_a_region():
    assert "--plot" in one_line_error(runner.invoke(app, ["solve", *CALL, "--plot", "u.png"]))


def test_plot_draws_the_diagonal(tmp_path: Path):
    picture = tmp_path / "u.png"
    result = runner.invoke(app, ["solve", *CALL, *REGION, "--plot", str(picture)])
    assert result.exit_code == 0, result.output
    assert picture.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_plot_checks_the_corners_too(tmp_path: Path, monkeypatch):
    """QA: the faces are where a region's u is worst, and the plot checked 0.1-0.9 of the diagonal only."""
    import bsde.region_plot as module

    seen = []
    monkeypatch.setattr(module, "plot_region", lambda solution, problem, checks, path: seen.append(checks))
    assert runner.invoke(app, ["solve", *CALL, *REGION, "--plot", str(tmp_path / "u.png")]).exit_code == 0
    assert [check.fraction for check in seen[0]] == [0.0, 0.1, 0.3, 0.5, 0.7, 0.9, 1.0]
    assert seen[0][0].point == [80.0] and seen[0][-1].point == [120.0] and seen[0][0].reference is not None


def test_reference_greeks_json_and_the_flagged_fallback():
    result = runner.invoke(app, ["reference", "max_call", "--set", "equation.dim=2", "--greeks", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["method"] == "semi-analytic" and len(data["delta"]) == 2 and data["fallback"] is False
    assert data["gamma"][0][1] < 0
    mc = json.loads(runner.invoke(app, ["reference", "max_call", "--set", "equation.dim=2", "--greeks", "--json",
                                        "--method", "mc", "--paths", "20000", "-q"]).stdout)
    assert len(mc["delta_ci95"]) == 2 and mc["delta_ci95"][0][0] < mc["delta"][0] < mc["delta_ci95"][0][1]
    fallback = runner.invoke(app, ["reference", "hjb", "--set", "equation.dim=2", "--set", "equation.x0=0.5",
                                   "--greeks", "--method", "cole-hopf", "--paths", "4096"])
    assert fallback.exit_code == 0, fallback.output
    assert "FALLBACK: central differences" in fallback.stdout and "warning: no direct Greeks" in fallback.stderr
