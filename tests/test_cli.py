"""The `bsde` command line through Typer's test runner."""

import json

import pytest
import yaml
from typer.testing import CliRunner

from bsde.cli.app import app

from conftest import TINY as TINY_SETTINGS, tiny_args

runner = CliRunner()
TINY = ["--set", "equation.dim=3", "--set", "solver.iterations=20", "--set", "solver.time_steps=4",
        "--set", "solver.batch_size=16", "--set", "solver.valid_size=32"]


def test_list_shows_shipped_problems():
    result = runner.invoke(app, ["list"])
    assert result.exit_code == 0
    for name in ("hjb", "allen_cahn", "max_call", "default_risk", "4.5901", "0.052802", "57.3"):
        assert name in result.stdout


def test_show_prints_resolved_yaml():
    result = runner.invoke(app, ["show", "hjb", "--set", "equation.dim=50"])
    assert result.exit_code == 0
    assert "dim: 50" in result.stdout and "time_steps: 20" in result.stdout


def test_a_local_file_named_like_a_shipped_problem_is_pointed_out(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "hjb.yaml").write_text("equation:\n  kind: hjb\n  dim: 7\n")
    result = runner.invoke(app, ["show", "hjb"])
    assert result.exit_code == 0 and "dim: 100" in result.stdout  # the bare name stays the shipped problem
    assert "note: 'hjb' is the shipped problem; for the file hjb.yaml here, give its path (./hjb.yaml)" in result.stderr
    local = runner.invoke(app, ["show", "./hjb.yaml"])
    assert local.exit_code == 0 and "dim: 7" in local.stdout and "note" not in local.stderr


@pytest.mark.parametrize("drift, noted", [(0.08, True), (0.03, False)])
def test_a_price_under_a_drift_other_than_the_rate_is_pointed_out(tmp_path, drift, noted):
    problem = tmp_path / "call.yaml"
    problem.write_text(yaml.safe_dump({"equation": {
        "kind": "custom", "dim": 1, "x0": 100.0, "params": {"K": 90.0, "r": 0.03}, "terminal": "relu(x[0] - K)",
        "driver": "-r * y", "process": {"kind": "gbm", "drift": drift, "vol": 0.3, "dividend": 0.03}}}))
    result = runner.invoke(app, ["show", str(problem)])
    assert result.exit_code == 0
    note = "the process drifts at 0.08 but the driver discounts at r = 0.03: the value is e^(-rT) E g(X_T) under"
    assert (note in result.stderr) is noted and ("note" in result.stderr) is noted


@pytest.mark.parametrize("theta, noted", [(0.36, True), (0.36 / 1.4**0.5, False)])
def test_a_market_price_of_risk_that_misses_the_correlation_is_pointed_out(tmp_path, theta, noted):
    """-r y - theta sum(z) on 3 assets (mu 0.12, r 0.03, vol 0.25, rho 0.2): the z-term adds vol (C^{1/2} m)_i
    = -vol theta sqrt(1 + 2 rho) to each rate, so theta = (mu - r) / vol = 0.36 leaves a drift of 0.12 - 0.09 sqrt(1.4)
    = 0.01351, and theta / sqrt(1.4) prices risk-neutrally (C^{1/2} 1 = sqrt(1 - rho + 3 rho) 1)."""
    problem = tmp_path / "basket.yaml"
    problem.write_text(yaml.safe_dump({"equation": {
        "kind": "custom", "dim": 3, "x0": 100.0, "params": {"r": 0.03, "theta": theta}, "terminal": "relu(mean(x) - 100)",
        "driver": "-r * y - theta * sum(z)", "process": {"kind": "gbm", "drift": 0.12, "vol": 0.25, "correlation": 0.2}}}))
    result = runner.invoke(app, ["reference", str(problem), "--paths", "1000", "--json"])
    assert result.exit_code == 0, result.output
    note = "the assets drift at 0.01351 but the driver discounts at r = 0.03"
    assert (note in result.stderr) is noted and ("note" in result.stderr) is noted
    shown = runner.invoke(app, ["show", str(problem)])  # show evaluates no driver (no torch): no such note
    assert shown.exit_code == 0 and "note" not in shown.stderr
    solved = runner.invoke(app, ["solve", str(problem), *TINY, "--no-reference", "-q", "--threads", "1"])
    assert solved.exit_code == 0 and (note in solved.stderr) is noted, solved.output


