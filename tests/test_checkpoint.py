"""Checkpoints: resumed runs equal uninterrupted ones bit for bit; mismatches and kills are handled."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

import bsde
from bsde.checkpoint import CHECKPOINT_FILE, differences, read_checkpoint, run_config
from bsde.cli.app import app
from bsde.errors import Interrupted
from bsde.probing import same_signature

from conftest import TINY, tiny_args



def stop_after(count: int):
    """A stop request that turns true after ``count`` polls (one poll per iteration)."""
    polls = {"n": 0}

    def requested() -> bool:
        polls["n"] += 1
        return polls["n"] >= count
    return requested


def test_resume_equals_uninterrupted_bit_for_bit(tiny: bsde.Problem, tmp_path: Path) -> None:
    whole = bsde.solve(tiny, seed=7, device="cpu", threads=1)
    with pytest.raises(Interrupted) as stopped:
        bsde.solve(tiny, seed=7, device="cpu", threads=1, checkpoint=tmp_path, checkpoint_every=20,
                   stop_requested=stop_after(30))
    assert stopped.value.iteration == 30
    assert read_checkpoint(tmp_path)["state"]["iteration"] == 30  # the stop wrote one, off the 20-cadence
    resumed = bsde.solve(tiny, seed=7, device="cpu", threads=1, resume=tmp_path)
    assert resumed.y0 == whole.y0
    assert resumed.z0 == whole.z0
    assert [h.loss for h in resumed.history] == [h.loss for h in whole.history]


def test_resume_restores_learning_rate_schedule(tiny: bsde.Problem, tmp_path: Path) -> None:
    problem = bsde.load_problem("hjb", {**TINY, "solver.learning_rate": {"boundaries": [35], "values": [0.05, 0.005]}})
    whole = bsde.solve(problem, seed=1, device="cpu", threads=1)
    with pytest.raises(Interrupted):
        bsde.solve(problem, seed=1, device="cpu", threads=1, checkpoint=tmp_path, stop_requested=stop_after(40))
    assert bsde.solve(problem, seed=1, device="cpu", threads=1, resume=tmp_path).y0 == whole.y0


def test_resume_across_the_two_forms_of_a_schedule(tmp_path: Path) -> None:
    """A checkpoint made with boundaries resumes under fractions that change the rate at the same iterations."""
    def hjb(rate):
        return bsde.load_problem("hjb", {**TINY, "solver.learning_rate": {**rate, "values": [0.05, 0.005]}})
    by_iteration = hjb({"boundaries": [30]})
    whole = bsde.solve(by_iteration, seed=1, device="cpu", threads=1)
    with pytest.raises(Interrupted):
        bsde.solve(by_iteration, seed=1, device="cpu", threads=1, checkpoint=tmp_path, stop_requested=stop_after(40))
    assert bsde.solve(hjb({"fractions": [0.5]}), seed=1, device="cpu", threads=1, resume=tmp_path).y0 == whole.y0
    with pytest.raises(bsde.ProblemError, match=r"solver.learning_rate.boundaries: checkpoint \[30\], now \[36\]"):
        bsde.solve(hjb({"fractions": [0.6]}), seed=1, device="cpu", threads=1, resume=tmp_path)


def test_checkpoint_contents(tiny: bsde.Problem, tmp_path: Path) -> None:
    bsde.solve(tiny, seed=2, device="cpu", threads=1, checkpoint=tmp_path, checkpoint_every=25)
    data = read_checkpoint(tmp_path)
    assert data["state"]["iteration"] == 60  # every 25 iterations and after the last (60)
    assert data["config"] == run_config(tiny, seed=2, device=torch.device("cpu"))
    assert {"model", "optimizer", "generator", "history", "lr_scale"} <= data["state"].keys()
    assert [p.name for p in tmp_path.iterdir()] == [CHECKPOINT_FILE]


def test_differences_name_each_key(tiny: bsde.Problem) -> None:
    cpu = torch.device("cpu")
    other = bsde.load_problem("hjb", {**TINY, "solver.batch_size": 16})
    diffs = differences(run_config(tiny, seed=0, device=cpu), run_config(other, seed=1, device=cpu))
    assert diffs == ["seed: checkpoint 0, now 1", "solver.batch_size: checkpoint 8, now 16"]
    # a rate against a schedule is one entry, not 'checkpoint None' beside the schedule's keys (QA)
    steady = bsde.load_problem("hjb", {**TINY, "solver.learning_rate": 0.01})
    schedule = {"boundaries": [35], "values": [0.05, 0.005]}
    scheduled = bsde.load_problem("hjb", {**TINY, "solver.learning_rate": schedule})
    diffs = differences(run_config(scheduled, seed=0, device=cpu), run_config(steady, seed=0, device=cpu))
    assert diffs == ["solver.learning_rate: checkpoint {'boundaries': [35], 'values': [0.05, 0.005]}, now 0.01"]


def test_resume_refuses_a_checkpoint_of_another_python_function(tmp_path: Path) -> None:
    """Two lambdas dump alike (by name); their values at probe points tell them apart."""
    market = bsde.GBM(drift=0.05, vol=0.25)

    def option(payoff, driver=lambda t, x, y, z: -0.05 * y):
        return bsde.custom_equation(dim=1, x0=100.0, process=market, terminal=payoff, driver=driver)

    put, call = option(lambda x: (100.0 - x[..., 0]).relu()), option(lambda x: (x[..., 0] - 100.0).relu())
    solver = {"iterations": 20, "log_every": 5, "batch_size": 8, "valid_size": 8, "time_steps": 4}
    with pytest.raises(Interrupted):
        bsde.solve(put, solver=solver, seed=1, threads=1, checkpoint=tmp_path, stop_requested=stop_after(10))
    with pytest.raises(bsde.ProblemError, match="equation: its terminal gives other values than the checkpoint's$"):
        bsde.solve(call, solver=solver, seed=1, threads=1, resume=tmp_path)
    other_rate = option(put.terminal_fn, lambda t, x, y, z: -0.04 * y)
    with pytest.raises(bsde.ProblemError, match="equation: its driver gives other values"):
        bsde.solve(other_rate, solver=solver, seed=1, threads=1, resume=tmp_path)
    assert bsde.solve(option(put.terminal_fn), solver=solver, seed=1, threads=1, resume=tmp_path).history


def test_resume_refuses_a_driver_changed_between_the_grid_times(tmp_path: Path) -> None:
    """sin(4 pi t)^2 is 0 at every grid time k T / 4 (T = 1): only the signature's off-grid times see it."""
    market = bsde.GBM(drift=0.05, vol=0.25)

    def option(driver):
        return bsde.custom_equation(dim=1, x0=100.0, process=market, terminal=lambda x: (100.0 - x[..., 0]).relu(),
                                    driver=driver)

    solver = {"iterations": 20, "log_every": 5, "batch_size": 8, "valid_size": 8, "time_steps": 4}
    with pytest.raises(Interrupted):
        bsde.solve(option(lambda t, x, y, z: -0.05 * y), solver=solver, seed=1, threads=1, checkpoint=tmp_path,
                   stop_requested=stop_after(10))
    sourced = option(lambda t, x, y, z: -0.05 * y + torch.sin(4 * torch.pi * torch.as_tensor(t)) ** 2)
    with pytest.raises(bsde.ProblemError, match=r"equation: its driver \(between the grid times k T / 4\) gives other "
                                                r"values than the checkpoint's$"):
        bsde.solve(sourced, solver=solver, seed=1, threads=1, resume=tmp_path)


