"""Checkpoints: a training snapshot plus the configuration that produced it, written atomically.

A checkpoint folder holds one file, ``checkpoint.pt`` (``torch.save`` of a dict of tensors,
numbers and strings, loadable with ``weights_only=True``):

* ``config``: the fully resolved problem (``Problem.to_dict()``), its name, the seed, the
  device type, the dtype and the equation's values at probe points (:func:`bsde.probing.signature`:
  the dump names a Python function only by its name);
* ``state``: the trainer's snapshot (model, optimizer, generator states, iteration, history,
  learning-rate scale), see :data:`bsde.trainer.TrainState`; in a data-parallel run the lead
  process writes it with every process's shard streams gathered in.

Resuming checks that the run to continue has the same configuration; a mismatch is a
:class:`ProblemError` naming each differing key.
"""

from __future__ import annotations

import os
import weakref
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from bsde.errors import ProblemError
from bsde.io import ensure_folder, torch_load_safely, torch_save_atomic
from bsde.probing import same_signature, signature
from bsde.problem import Problem
from bsde.settings import DEFAULT_SCHEDULE, PiecewiseRate
from bsde.trainer import TrainState

CHECKPOINT_FILE = "checkpoint.pt"
#: 4: a correlation matrix's symmetric root (Z of such a run changed meaning); 3: the batch shards' random streams;
#: 2: bsde.adam.Adam's state; 1: torch.optim.Adam's
FORMAT = 4
#: the parts of the configuration that decide the trajectory of a run (reference and presets do not)
COMPARED = ("name", "seed", "device", "equation", "solver")


def run_config(problem: Problem, *, seed: int, device: torch.device) -> dict[str, Any]:
    """What identifies a run: the resolved problem (dtype decided for the device), its name, seed, device type and dtype."""
    problem = replace(problem, solver=problem.solver.for_device(device.type))
    return {**problem.to_dict(), "name": problem.name, "seed": seed, "device": device.type,
            "dtype": problem.solver.dtype, "signature": signature(problem.equation)}


def flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(data, dict):
        flat: dict[str, Any] = {}
        for key, value in data.items():
            flat.update(flatten(value, f"{prefix}{key}."))
        return flat
    return {prefix.rstrip("."): data}


def _with_schedule_resolved(config: dict[str, Any]) -> dict[str, Any]:
    """The compared part of a config, its learning-rate schedule as the iterations where the rate changes.

    fractions [0.5, 0.8] of 2000 iterations and boundaries [1000, 1600] train alike: a checkpoint made
    before a file switched form still resumes.
    """
    compared = {k: config.get(k) for k in COMPARED}
    solver = compared.get("solver")
    if isinstance(solver, dict):
        rate = solver.get("learning_rate")
        schedule = DEFAULT_SCHEDULE if rate is None else rate
        try:
            if isinstance(schedule, dict):
                schedule = PiecewiseRate(**schedule)
            if isinstance(schedule, PiecewiseRate):
                rate = {"boundaries": schedule.boundaries_for(int(solver["iterations"])),
                        "values": list(schedule.values)}
        except (ValueError, TypeError, KeyError):
            pass  # not a schedule this version reads: compared as written
        compared["solver"] = {**solver, "learning_rate": rate}
    return compared


def differences(saved: dict[str, Any], now: dict[str, Any]) -> list[str]:
    """'key: checkpoint A, now B' for each compared key whose value differs (schedules compared as iterations)."""
    old = flatten(_with_schedule_resolved(saved))
    new = flatten(_with_schedule_resolved(now))
    found = [f"{key}: checkpoint {old.get(key)!r}, now {new.get(key)!r}"
             for key in sorted(old.keys() | new.keys()) if old.get(key) != new.get(key)]
    # the dump names a Python function by its name only: its values at probe points tell two apart
    if "signature" in saved and not found:
        found += [f"equation: its {part} gives other values than the checkpoint's"
                  for part in same_signature(saved["signature"], now.get("signature", {}))]
    return found


def checkpoint_path(folder: Path) -> Path:
    return Path(folder) / CHECKPOINT_FILE


