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


def _at(flat: dict[str, Any], key: str) -> Any:
    """The value at ``key`` of a flattened dict: a leaf, the dict of the leaves under it, or None."""
    if key in flat:
        return flat[key]
    under = {name[len(key) + 1:]: value for name, value in flat.items() if name.startswith(key + ".")}
    return under or None


def differences(saved: dict[str, Any], now: dict[str, Any]) -> list[str]:
    """'key: checkpoint A, now B' for each compared key whose value differs (schedules compared as iterations);
    a key that is a number on one side and a mapping on the other (a learning rate and a schedule) is one entry."""
    old = flatten(_with_schedule_resolved(saved))
    new = flatten(_with_schedule_resolved(now))
    leaves = old.keys() | new.keys()
    found: list[str] = []
    for key in sorted(leaves):
        parts = key.split(".")
        whole = next(p for p in (".".join(parts[:i]) for i in range(1, len(parts) + 1)) if p in leaves)
        before, after = _at(old, whole), _at(new, whole)
        entry = f"{whole}: checkpoint {before!r}, now {after!r}"
        if before != after and entry not in found:
            found.append(entry)
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
    a checkpoint of this same run (same configuration) no further along than ``start`` (the iteration
    this run starts from: 0, or where it resumes); one of another run, one further along (a run started
    again without --resume: QA saw iteration 1723 replaced by 997), or a file that is not a readable
    checkpoint, is a :class:`ProblemError`.
    """

    def __init__(self, folder: Path, config: dict[str, Any], start: int = 0):
        self.folder = ensure_folder(Path(folder))
        self.config = config
        self.start = start
        self.saved_iteration: int | None = None
        lock = _lock(self.folder)  # before the check: a run starting beside this one sees the lock
        #: closes the lock's descriptor once: on release(), or when the writer is collected (an error before release)
        self._unlock = weakref.finalize(self, os.close, lock) if lock is not None else None
        try:
            _check_replaceable(self.folder, config, start)
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


def _check_replaceable(folder: Path, config: dict[str, Any], start: int = 0) -> None:
    """Refuse a folder whose ``checkpoint.pt`` this run must not replace (another run's, this run's further along
    than ``start``, or unreadable)."""
    path = checkpoint_path(folder)
    if not path.exists():
        return
    try:
        saved = read_checkpoint(folder)
    except ProblemError as exc:
        raise ProblemError(f"{exc}; not replacing it: remove it, or give another folder") from None
    diffs = differences(saved["config"], config)
    if diffs:
        raise ProblemError(f"{path}: holds a checkpoint of another run ({'; '.join(diffs)}); give another folder")
    reached = saved["state"]["iteration"]
    if reached > start:
        total = _iterations(saved["config"])
        of = f" of {total}" if total is not None else ""
        raise ProblemError(f"{path}: holds this run's checkpoint at iteration {reached}{of}, which a run from "
                           f"iteration {start} would replace; resume it (--resume {folder}; resume= in Python), "
                           "or remove it to start over")


def _iterations(config: Any) -> int | None:
    """solver.iterations of a saved configuration, where it is an integer."""
    solver = config.get("solver") if isinstance(config, dict) else None
    total = solver.get("iterations") if isinstance(solver, dict) else None
    return total if isinstance(total, int) and not isinstance(total, bool) else None


#: what a checkpoint's ``state`` holds (bsde.trainer._Run.state)
STATE_KEYS = ("iteration", "model", "optimizer", "generator", "streams", "history", "lr_scale", "rollbacks",
              "elapsed_s")


def _state_fault(data: dict[str, Any]) -> str | None:
    """What is wrong with a loaded checkpoint's structure, in words, or None."""
    config, state = data["config"], data["state"]
    if not isinstance(config, dict):
        return f"its config is {type(config).__name__}, not a mapping"
    if not isinstance(state, dict):
        return f"its state is {type(state).__name__}, not a mapping"
    missing = [key for key in STATE_KEYS if key not in state]
    if missing:
        return f"its state lacks {', '.join(missing)}"
    iteration, total = state["iteration"], _iterations(config)
    if not isinstance(iteration, int) or isinstance(iteration, bool) or iteration < 0 or (
            total is not None and iteration > total):
        return f"its iteration {iteration!r} is not one of 0..{total if total is not None else 'solver.iterations'}"
    for key, kind in (("model", dict), ("optimizer", dict), ("history", list)):
        if not isinstance(state[key], kind):
            return f"its state's {key} is {type(state[key]).__name__}, not a {kind.__name__}"
    return None


def read_checkpoint(folder: Path) -> dict[str, Any]:
    """The raw checkpoint dict in ``folder``; one-line :class:`ProblemError` when missing or unreadable."""
    path = checkpoint_path(folder)
    if Path(folder).is_file():
        raise ProblemError(f"{folder}: is a file, expected a checkpoint folder (one holding {CHECKPOINT_FILE})")
    if not path.exists():
        raise ProblemError(f"{folder}: no checkpoint here ({CHECKPOINT_FILE} missing)")
    data = torch_load_safely(path, "checkpoint")
    if not isinstance(data, dict) or not {"config", "state"} <= data.keys() or not readable_format(
            data.get("format"), FORMAT, data["config"]):
        raise ProblemError(f"{path}: not a bsde checkpoint of format {FORMAT}{format_hint(data, FORMAT)}")
    fault = _state_fault(data)
    if fault is not None:  # QA: a missing 'model' was a KeyError "please report it"; iteration -5 trained on
        raise ProblemError(f"{path}: not a bsde checkpoint ({fault})")
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