def test_solve_json_is_one_clean_object():
    result = runner.invoke(app, ["solve", "hjb", *TINY, "--seed", "3", "--json", "--device", "cpu", "--no-reference"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)  # stdout holds exactly one JSON object
    for key in ("problem", "kind", "dim", "y0", "z0", "baseline", "reference", "rel_error", "iterations",
                "time_steps", "batch_size", "wall_s", "device", "dtype", "seed"):
        assert key in data
    assert data["dim"] == 3 and len(data["z0"]) == 3 and data["seed"] == 3 and data["device"] == "cpu"
    assert data["reference"] is None and data["rel_error"] is None  # 100-d value dropped, engine skipped
    assert "iter" in result.stderr  # progress goes to stderr


def test_set_wins_over_preset_in_show():
    result = runner.invoke(app, ["show", "hjb", "--set", "solver.iterations=100", "--preset", "fast"])
    assert result.exit_code == 0, result.output
    solver = yaml.safe_load(result.stdout)["solver"]
    assert solver["iterations"] == 100 and solver["dtype"] == "float32"  # --set on top, the rest of the preset kept
    alone = yaml.safe_load(runner.invoke(app, ["show", "hjb", "--preset", "fast"]).stdout)["solver"]
    assert alone["iterations"] == 1200


def test_set_wins_over_preset_in_solve():
    result = runner.invoke(app, ["solve", "hjb", "--preset", "fast", *TINY, "--json", "-q", "--no-reference",
                                 "--device", "cpu"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["iterations"] == 20 and data["dtype"] == "float32"
    assert data["history"][-1]["iteration"] == 20  # it trained 20 iterations, not the preset's 1,200


def test_solve_same_seed_same_y0():
    args = ["solve", "allen_cahn", *TINY, "--json", "-q", "--no-reference"]
    first = json.loads(runner.invoke(app, args).stdout)
    second = json.loads(runner.invoke(app, args).stdout)
    other = json.loads(runner.invoke(app, [*args, "--seed", "1"]).stdout)
    assert first["y0"] == second["y0"] and first["y0"] != other["y0"]


def test_a_rerun_says_which_earlier_outputs_it_replaced(tmp_path):
    """QA: --out and --save replaced an earlier result (another problem's, for --out) without a word, where bsde
    compare says so; the first run says nothing of replacing."""
    out, saved = tmp_path / "result.json", tmp_path / "run"
    args = [*TINY, "--no-reference", "-q", "--threads", "1", "--device", "cpu", "--out", str(out)]
    first = runner.invoke(app, ["solve", "allen_cahn", *args, "--save", str(saved)])
    assert first.exit_code == 0 and "replac" not in first.stderr, first.output
    again = runner.invoke(app, ["solve", "hjb", *args])
    assert again.exit_code == 0 and f"note: replaced the earlier result in {out}" in again.stderr, again.output
    assert json.loads(out.read_text())["problem"] == "hjb"
    resaved = runner.invoke(app, ["solve", "allen_cahn", *args, "--save", str(saved)])
    assert resaved.exit_code == 0 and f"saved the solution to {saved}, replacing the earlier one" in resaved.stderr


def test_solve_human_output_with_reference(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text("equation: {kind: hjb, dim: 2}\nsolver: {iterations: 10, time_steps: 3}\n"
                    "reference: {value: 1.0, source: made up}\n")
    result = runner.invoke(app, ["solve", str(path), "-q"])
    assert result.exit_code == 0, result.output
    assert "y0" in result.stdout and "reference  1" in result.stdout and "rel. error" in result.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["solve", "nope"], "unknown problem 'nope'"),
        (["solve", "missing.yaml"], "missing.yaml: no such file"),
        (["solve", "hjb", "--set", "equation.foo=1"], "equation.foo (from --set): unknown key"),
        (["solve", "hjb", "--set", "equation.dim=abc"], "equation.dim"),
        (["solve", "hjb", "--set", "equation.dim=0"], "equation.dim"),
        (["solve", "hjb", "--set", "equation.x0=[1,2,3]"], "equation.x0"),
        (["solve", "hjb", "--set", "equation.total_time=-1"], "equation.total_time"),
        (["solve", "hjb", "--set", "solver.time_steps=0"], "solver.time_steps"),
        (["solve", "hjb", "--set", "equation.kind=wave"], "equation.kind"),
        (["solve", "hjb", "--device", "tpu"], "unknown device 'tpu'"),
        (["solve", "hjb", "--device", "cudax"], "unknown device 'cudax' (use auto, cpu, cuda or cuda:N)"),
        (["show", "hjb", "--preset", "nope"], "preset 'nope'"),
    ],
)
def test_bad_input_is_one_line_exit_2(args, message):
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    assert message in result.stderr
    assert "Traceback" not in result.output and len(result.stderr.strip().splitlines()) == 1


def test_yaml_syntax_error(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("equation: [kind: hjb\n")
    result = runner.invoke(app, ["solve", str(path)])
    assert result.exit_code == 2 and "broken.yaml: YAML error" in result.stderr


def test_resume_hint_is_the_command_line_with_resume(tmp_path, monkeypatch):
    """The hint printed on a stop is the same builder's line as bench/compare record: --checkpoint becomes --resume,
    every other option the user gave is kept, and running it finishes the run."""
    import contextlib
    import shlex

    import bsde.cli.solve as command
    from bsde.cli.signals import StopRequest

    class StopAfter(StopRequest):
        def __init__(self, polls: int) -> None:
            super().__init__()
            self.polls = polls

        def __call__(self) -> bool:
            self.polls -= 1
            if self.polls < 0:
                self.signum = 2
            return super().__call__()

    folder = tmp_path / "ck dir"  # a space: the hint must quote it
    monkeypatch.setattr(command, "stop_on_signals", lambda: contextlib.nullcontext(StopAfter(7)))
    args = ["solve", "hjb", *tiny_args(), "--preset", "fast", "--seed", "3", "--device", "cpu", "--threads", "1",
            "-q", "--no-reference", "--checkpoint", str(folder), "--on-nan", "rollback"]
    stopped = runner.invoke(app, args)
    assert stopped.exit_code == 130, stopped.output
    assert f"checkpoint written to {shlex.quote(str(folder))};" in stopped.stderr  # quoted as in the hint
    hint = stopped.stderr.split("resume with:")[1].strip()
    words = shlex.split(hint)
    assert words[:3] == ["bsde", "solve", "hjb"] and "--checkpoint" not in words
    assert words[words.index("--resume") + 1] == str(folder)
    for option in ("--preset", "--seed", "--device", "--threads", "--on-nan"):
        assert words[words.index(option) + 1] == args[args.index(option) + 1]
    assert words.count("--set") == len(TINY_SETTINGS) and "--quiet" in words and "--no-reference" in words
    monkeypatch.undo()
    resumed = runner.invoke(app, [*words[1:], "--json"])
    assert resumed.exit_code == 0, resumed.output
    assert json.loads(resumed.stdout)["iterations"] == TINY_SETTINGS["solver.iterations"]


def test_resume_hint_across_machines_is_the_torchrun_launch(tmp_path):
    """One machine: this command with --resume and --nproc; a torchrun run over several machines resumes by the same
    torchrun launch (--nproc would start every process on one machine), with process 0 where the checkpoint is."""
    import shlex

    import typer

    from bsde.cli.solve import resume_hint

    solve = typer.main.get_command(app).commands["solve"]
    folder = tmp_path / "ck"
    ctx = solve.make_context("solve", ["hjb", "--seed", "3", "--checkpoint", str(folder)])
    alone = shlex.split(resume_hint(ctx, folder, 2, machines=1))
    assert alone[:3] == ["bsde", "solve", "hjb"] and alone[alone.index("--nproc") + 1] == "2"
    assert alone[alone.index("--resume") + 1] == str(folder) and "--checkpoint" not in alone
    spread = resume_hint(ctx, folder, 1, machines=2)
    assert spread.startswith("torchrun <the same options> -m bsde.cli solve hjb ") and "--nproc" not in spread
    assert f"--resume {shlex.quote(str(folder))}" in spread and "--seed 3" in spread and "holds the checkpoint" in spread