class CheckpointWriter:
    """The trainer's ``save`` hook: each call replaces ``folder/checkpoint.pt`` atomically.

    Made before training: a ``checkpoint.pt`` already in ``folder`` may be replaced only when it is
    a checkpoint of this same run (same configuration: the run resumed, or the same run again);
    one of another run, or a file that is not a readable checkpoint, is a :class:`ProblemError`.
    """

    def __init__(self, folder: Path, config: dict[str, Any]):
        self.folder = ensure_folder(Path(folder))
        self.config = config
        self.saved_iteration: int | None = None
        lock = _lock(self.folder)  # before the check: a run starting beside this one sees the lock
        #: closes the lock's descriptor once: on release(), or when the writer is collected (an error before release)
        self._unlock = weakref.finalize(self, os.close, lock) if lock is not None else None
        try:
            _check_replaceable(self.folder, config)
        except BaseException:
            self.release()
            raise

    def release(self) -> None:
        """Let another run checkpoint into the folder (the end of training; the process's end does it too)."""
        if self._unlock is not None:
            self._unlock()

    def __getstate__(self) -> dict[str, Any]:
        """Without the lock (a data-parallel run sends the lead's writer to the others; the lead keeps it)."""
        return {**self.__dict__, "_unlock": None}

    def __call__(self, state: TrainState) -> None:
        torch_save_atomic(checkpoint_path(self.folder), {"format": FORMAT, "config": self.config, "state": state})
        self.saved_iteration = int(state["iteration"])


def _lock(folder: Path) -> int | None:
    """A file descriptor of ``folder`` holding an exclusive lock on it until released (the system drops it when
    the process ends, even by SIGKILL): two runs checkpointing into one folder replaced each other's checkpoint
    without a word (QA). None where there are no such locks (Windows)."""
    try:
        import fcntl
    except ImportError:
        return None
    handle = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:  # held
        os.close(handle)
        raise ProblemError(f"{folder}: another bsde run is checkpointing into this folder now; wait for it, or "
                           "give another folder") from None
    except OSError:  # no locks on this file system (NFS refuses a folder's, Lustre may have none): go on without
        os.close(handle)
        return None
    return handle


def _check_replaceable(folder: Path, config: dict[str, Any]) -> None:
    """Refuse a folder whose ``checkpoint.pt`` this run must not replace (another run's, or unreadable)."""
    path = checkpoint_path(folder)
    if not path.exists():
        return
    advice = "resume it with --resume, or give another folder"
    try:
        saved = read_checkpoint(folder)
    except ProblemError as exc:
        raise ProblemError(f"{exc}; not replacing it: remove it, or give another folder") from None
    diffs = differences(saved["config"], config)
    if diffs:
        raise ProblemError(f"{path}: holds a checkpoint of another run ({'; '.join(diffs)}); {advice}")


def read_checkpoint(folder: Path) -> dict[str, Any]:
    """The raw checkpoint dict in ``folder``; one-line :class:`ProblemError` when missing or unreadable."""
    path = checkpoint_path(folder)
    if not path.exists():
        raise ProblemError(f"{folder}: no checkpoint here ({CHECKPOINT_FILE} missing)")
    data = torch_load_safely(path, "checkpoint")
    if not isinstance(data, dict) or not {"config", "state"} <= data.keys() or not readable_format(
            data.get("format"), FORMAT, data["config"]):
        raise ProblemError(f"{path}: not a bsde checkpoint of format {FORMAT}{format_hint(data, FORMAT)}")
    return data


def uses_correlation_matrix(config: Any) -> bool:
    """Whether a configuration gives a correlation as a matrix anywhere (a list under a key 'correlation')."""
    return isinstance(config, dict) and any((key == "correlation" and isinstance(value, list))
                                            or uses_correlation_matrix(value) for key, value in config.items())


def readable_format(found: Any, current: int, config: Any) -> bool:
    """The current format, or the one before it for a run without a correlation matrix: the step to ``current``
    changed only what Z means under a correlation matrix (its symmetric root, where a Cholesky factor was)."""
    return found == current or (found == current - 1 and not uses_correlation_matrix(config))


def format_hint(data: Any, current: int) -> str:
    """Why an older file with a correlation matrix is refused, or nothing."""
    if isinstance(data, dict) and data.get("format") == current - 1:
        return (" (saved before a correlation matrix was applied through its symmetric root, so its Z means "
                "another thing: solve again)")
    return ""


def load_checkpoint(folder: Path, config: dict[str, Any]) -> TrainState:
    """The training snapshot in ``folder`` if it was made by a run with this ``config``."""
    data = read_checkpoint(folder)
    diffs = differences(data["config"], config)
    if diffs:
        raise ProblemError(f"{checkpoint_path(folder)}: made by a different run; {'; '.join(diffs)}")
    return data["state"]
