"""Usage errors are one line, outputs never replace the problem file, tables are whole in a pipe."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from bsde.cli.app import app
from bsde.problem import shipped_problems

from conftest import TINY, tiny_args

runner = CliRunner()


def one_line_error(args: list[str], *expected: str, code: int = 2) -> str:
    """Run the CLI: exit ``code``, stderr exactly one 'error: ' line holding ``expected``, nothing on stdout."""
    result = runner.invoke(app, args)
    lines = result.stderr.splitlines()
    assert result.exit_code == code, result.output
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert result.stdout == "" and "Traceback" not in result.output
    for fragment in expected:
        assert fragment in lines[0], lines[0]
    return lines[0]


# --------------------------------------------------------------------------- click's usage errors
@pytest.mark.parametrize(("args", "expected"), [
    (["solve", "hjb", "--checkpoint-every", "0"], ("'--checkpoint-every'", "bsde solve --help")),
    (["solve", "hjb", "--on-nan", "foo"], ("'--on-nan'", "'foo' is not one of 'stop', 'rollback'")),
    (["solve", "hjb", "--threads", "abc"], ("Invalid value for '--threads'", "valid int")),
    (["solve", "hjb", "--nproc", "0"], ("'--nproc'",)),
    (["solve", "hjb", "--threads", "0"], ("'--threads'", "bsde solve --help")),  # before any folder is made
    (["compare", "hjb", "--threads", "-1"], ("'--threads'",)),
    (["bench", "--threads", "0"], ("'--threads'",)),
    (["solve", "hjb", "--seed", "-1"], ("'--seed'", "bsde solve --help")),  # before any output or work
    (["reference", "hjb", "--seed", str(2**62)], ("'--seed'",)),
    (["compare", "hjb", "--seeds", "0"], ("'--seeds'", "bsde compare --help")),
    (["compare", "hjb", "--fail-above", "-1"], ("'--fail-above'", "a number >= 0, got -1")),
    (["compare", "hjb", "--fail-above", "nan"], ("'--fail-above'", "got nan")),  # else nothing could fail
    (["reference", "hjb", "--method", "nosuch"], ("'--method'", "'nosuch' is not one of")),
    (["reference", "hjb", "--paths", "0"], ("'--paths'", "bsde reference --help")),
    (["solve"], ("Missing argument",)),
    (["nosuch"], ("No such command 'nosuch'", "bsde --help")),
    (["solve", "hjb", "--out"], ("'--out' requires an argument",)),
])
def test_usage_errors_are_one_line(args: list[str], expected: tuple[str, ...]) -> None:
    line = one_line_error(args, *expected)
    assert "Value error" not in line and "Usage:" not in line


def test_unknown_option_suggests_only_a_close_one() -> None:
    line = one_line_error(["solve", "hjb", "--bogus"], "No such option: --bogus")
    assert "--out" not in line and "did you mean" not in line
    one_line_error(["solve", "hjb", "--chekpoint", "ck"], "did you mean --checkpoint?")


def test_help_and_no_arguments_are_unchanged() -> None:
    shown = runner.invoke(app, ["solve", "--help"])
    assert shown.exit_code == 0 and "Usage:" in shown.stdout and "--checkpoint-every" in shown.stdout
    bare = runner.invoke(app, [])
    assert bare.exit_code == 2 and "Usage:" in bare.stdout and bare.stderr == ""


@pytest.mark.parametrize("command", ["solve", "reference", "compare", "bench", "eval"])
def test_help_paragraphs_wrap_to_the_terminal_not_to_the_source(command: str) -> None:
    """At 1000 columns each paragraph of a command's description is one line (the docstring's breaks dropped)."""
    shown = runner.invoke(app, [command, "--help"], env={"COLUMNS": "1000"}, terminal_width=1000)
    description = shown.stdout.split("Usage:")[1].split("╭")[0]
    lines = [line.strip() for line in description.splitlines()[1:] if line.strip()]
    assert shown.exit_code == 0 and len(lines) >= 2 and all(line.endswith((".", ")", "'")) for line in lines), lines


@pytest.mark.parametrize("command", ["solve", "reference", "compare", "bench", "show"])
def test_help_shows_no_value_for_a_flag_and_names_the_problem(command: str) -> None:
    """A flag takes no value: no '<bool>' beside it; the problem argument is PROBLEM; no 2^62 spelled out."""
    shown = runner.invoke(app, [command, "--help"], env={"COLUMNS": "200"}, terminal_width=200).stdout
    assert "<bool>" not in shown and "4611686018427387903" not in shown
    assert command not in ("solve", "reference") or "0 .. 2^62 - 1" in shown  # the commands with --seed
    assert command == "bench" or "PROBLEM" in shown.split("\n", 3)[1] + shown.split("\n", 3)[2]


def test_python_m_goes_through_the_same_errors(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "bsde.cli", "solve", "hjb", "--threads", "abc"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and done.stdout == ""
    [line] = done.stderr.splitlines()
    assert line.startswith("error: Invalid value for '--threads'") and line.endswith("(see bsde solve --help)")


@pytest.mark.skipif(sys.platform == "win32", reason="closes the child's file descriptor 1")
def test_a_closed_stdout_is_refused_before_any_work(tmp_path: Path) -> None:
    """>&-: Python's sys.stdout is None; the result was lost after the work (--json: an 'unexpected' error)."""
    done = subprocess.run([sys.executable, "-m", "bsde.cli", "solve", "hjb", "--json"], cwd=tmp_path,
                          preexec_fn=lambda: os.close(1), stderr=subprocess.PIPE, text=True, timeout=60)
    assert done.returncode == 1 and done.stderr.startswith("error: standard output is closed"), done.stderr
    assert done.stderr.count("\n") == 1