def test_a_checkpoint_without_the_off_grid_driver_values_is_compared_on_the_rest() -> None:
    """Checkpoints written before the signature had ``driver_between`` still resume; a change there is still seen."""
    saved = {"process": [1.0], "terminal": [2.0], "driver": [3.0]}
    assert same_signature(saved, {**saved, "driver_between": [4.0]}) == []
    assert same_signature({**saved, "driver_between": [4.0]}, {**saved, "driver_between": [5.0]}) == [
        "driver (between the grid times k T / 4)"]
    assert same_signature({**saved, "driver_between": [4.0]}, {**saved, "driver": [0.0], "driver_between": [5.0]}) == [
        "driver"]  # named once


def test_cli_refuses_checkpoint_of_another_config(tmp_path: Path) -> None:
    runner = CliRunner()
    made = runner.invoke(app, ["solve", "hjb", *tiny_args(), "--device", "cpu", "-q", "--checkpoint", str(tmp_path),
                               "--out", str(tmp_path / "out" / "r.json"), "--no-reference"])
    assert made.exit_code == 0, made.output
    assert json.loads((tmp_path / "out" / "r.json").read_text())["history"]
    result = runner.invoke(app, ["solve", "hjb", *tiny_args(**{"solver.batch_size": 16}), "--device", "cpu", "-q",
                                 "--resume", str(tmp_path)])
    assert result.exit_code == 2, result.output
    assert "solver.batch_size: checkpoint 8, now 16" in result.output and "Traceback" not in result.output


