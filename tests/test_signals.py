"""Ctrl-C and SIGTERM: finish the iteration, checkpoint, print how to resume, exit 130 / 143."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bsde.checkpoint import CHECKPOINT_FILE, read_checkpoint
from bsde.cli.signals import Stopped, StopRequest, stop_on_signals

from conftest import tiny_args


def test_handlers_are_installed_only_inside_the_block() -> None:
    before = signal.getsignal(signal.SIGTERM)
    with stop_on_signals() as stop:
        assert not stop()
        signal.raise_signal(signal.SIGTERM)
        assert stop() and stop.exit_code == 143 and stop.name == "SIGTERM"
    assert signal.getsignal(signal.SIGTERM) is before
    assert StopRequest().exit_code == 130


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_checkpoints_and_prints_resume_hint(tmp_path: Path, signum: int, code: int) -> None:
    folder = tmp_path / "ck"
    command = [sys.executable, "-m", "bsde.cli", "solve", "hjb", *tiny_args(**{"solver.iterations": 10**6}),
               "--device", "cpu", "--threads", "1", "-q", "--checkpoint", str(folder), "--checkpoint-every", "5"]
    process = subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 30
    while not (folder / CHECKPOINT_FILE).exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    process.send_signal(signum)
    _, stderr = process.communicate(timeout=30)
    assert process.returncode == code, stderr
    assert "Traceback" not in stderr
    assert f"--resume {folder}" in stderr and "bsde solve hjb" in stderr
    state = read_checkpoint(folder)["state"]
    stopped = int(stderr.split(" after ")[1].split()[0])
    assert state["iteration"] == stopped  # the checkpoint is the state at the stop, not the last cadence point


def test_a_signal_no_iteration_will_see_stops_at_once() -> None:
    again = StopRequest()
    again.handle(signal.SIGINT, None)
    with pytest.raises(Stopped) as second:  # a second Ctrl-C does not wait for the iteration
        again.handle(signal.SIGINT, None)
    assert second.value.exit_code == 130 and not second.value.after_training
    again.handle(signal.SIGINT, None)  # once raised, later signals wait for that stop to end the command
    late = StopRequest()
    late.training_over()  # no signal yet: nothing happens
    with pytest.raises(Stopped) as after:
        late.handle(signal.SIGTERM, None)
    assert after.value.exit_code == 143 and after.value.after_training
    during_last_validation = StopRequest()
    during_last_validation.handle(signal.SIGTERM, None)
    with pytest.raises(Stopped):  # came after the last poll: training's end stops
        during_last_validation.training_over()


def test_signal_after_training_ends_the_command(tmp_path: Path) -> None:
    """SIGTERM while the error estimate runs (here about 15 s of it): exit 143 at once, one line, nothing written."""
    folder, result = tmp_path / "ck", tmp_path / "result.json"
    iterations = 20
    command = [sys.executable, "-m", "bsde.cli", "solve", "hjb",
               *tiny_args(**{"solver.iterations": iterations, "solver.time_steps": 20}), "--device", "cpu",
               "--threads", "1", "--no-reference", "--checkpoint", str(folder), "--out", str(result)]
    process = subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    seen = []
    for line in process.stderr:  # the last progress line comes from the last validation
        seen.append(line)
        if f"{iterations}/{iterations}" in line:
            break
    time.sleep(0.2)
    started = time.monotonic()
    process.send_signal(signal.SIGTERM)
    stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 143, "".join(seen) + stderr
    assert time.monotonic() - started < 10
    [line] = stderr.splitlines()
    assert line.startswith("error: interrupted by SIGTERM after training") and f"--resume {folder}" in line
    assert stdout == "" and not result.exists()


def _run_python(code: str, cwd: Path, **environment: str) -> subprocess.CompletedProcess:
    """``code`` in a fresh interpreter whose Ctrl-C has the default disposition (as at a terminal)."""
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, timeout=60,
                          preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
                          env={**os.environ, **environment})


def test_ctrl_c_inside_an_import_ends_the_command_in_one_line(tmp_path: Path) -> None:
    """QA: a Ctrl-C in a solve's first second, while torch and numpy were importing, was swallowed (exit 0 with a
    result), left numpy half-imported (an AttributeError after training) or aborted in C++. Now: one line, 130."""
    (tmp_path / "slow_module.py").write_text("import os, signal, time\nos.kill(os.getpid(), signal.SIGINT)\n"
                                             "time.sleep(5)\n")
    code = "from bsde.cli.signals import interrupt_outside_imports; interrupt_outside_imports(); import slow_module; " \
           "print('went on')"
    run = _run_python(code, tmp_path)
    assert run.returncode == 130 and run.stderr == "error: interrupted by SIGINT\n" and run.stdout == "", run
    # a follower of a data-parallel run marks its line with its rank (QA: two unmarked lines under --nproc 2)
    follower = _run_python(code, tmp_path, RANK="1")
    assert follower.returncode == 130 and follower.stderr == "error (process 1): interrupted by SIGINT\n", follower
    # outside an import Ctrl-C is Python's KeyboardInterrupt, which the commands turn into their own line
    outside = _run_python("from bsde.cli.signals import interrupt_outside_imports; interrupt_outside_imports(); "
                          "import signal\ntry:\n    signal.raise_signal(signal.SIGINT)\nexcept KeyboardInterrupt:\n"
                          "    print('caught')", tmp_path)
    assert outside.returncode == 0 and outside.stdout == "caught\n", outside


def test_the_bsde_command_installs_the_handler_before_its_imports() -> None:
    """The entry point (bsde.cli:main) runs before typer, torch or numpy load; python -m bsde.cli is the same."""
    import bsde.cli

    assert "bsde.cli:main" in (Path(__file__).parents[1] / "pyproject.toml").read_text()
    code = "import sys, bsde.cli; print(sorted(m for m in ('typer', 'torch', 'numpy') if m in sys.modules))"
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert run.stdout == "[]\n", run
    assert callable(bsde.cli.main)
    version = subprocess.run([sys.executable, "-m", "bsde.cli", "--version"], capture_output=True, text=True,
                             timeout=60)
    assert version.returncode == 0 and version.stdout.startswith("bsde "), version


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_while_the_command_shuts_down_changes_nothing(signum: int) -> None:
    """QA: a Ctrl-C after the JSON was printed raised KeyboardInterrupt in an atexit callback (a traceback, exit
    130), a SIGTERM gave exit 143 without a word, after a complete result. The outcome is written by then: the
    signal is ignored. Here an atexit callback sends it during shut-down."""
    code = ("import atexit, os, sys, time; from bsde.cli import main\n"
            f"atexit.register(lambda: (os.kill(os.getpid(), {int(signum)}), time.sleep(0.3)))\n"
            "sys.argv = ['bsde', '--version']; main()")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0 and run.stdout.startswith("bsde ") and run.stderr == "", run