def test_a_path_the_system_refuses_is_bad_input(tmp_path: Path) -> None:
    """Exit 2, as bsde's own path checks (--checkpoint's was 2 and --out's 1 for the same name, QA)."""
    for option in ("--out", "--checkpoint"):
        done = subprocess.run([sys.executable, "-m", "bsde.cli", "solve", "hjb", option, "a" * 300 + ".json"],
                              cwd=tmp_path, capture_output=True, text=True, timeout=60)
        assert done.returncode == 2 and done.stderr.splitlines()[-1].startswith("error: "), (option, done.stderr)
        assert "Traceback" not in done.stderr


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full (Linux)")
def test_a_full_disk_is_the_machines_error_not_a_bug(tmp_path: Path) -> None:
    with open("/dev/full", "w") as full:
        done = subprocess.run([sys.executable, "-m", "bsde.cli", "list"], cwd=tmp_path, stdout=full,
                              stderr=subprocess.PIPE, text=True, timeout=60)
    assert done.returncode == 1 and done.stderr.count("\n") == 1, done.stderr
    assert "No space left on device" in done.stderr and "unexpected" not in done.stderr


# --------------------------------------------------------------------------- outputs over the problem file
@pytest.fixture
def problem_file(tmp_path: Path) -> Path:
    path = tmp_path / "same.yaml"
    path.write_text(yaml.safe_dump({"equation": {"kind": "hjb", "dim": 2}}))
    return path


@pytest.mark.parametrize("option", ["--out", "--plot"])
def test_solve_refuses_to_write_over_its_problem_file(problem_file: Path, option: str) -> None:
    before = problem_file.read_bytes()
    spelled = str(problem_file.parent / "." / problem_file.name)  # another spelling of the same file
    args = ["solve", str(problem_file), *tiny_args(), "--set", "solver.region={low: 0, high: 1}", "--device", "cpu",
            "--threads", "1", "-q", option, spelled]
    one_line_error(args, f"{option} {spelled}", "is the problem file")
    assert problem_file.read_bytes() == before


@pytest.mark.parametrize(("option", "name", "what"), [("--out", "notes.txt", "a solve's JSON result"),
                                                      ("--out", "run.json", "a solve's JSON result"),
                                                      ("--plot", "photo.png", "a plot")])