def test_killed_process_leaves_a_loadable_checkpoint(tmp_path: Path) -> None:
    folder = tmp_path / "ck"
    overrides = {"solver.iterations": 400}
    command = [sys.executable, "-m", "bsde.cli", "solve", "hjb", *tiny_args(**overrides), "--device", "cpu",
               "--threads", "1", "-q", "--checkpoint", str(folder), "--checkpoint-every", "1"]
    process = subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 30
    while not (folder / CHECKPOINT_FILE).exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    os.kill(process.pid, signal.SIGKILL)
    process.wait(timeout=10)
    data = read_checkpoint(folder)
    assert 1 <= data["state"]["iteration"] <= 400
    problem = bsde.load_problem("hjb", {**TINY, **overrides})
    resumed = bsde.solve(problem, device="cpu", threads=1, resume=folder)
    assert resumed.history[-1].iteration == 400


def test_checkpoint_refuses_a_folder_holding_another_run(tmp_path: Path) -> None:
    """--checkpoint into a folder with another run's checkpoint.pt: refused before training, the file kept."""
    other = bsde.load_problem("hjb", {**TINY, "equation.dim": 3, "solver.iterations": 20})
    bsde.solve(other, seed=1, device="cpu", threads=1, checkpoint=tmp_path)
    kept = (tmp_path / CHECKPOINT_FILE).read_bytes()
    logged = []
    with pytest.raises(bsde.ProblemError) as refused:
        bsde.solve(bsde.load_problem("hjb", {**TINY, "solver.iterations": 20}), seed=1, device="cpu", threads=1,
                   checkpoint=tmp_path, on_log=logged.append)
    assert str(refused.value).startswith(f"{tmp_path / CHECKPOINT_FILE}: holds a checkpoint of another run (")
    assert "equation.dim: checkpoint 3, now 2" in str(refused.value)
    assert str(refused.value).endswith("); give another folder")
    assert logged == [] and (tmp_path / CHECKPOINT_FILE).read_bytes() == kept
    # the same run may replace its own checkpoint where it goes on from it: resumed into the same folder
    bsde.solve(other, seed=1, device="cpu", threads=1, checkpoint=tmp_path, resume=tmp_path)
    assert read_checkpoint(tmp_path)["config"]["equation"]["dim"] == 3


def test_a_run_started_again_does_not_replace_its_checkpoint_further_along(tmp_path: Path) -> None:
    """QA: the same command without --resume started from iteration 0 and replaced a checkpoint at iteration 1723
    with its own at 997, without a word. It is refused before training, the file kept; resuming it works."""
    problem = bsde.load_problem("hjb", {**TINY, "solver.iterations": 40})
    with pytest.raises(Interrupted):
        bsde.solve(problem, seed=1, device="cpu", threads=1, checkpoint=tmp_path, stop_requested=stop_after(30))
    kept = (tmp_path / CHECKPOINT_FILE).read_bytes()
    with pytest.raises(bsde.ProblemError, match=r"checkpoint.pt: holds this run's checkpoint at iteration 30 of 40, "
                                                r"which a run from iteration 0 would replace; resume it \(--resume "):
        bsde.solve(problem, seed=1, device="cpu", threads=1, checkpoint=tmp_path)
    assert (tmp_path / CHECKPOINT_FILE).read_bytes() == kept
    result = CliRunner().invoke(app, ["solve", "hjb", *tiny_args(**{"solver.iterations": 40}), "--seed", "1",
                                      "--device", "cpu", "--threads", "1", "-q", "--checkpoint", str(tmp_path)])
    assert result.exit_code == 2 and result.stderr.count("\n") == 1 and "iteration 30 of 40" in result.stderr
    assert bsde.solve(problem, seed=1, device="cpu", threads=1, resume=tmp_path).history[-1].iteration == 40


def _state(**changes):
    """A checkpoint state of the right structure (the trainer's keys), with ``changes``."""
    from bsde.checkpoint import STATE_KEYS

    state = dict.fromkeys(STATE_KEYS, 0)
    return {**state, "model": {}, "optimizer": {}, "history": [], **changes}


