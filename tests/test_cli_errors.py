"""Bad input through the CLI: exit 2, one line naming the file and key, never a traceback."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bsde.cli.app import app

runner = CliRunner()
GOOD = "equation:\n  kind: hjb\n  dim: 3\n"


def fails_cleanly(args: list[str], *expected: str, code: int = 2) -> str:
    """Run the CLI; check the exit code, one error line, no traceback, and the expected fragments."""
    result = runner.invoke(app, args)
    text = result.output.strip()
    assert result.exit_code == code, text
    assert "Traceback" not in text
    lines = [line for line in text.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, text
    for fragment in expected:
        assert fragment in lines[0], lines[0]
    return lines[0]


def write(tmp_path: Path, text: str | bytes, name: str = "p.yaml") -> str:
    path = tmp_path / name
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    return str(path)


# --------------------------------------------------------------------------- the YAML file itself
@pytest.mark.parametrize(("text", "expected"), [
    ("", ("empty file",)),
    ("- 1\n- 2\n", ("expected a mapping at the top level", "[1, 2]")),
    ("equation:\n  kind: hjb\n  dim: 2\n  dim: 3\n", ("duplicate key 'dim'", "line 4")),
    ("equation: {kind: hjb\n", ("YAML error", "line 2")),
    (b"equation:\n  kind: hjb\n  x0: \xff\n", ("expected UTF-8", "0xff")),
    ("equation: !!python/object/apply:os.system ['echo unsafe']\n", ("python/object/apply:os.system", "plain YAML")),
    ("equation: 3\n", ("equation:", "expected a mapping", "got 3")),
    ("equation:\n  dim: 3\n", ("equation.kind", "missing")),
    ("equation:\n  kind: hjx\n", ("equation.kind", "unknown kind 'hjx'", "did you mean 'hjb'")),
    ("equation:\n  kind: hjb\nsolvr: {}\n", ("solvr", "unknown section", "did you mean 'solver'")),
    ("equation:\n  kind: hjb\n  dimm: 3\n", ("equation.dimm", "unknown key", "did you mean 'dim'")),
    ("equation:\n  kind: hjb\n  dim: .nan\n", ("equation.dim", "whole number", "nan")),
    ("equation:\n  kind: hjb\n  total_time: .inf\n", ("equation.total_time", "finite", "inf")),
    ("equation:\n  kind: hjb\n  lam: .nan\n", ("equation.lam", "finite", "nan")),
    ("equation:\n  kind: hjb\n  dim: 3\n  x0: [1, 2]\n", ("equation.x0", "list of dim = 3", "list of 2")),
    ("equation:\n  kind: hjb\nsolver:\n  batch_size: 0\n", ("solver.batch_size", "greater than or equal to 2", "got 0")),
])
def test_bad_file(tmp_path: Path, text: str | bytes, expected: tuple[str, ...]) -> None:
    path = write(tmp_path, text)
    line = fails_cleanly(["show", path], path, *expected)
    assert "(from --set)" not in line


def test_python_tag_is_not_executed(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    path = write(tmp_path, f"equation: !!python/object/apply:os.system ['touch {marker}']\n")
    fails_cleanly(["show", path], path, "could not determine a constructor")
    assert not marker.exists()


def test_directory_missing_file_unknown_name(tmp_path: Path) -> None:
    folder = tmp_path / "dir.yaml"
    folder.mkdir()
    fails_cleanly(["show", str(folder)], str(folder), "is a directory")
    fails_cleanly(["show", str(tmp_path / "missing.yaml")], "missing.yaml", "no such file")
    fails_cleanly(["show", "hbj"], "unknown problem 'hbj'", "did you mean 'hjb'", "shipped:")


# --------------------------------------------------------------------------- --set overrides
@pytest.mark.parametrize(("setting", "expected"), [
    ("equation.dimm=3", ("equation.dimm", "unknown key", "did you mean 'dim'")),
    ("equation.dim=abc", ("equation.dim", "valid integer", "'abc'")),
    ("equation.dim=2.5", ("equation.dim", "whole number", "2.5")),
    ("equation.dim=.nan", ("equation.dim", "nan")),
    ("equation.dim=0", ("equation.dim", "greater than or equal to 1", "got 0")),
    ("equation.dim=-3", ("equation.dim", "got -3")),
    ("equation.total_time=0", ("equation.total_time", "greater than 0", "got 0")),
    ("equation.total_time=-1", ("equation.total_time", "got -1")),
    ("equation.total_time=.inf", ("equation.total_time", "finite", "inf")),
    ("equation.lam=.nan", ("equation.lam", "finite", "nan")),
    ("equation.x0=[1,.nan]", ("equation.x0[1]", "finite", "nan")),
    ("equation.x0=[1,2,3]", ("equation.x0", "list of dim = 100", "list of 3")),
    ("equation.kind=hjx", ("equation.kind", "unknown kind 'hjx'", "did you mean 'hjb'")),
    ("solver.time_steps=0", ("solver.time_steps", "got 0")),
    ("solver.iterations=0", ("solver.iterations", "got 0")),
    ("solver.batch_size=1", ("solver.batch_size", "got 1")),
    ("solver.batch_size=-64", ("solver.batch_size", "got -64")),
    ("solver.valid_size=0", ("solver.valid_size", "got 0")),
    ("solver.log_every=0", ("solver.log_every", "got 0")),
    ("solver.learning_rate=-1", ("solver.learning_rate", "positive", "-1")),
    ("solver.learning_rate=.nan", ("solver.learning_rate", "finite", "nan")),
    ("solver.learning_rate={boundaries: [1], values: [1]}", ("solver.learning_rate", "len(boundaries) + 1")),
    ("solver.learning_rate={boundaries: [1], valus: [1, 2]}",
     ("solver.learning_rate.valus", "did you mean 'values'", "known: boundaries, fractions, values")),
    ("solver.hidden=[0]", ("solver.hidden", "positive", "[0]")),
    ("solver.hidden=[1.5]", ("solver.hidden[0]", "1.5")),
    ("solver.y0_init=[1]", ("solver.y0_init", "[low, high]", "[1]")),
    ("solver.dtype=float16", ("solver.dtype", "'float32' or 'float64'", "'float16'")),
    ("solver.compile=max", ("solver.compile", "expected true, false or 'reduce-overhead'", "'max'")),
    ("solver.scheme=rk4", ("solver.scheme", "'euler' or 'trapezoid'", "'rk4'")),
    ("solver.measure=girsanov", ("solver.measure", "'auto', 'plain' or 'controlled'", "'girsanov'")),
    ("solver.control_from=1", ("solver.control_from", "less than 1", "got 1")),
    ("solver.refit_paths=1", ("solver.refit_paths", "greater than or equal to 2", "got 1")),
    ("solver.refit_paths=5000", ("solver.refit_paths", "this solve does not refit")),
    ("reference.value=.inf", ("reference.value", "finite")),
])
def test_bad_override(setting: str, expected: tuple[str, ...]) -> None:
    key = expected[0]
    fails_cleanly(["show", "hjb", "--set", setting], "hjb.yaml", f"{key} (from --set)", *expected[1:])


@pytest.mark.parametrize(("settings", "expected"), [
    (["equation.dim=3", "equation.vol=[0.1, 0.2]"], ("equation.vol (from --set)", "list of dim = 3", "list of 2")),
    (["equation.dim=3", "equation.correlation=-0.6"], ("equation.correlation (from --set)", "not positive definite")),
    (["equation.correlation=1"], ("equation.correlation (from --set)", "not positive definite", "100x100")),
    (["equation.x0=-1"], ("equation.x0 (from --set)", "positive", "-1")),
])
def test_bad_market(settings: list[str], expected: tuple[str, ...]) -> None:
    args = [arg for s in settings for arg in ("--set", s)]
    fails_cleanly(["show", "max_call", *args], "max_call.yaml", *expected)


@pytest.mark.parametrize(("setting", "expected"), [
    ("equation.dim", ("--set 'equation.dim'", "expected key=value")),
    ("=3", ("expected key=value",)),
    ("solvr.batch_size=8", ("--set solvr.batch_size", "unknown section 'solvr'", "did you mean 'solver.batch_size'")),
    ("foo.x=1", ("--set foo.x", "unknown section 'foo'", "known: equation, solver")),
    ("equation=3", ("--set equation", "expected section.key")),
    ("equation.dim.x=3", ("--set equation.dim.x", "not a mapping")),
    ("equation.x0=[1, 2", ("--set equation.x0", "cannot parse value")),
    ("equation.x0=!!python/object/apply:os.system [ls]", ("--set equation.x0", "cannot parse value")),
])
def test_bad_set_syntax(setting: str, expected: tuple[str, ...]) -> None:
    fails_cleanly(["show", "hjb", "--set", setting], *expected)


def test_set_on_top_of_file_names_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD)
    fails_cleanly(["show", path, "--set", "solver.batch_size=0"], path, "solver.batch_size (from --set)")


# --------------------------------------------------------------------------- resources and outputs
def test_absurd_size_fails_fast_without_allocating() -> None:
    start = time.perf_counter()
    line = fails_cleanly(["solve", "hjb", "--set", "equation.dim=1000000", "--set", "solver.batch_size=100000",
                          "--device", "cpu", "-q"], "hjb.yaml", "memory", "solver.batch_size", "solver.dtype=float32")
    assert time.perf_counter() - start < 10, line


def test_a_dim_beyond_any_machine_is_refused_before_anything_has_dim_entries() -> None:
    start = time.perf_counter()
    for command in ("show", "solve"):
        fails_cleanly([command, "hjb", "--set", "equation.dim=1000000000000"], "hjb.yaml",
                      "equation.dim (from --set): Input should be less than or equal to 10000000")
    assert time.perf_counter() - start < 10


@pytest.mark.parametrize(("outputs", "expected"), [
    (["--save", "{d}/run", "--out", "{d}/run/solution.pt"], "--save {d}/run/solution.pt: is also where --out writes"),
    (["--checkpoint", "{d}/ck", "--out", "{d}/ck/checkpoint.pt"], "is also where --out writes"),
    (["--out", "{d}/same.png", "--plot", "{d}/same.png"], "--plot {d}/same.png: is also where --out writes"),
])
def test_two_outputs_of_one_run_in_one_file_are_refused_before_work(tmp_path: Path, outputs, expected) -> None:
    given = [part.format(d=tmp_path) for part in outputs]
    fails_cleanly(["solve", "max_call", "--set", "equation.dim=1", "--set", "solver.region={low: 80, high: 120}",
                   "-q", "--no-reference", *given], expected.format(d=tmp_path))
    assert list(tmp_path.iterdir()) == []


def test_out_where_a_path_component_is_a_file(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    fails_cleanly(["solve", "hjb", "--set", "equation.dim=2", "--out", str(blocker / "r.json"), "-q"],
                  str(blocker), "cannot create folder")


def test_out_into_read_only_folder(tmp_path: Path) -> None:
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    if os.access(folder, os.W_OK):  # root ignores permission bits: use a folder nobody may write
        folder = Path("/proc")
    try:
        fails_cleanly(["solve", "hjb", "--set", "equation.dim=2", "--out", str(folder / "r.json"), "-q"],
                      str(folder), "cannot write into")
    finally:
        (tmp_path / "ro").chmod(0o700)


def test_checkpoint_dir_is_a_file(tmp_path: Path) -> None:
    blocker = tmp_path / "ck"
    blocker.write_text("x")
    fails_cleanly(["solve", "hjb", "--set", "equation.dim=2", "--checkpoint", str(blocker), "-q"], str(blocker))


def test_resume_without_checkpoint(tmp_path: Path) -> None:
    fails_cleanly(["solve", "hjb", "--set", "equation.dim=2", "--resume", str(tmp_path), "-q"],
                  str(tmp_path), "no checkpoint")


# --------------------------------------------------------------------------- errors nobody checked for
def _torch_fails(*_args: object, **_kwargs: object) -> None:
    raise RuntimeError("Expected all tensors to be on the same device, but found at least two devices\n"
                       "(a second line torch adds)")


def test_unexpected_error_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    """A RuntimeError from torch mid-run: one 'error:' line with a hint, exit 1, no traceback."""
    import bsde.trainer

    monkeypatch.delenv("BSDE_DEBUG", raising=False)
    monkeypatch.setattr(bsde.trainer._Run, "step", _torch_fails)
    line = fails_cleanly(["solve", "hjb", "--set", "equation.dim=2", "-q"],
                         "RuntimeError: Expected all tensors to be on the same device", "BSDE_DEBUG=1", code=1)
    assert "a second line" not in line


def test_ctrl_c_in_a_command_without_its_own_handling_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib

    def interrupted(*_args: object, **_kwargs: object) -> None:
        raise KeyboardInterrupt

    # the package bsde.reference (not the function that ``bsde.reference`` names): the command imports from it
    monkeypatch.setattr(importlib.import_module("bsde.reference"), "reference", interrupted)
    fails_cleanly(["reference", "hjb", "--set", "equation.dim=2"], "interrupted by SIGINT", code=130)


def test_unexpected_error_with_debug_shows_the_exception(monkeypatch: pytest.MonkeyPatch) -> None:
    import bsde.trainer

    monkeypatch.setenv("BSDE_DEBUG", "1")
    monkeypatch.setattr(bsde.trainer._Run, "step", _torch_fails)
    result = runner.invoke(app, ["solve", "hjb", "--set", "equation.dim=2", "-q"])
    assert result.exit_code == 1
    assert isinstance(result.exception, RuntimeError)


def test_a_follower_process_says_its_error_where_a_person_reads_it(monkeypatch, capfd):
    """Under torchrun a follower's consoles go nowhere; its own bad input (a problem file missing on its node)
    still reaches stderr, marked with its rank (it was silent, and the job died on torchrun's traceback, QA)."""
    import typer

    from bsde.cli.common import fail

    monkeypatch.setenv("RANK", "1")
    with pytest.raises(typer.Exit):
        fail("nodeb.yaml: no such problem file", 2)
    assert capfd.readouterr().err == "error (process 1): nodeb.yaml: no such problem file\n"


# --------------------------------------------------------------------------- paths on the command line
@pytest.mark.parametrize(("args", "option"), [
    (["solve", "hjb", "--out", ""], "--out"),
    (["solve", "hjb", "--save", " "], "--save"),
    (["solve", "hjb", "--checkpoint", ""], "--checkpoint"),
    (["solve", "hjb", "--resume", ""], "--resume"),
    (["solve", "hjb", "--plot", ""], "--plot"),
    (["compare", "hjb", "--out", ""], "--out"),
    (["bench", "--quick", "--out", ""], "--out"),
    (["eval", ""], "DIR"),
    (["eval", "somewhere", "--points", ""], "--points"),
])
def test_an_empty_path_is_an_error_not_the_current_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                          args: list[str], option: str) -> None:
    """Path('') reads as '.': without the check `--out ''` would write reports into the current folder."""
    monkeypatch.chdir(tmp_path)
    fails_cleanly(args, option, "an empty path")
    assert list(tmp_path.iterdir()) == []  # nothing written


