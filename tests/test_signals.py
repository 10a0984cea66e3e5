"""Ctrl-C and SIGTERM: finish the iteration, checkpoint, print how to resume, exit 130 / 143."""

from __future__ import annotations

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