@pytest.mark.parametrize(("data", "fault"), [
    ({"config": {}, "state": {k: v for k, v in _state().items() if k != "model"}}, "its state lacks model"),
    ({"config": {}, "state": "x"}, "its state is str, not a mapping"),
    ({"config": "x", "state": _state()}, "its config is str, not a mapping"),
    ({"config": {"solver": {"iterations": 40}}, "state": _state(iteration=-5)}, "its iteration -5 is not one of 0..40"),
    ({"config": {"solver": {"iterations": 40}}, "state": _state(iteration=10**6)},
     "its iteration 1000000 is not one of 0..40"),
    ({"config": {}, "state": _state(iteration=1.5)}, "its iteration 1.5 is not one of"),
    ({"config": {}, "state": _state(history="x")}, "its state's history is str, not a list"),
])
def test_a_checkpoint_of_the_wrong_structure_is_refused_in_one_line(tmp_path: Path, data, fault) -> None:
    """QA: edited checkpoints gave 'KeyError: model (unexpected ... please report it)', and iteration -5 trained on."""
    from bsde.checkpoint import FORMAT

    torch.save({"format": FORMAT, **data}, tmp_path / CHECKPOINT_FILE)
    with pytest.raises(bsde.ProblemError, match=re.escape(f"checkpoint.pt: not a bsde checkpoint ({fault}")):
        read_checkpoint(tmp_path)


def test_resume_from_a_file_says_it_is_a_file(tmp_path: Path) -> None:
    afile = tmp_path / "afile"
    afile.write_text("x")
    with pytest.raises(bsde.ProblemError, match="afile: is a file, expected a checkpoint folder"):
        read_checkpoint(afile)


def test_a_restore_that_does_not_fit_is_a_problem_error(tiny: bsde.Problem, tmp_path: Path) -> None:
    """A state of the right keys whose contents do not fit the run (edited, or of another version): one line."""
    bsde.solve(tiny, seed=2, device="cpu", threads=1, checkpoint=tmp_path)
    data = torch.load(tmp_path / CHECKPOINT_FILE, weights_only=True)
    data["state"]["model"] = {"nothing": torch.zeros(1)}
    torch.save(data, tmp_path / CHECKPOINT_FILE)
    with pytest.raises(bsde.ProblemError, match="resume: the saved training state does not fit this run"):
        bsde.solve(tiny, seed=2, device="cpu", threads=1, resume=tmp_path)


def test_cli_checkpoint_into_another_runs_folder_is_one_line_exit_2(tmp_path: Path) -> None:
    steady = {"solver.iterations": 20, "solver.learning_rate": 0.01}  # no warning of a late schedule
    bsde.solve(bsde.load_problem("hjb", {**TINY, **steady, "equation.dim": 3}), device="cpu",
               threads=1, checkpoint=tmp_path)
    kept = (tmp_path / CHECKPOINT_FILE).read_bytes()
    result = CliRunner().invoke(app, ["solve", "hjb", *tiny_args(**steady), "--device", "cpu",
                                      "--threads", "1", "-q", "--no-reference", "--checkpoint", str(tmp_path)])
    assert result.exit_code == 2, result.output
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.output
    assert f"{tmp_path / CHECKPOINT_FILE}: holds a checkpoint of another run" in result.stderr
    assert (tmp_path / CHECKPOINT_FILE).read_bytes() == kept


def test_checkpoint_refuses_an_unreadable_checkpoint_file(tiny: bsde.Problem, tmp_path: Path) -> None:
    (tmp_path / CHECKPOINT_FILE).write_bytes(b"my own data")
    with pytest.raises(bsde.ProblemError, match="checkpoint.pt: not a readable checkpoint .*; not replacing it"):
        bsde.solve(tiny, device="cpu", threads=1, checkpoint=tmp_path)
    assert (tmp_path / CHECKPOINT_FILE).read_bytes() == b"my own data"