# --------------------------------------------------------------------------- problems that are wrong where they run
NOT_FINITE = "equation:\n  kind: custom\n  dim: 2\n  x0: 1.0\n  process: {kind: brownian, sigma: 1.0}\n"


@pytest.mark.parametrize(("command", "lines", "key"), [
    ("solve", 'terminal: "1 / (x[0] - x[0])"\n', "equation.terminal: g(X_T) is not finite"),
    ("solve", 'terminal: "x[0]"\n  driver: "-0.05 * y + 1 / 0"\n', "equation.driver: not finite at the probe points"),
    ("reference", 'terminal: "x[0]"\n  driver: "-0.05 * y + log(-1)"\n',
     "equation.driver: not finite at the probe points"),
])
def test_a_problem_not_finite_where_it_runs_names_its_file_and_key(tmp_path: Path, command: str, lines: str,
                                                                   key: str) -> None:
    """Found only when solving (the driver probed along the paths, g on the validation paths): still file and key."""
    path = write(tmp_path, NOT_FINITE + "  " + lines)
    extra = ["--set", "solver.iterations=2", "--threads", "1"] if command == "solve" else ["--threads", "1"]
    line = fails_cleanly([command, path, *extra], f"{path}: {key}")
    assert line.startswith(f"error: {path}: equation."), line


@pytest.mark.parametrize("command", ["solve", "reference"])
def test_euler_states_that_leave_the_domain_name_the_process(tmp_path: Path, command: str) -> None:
    """A CIR written with sqrt(x): Euler steps go below 0 on about a third of the paths, and the error had blamed
    equation.driver or equation.terminal, whichever read X first (QA)."""
    path = write(tmp_path, "equation: {kind: custom, dim: 1, total_time: 2.0, x0: 0.03, terminal: 'relu(x[0] - 0.03)',"
                           " driver: '-0.03 * y', process: {kind: diffusion, drift: '2.0 * (0.04 - x)',"
                           " sigma: '0.3 * sqrt(x)'}}\n", "cir.yaml")
    fails_cleanly([command, path, "--threads", "1"], "cir.yaml: equation.process: the simulated states are not finite",
                  "sqrt(relu(x))")