def test_solve_replaces_only_its_own_outputs(tmp_path: Path, option: str, name: str, what: str) -> None:
    """A file at --out or --plot that bsde did not write is refused before any work; bsde's own is replaced."""
    mine = tmp_path / name
    mine.write_bytes(b"\x89PNG\r\n\x1a\n mine" if name.endswith(".png") else b'{"y0": 1, "mine": true}')
    before = mine.read_bytes()
    region = ["--set", "solver.region={low: 0, high: 1}"] if option == "--plot" else []
    args = ["solve", "hjb", *tiny_args(), *region, "--device", "cpu", "--threads", "1", "-q", "--no-reference", option]
    one_line_error([*args, str(mine)], str(mine), f"exists and is not {what} written by bsde")
    assert mine.read_bytes() == before
    ours = tmp_path / f"ours{mine.suffix}"
    assert runner.invoke(app, [*args, str(ours)]).exit_code == 0
    first = ours.read_bytes()
    assert runner.invoke(app, [*args, str(ours), "--seed", "1"]).exit_code == 0 and ours.read_bytes() != first


def test_solve_refuses_a_save_folder_whose_solution_is_not_bsdes(tmp_path: Path) -> None:
    folder = tmp_path / "saved"
    folder.mkdir()
    (folder / "solution.pt").write_text("my weights")
    one_line_error(["solve", "hjb", *tiny_args(), "--device", "cpu", "-q", "--save", str(folder)],
                   "solution.pt is not a solution bsde saved")
    assert (folder / "solution.pt").read_text() == "my weights"


def test_save_replaces_a_rerun_of_its_problem_and_refuses_another_problems_solution(tmp_path: Path) -> None:
    """QA: --save over a region solve of another problem replaced it without a word; a rerun (another seed or
    solver setting) of the same problem still replaces its own."""
    folder = tmp_path / "saved"
    args = ["solve", "hjb", *tiny_args(), "--device", "cpu", "--threads", "1", "-q", "--no-reference", "--save",
            str(folder)]
    assert runner.invoke(app, args).exit_code == 0
    first = (folder / "solution.pt").read_bytes()
    assert runner.invoke(app, [*args, "--seed", "1"]).exit_code == 0
    second = (folder / "solution.pt").read_bytes()
    assert second != first
    one_line_error([*args, "--set", "equation.lam=2"], f"save folder {folder}: holds the solution of another "
                   "problem ('hjb', whose equation differs in equation.lam); not replacing it")
    assert (folder / "solution.pt").read_bytes() == second


def test_solve_refuses_a_save_folder_whose_config_is_the_problem(tmp_path: Path) -> None:
    folder = tmp_path / "saved"
    folder.mkdir()
    problem = folder / "config.yaml"  # the name --save gives the resolved config
    problem.write_text(yaml.safe_dump({"equation": {"kind": "hjb", "dim": 2}}))
    before = problem.read_bytes()
    one_line_error(["solve", str(problem), *tiny_args(), "--device", "cpu", "-q", "--save", str(folder)],
                   "--save", "is the problem file")
    assert problem.read_bytes() == before


def test_compare_refuses_a_report_over_its_problem_file(tmp_path: Path) -> None:
    problem = tmp_path / "p.md"  # YAML under the name of the report p.md
    problem.write_text(yaml.safe_dump({"equation": {"kind": "hjb", "dim": 2}}))
    before = problem.read_bytes()
    one_line_error(["compare", str(problem), *tiny_args(), "--seeds", "1", "--device", "cpu", "--threads", "1",
                    "-q", "--out", str(tmp_path)], "--out", "is the problem file")
    assert problem.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["p.md"]


# --------------------------------------------------------------------------- output shapes
def test_list_in_a_pipe_never_cuts_names() -> None:
    result = runner.invoke(app, ["list"])  # the test runner's stdout is no terminal
    assert result.exit_code == 0
    for name in shipped_problems():
        assert f" {name} " in result.stdout
    assert "…" not in result.stdout


def test_summary_says_one_thread() -> None:
    result = runner.invoke(app, ["solve", "hjb", *tiny_args(**{"solver.iterations": TINY["solver.log_every"]}),
                                 "--device", "cpu", "--threads", "1", "-q", "--no-reference"])
    assert result.exit_code == 0, result.output
    assert ", 1 thread," in result.stdout and "1 threads" not in result.stdout
