"""Ctrl-C and SIGTERM: finish the iteration, checkpoint, print how to resume, exit 130 / 143."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bsde.checkpoint import CHECKPOINT_FILE, read_checkpoint
from bsde.cli.signals import StopRequest, stop_on_signals

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