@pytest.mark.parametrize(("log_every", "every"), [(20, None), (10, 100)])
def test_the_last_iteration_is_always_checkpointed(tmp_path: Path, log_every: int, every: int | None) -> None:
    """30 iterations, checkpoints every 20 (log_every) or 100: the checkpoint holds iteration 30 and resumes to the
    same result."""
    problem = bsde.load_problem("hjb", {**TINY, "solver.iterations": 30, "solver.log_every": log_every})
    whole = bsde.solve(problem, seed=3, device="cpu", threads=1, checkpoint=tmp_path, checkpoint_every=every)
    assert read_checkpoint(tmp_path)["state"]["iteration"] == 30
    resumed = bsde.solve(problem, seed=3, device="cpu", threads=1, resume=tmp_path)
    assert resumed.y0 == whole.y0 and [h.loss for h in resumed.history] == [h.loss for h in whole.history]


def test_checkpoint_every_needs_a_folder(tiny: bsde.Problem) -> None:
    with pytest.raises(bsde.ArgumentError, match="checkpoint_every=10: needs checkpoint=FOLDER"):
        bsde.solve(tiny, checkpoint_every=10, threads=1)
    result = CliRunner().invoke(app, ["solve", "hjb", *tiny_args(), "--checkpoint-every", "10"])
    assert result.exit_code == 2 and "--checkpoint-every 10: needs --checkpoint DIR" in result.stderr


def test_an_older_format_is_read_unless_it_holds_a_correlation_matrix(tmp_path: Path) -> None:
    """Format 4 changed only what Z means under a correlation matrix (its symmetric root, where format 3 had a
    Cholesky factor): a format-3 checkpoint of any other run resumes, one with a matrix is refused with why."""
    from bsde.checkpoint import FORMAT

    path = tmp_path / CHECKPOINT_FILE
    for config, readable in (({"equation": {"correlation": 0.5}}, True),
                             ({"equation": {"process": {"correlation": [[1.0, 0.2], [0.2, 1.0]]}}}, False)):
        torch.save({"format": FORMAT - 1, "config": config, "state": _state()}, path)
        if readable:
            assert read_checkpoint(tmp_path)["config"] == config
        else:
            with pytest.raises(bsde.ProblemError, match="before a correlation matrix was applied through its "
                                                        "symmetric root"):
                read_checkpoint(tmp_path)
    torch.save({"format": FORMAT - 2, "config": {}, "state": {}}, path)
    with pytest.raises(bsde.ProblemError, match=f"not a bsde checkpoint of format {FORMAT}$"):
        read_checkpoint(tmp_path)


def test_one_run_at_a_time_checkpoints_into_a_folder(tmp_path: Path) -> None:
    """Two runs given one --checkpoint DIR at once replaced each other's file without a word (QA): the folder is
    locked while a run trains, and free again when it ends (also by SIGKILL: the system drops the lock)."""
    from bsde.checkpoint import CheckpointWriter

    first = CheckpointWriter(tmp_path, {"seed": 1})
    with pytest.raises(bsde.ProblemError, match="another bsde run is checkpointing into this folder now"):
        CheckpointWriter(tmp_path, {"seed": 2})
    second = subprocess.run([sys.executable, "-c", "import sys; from bsde.checkpoint import CheckpointWriter; "
                             "CheckpointWriter(sys.argv[1], {})", str(tmp_path)], capture_output=True, text=True)
    assert second.returncode == 1 and "another bsde run is checkpointing" in second.stderr
    first.release()
    CheckpointWriter(tmp_path, {"seed": 2}).release()


def test_a_file_system_without_locks_checkpoints_unlocked(tmp_path: Path, monkeypatch) -> None:
    """NFS refuses flock on a folder (EBADF), Lustre may have none (ENOSYS): not 'another run' (review)."""
    import errno

    fcntl = pytest.importorskip("fcntl")
    from bsde.checkpoint import CheckpointWriter

    def refuse(fd, operation):
        raise OSError(errno.EBADF, "Bad file descriptor")

    monkeypatch.setattr(fcntl, "flock", refuse)
    CheckpointWriter(tmp_path, {}).release()


def test_the_lock_is_released_when_the_run_fails_before_training(tiny: bsde.Problem, tmp_path: Path) -> None:
    """An on_warning that raises (a late schedule's warning comes after the lock): the next run may still lock."""
    late = bsde.load_problem("hjb", {**TINY, "solver.learning_rate": {"boundaries": [10**6], "values": [0.01, 0.001]}})

    def strict(text: str) -> None:
        raise RuntimeError(text)

    with pytest.raises(RuntimeError):
        bsde.solve(late, device="cpu", threads=1, checkpoint=tmp_path, on_warning=strict)
    bsde.solve(tiny, device="cpu", threads=1, checkpoint=tmp_path)
