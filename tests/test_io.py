"""Atomic writes: the target is the old file or the complete new one, never a partial file."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from bsde.errors import ProblemError
from bsde.io import (OutputError, _host, _writer_tag, atomic_write, check_replaceable, check_writable,
                     temporary_files, torch_load_safely, torch_save_atomic, write_json_atomic, write_text_atomic)


def test_replaces_and_leaves_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "deep" / "er" / "a.txt"
    write_text_atomic(target, "one")
    write_text_atomic(target, "two")
    assert target.read_text() == "two"
    assert sorted(p.name for p in target.parent.iterdir()) == ["a.txt"]


def dead_pid() -> int:
    """The id of a process that has exited."""
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return int(done.stdout)


def test_a_killed_writers_temporary_goes_with_the_next_write(tmp_path: Path) -> None:
    """SIGKILL between the temp file and the rename left '.NAME.PID.XXXX.tmp' for good (QA: a checkpoint's size
    each time); the next write of NAME removes those whose writer on this host is gone, and nothing else."""
    target, host = tmp_path / "checkpoint.pt", _host()
    dead = tmp_path / f".checkpoint.pt.{host}.{dead_pid()}.abc.tmp"
    live = tmp_path / f".checkpoint.pt.{_writer_tag()}.x.tmp"
    other = tmp_path / f".other.pt.{host}.{dead_pid()}.abc.tmp"  # another file's
    elsewhere = tmp_path / f".checkpoint.pt.another-host.{dead_pid()}.abc.tmp"  # a writer on another host (NFS)
    prefix = tmp_path / f".checkpoint.pt.5.{host}.{dead_pid()}.abc.tmp"  # checkpoint.pt.5's, not checkpoint.pt's
    for path in (dead, live, other, elsewhere, prefix):
        path.write_bytes(b"partial")
    assert temporary_files(target) == [dead]
    torch_save_atomic(target, {"a": 1})
    assert not dead.exists() and live.exists() and other.exists() and elsewhere.exists() and prefix.exists()


def test_failed_write_keeps_old_file(tmp_path: Path) -> None:
    target = tmp_path / "a.txt"
    target.write_text("old")

    def broken(handle) -> None:
        handle.write(b"partial")
        raise RuntimeError("disk on fire")

    with pytest.raises(RuntimeError):
        atomic_write(target, broken)
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["a.txt"]


def test_keeps_permissions_of_replaced_file(tmp_path: Path) -> None:
    target = tmp_path / "a.txt"
    target.write_text("old")
    target.chmod(0o640)
    write_text_atomic(target, "new")
    assert stat.S_IMODE(target.stat().st_mode) == 0o640


def test_json_refuses_nan(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        write_json_atomic(tmp_path / "r.json", {"y0": float("nan")})
    assert not (tmp_path / "r.json").exists()
    write_json_atomic(tmp_path / "r.json", {"y0": 1.5})
    assert json.loads((tmp_path / "r.json").read_text()) == {"y0": 1.5}


def test_torch_save_round_trip(tmp_path: Path) -> None:
    torch_save_atomic(tmp_path / "t.pt", {"x": torch.arange(3)})
    assert torch.equal(torch.load(tmp_path / "t.pt", weights_only=True)["x"], torch.arange(3))


def test_unwritable_targets(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputError, match="a path component is a file"):
        check_writable(tmp_path / "file" / "r.json")
    with pytest.raises(OutputError, match="is a folder"):
        write_text_atomic(tmp_path, "x")
    assert check_writable(tmp_path / "new" / "deeper" / "r.json") == tmp_path / "new" / "deeper" / "r.json"
    assert not (tmp_path / "new").exists()  # made for the try, then removed: a stopped run leaves no empty folder


def test_a_folder_given_for_a_file_is_named_a_folder(tmp_path: Path) -> None:
    """--out DIR (an existing folder) says so, rather than that DIR is not a result bsde wrote."""
    with pytest.raises(OutputError, match="is a folder, expected a file path"):
        check_replaceable(tmp_path, lambda path: True, "a solve's JSON result")


@pytest.mark.skipif(not Path("/dev/null").exists(), reason="needs /dev/null")
def test_torch_load_safely_refuses_what_is_not_a_regular_file(tmp_path):
    """A folder, or a device or pipe (torch.load blocks on a pipe; /dev/null stands for them here, as it cannot
    hang a failing test), is one line naming it."""
    (tmp_path / "folder.pt").mkdir()
    with pytest.raises(ProblemError, match="folder.pt: is a folder, expected checkpoint"):
        torch_load_safely(tmp_path / "folder.pt", "checkpoint")
    with pytest.raises(ProblemError, match="/dev/null: not a regular file, expected solution"):
        torch_load_safely(Path("/dev/null"), "solution")
    torch_save_atomic(tmp_path / "good.pt", {"a": torch.ones(2)})
    assert torch.equal(torch_load_safely(tmp_path / "good.pt", "checkpoint")["a"], torch.ones(2))


def test_a_plot_is_bsdes_only_with_its_software_chunk(tmp_path):
    """is_bsde_png reads the PNG's text chunks: 'Software' must be exactly PNG_SOFTWARE, before the image data."""
    import io as stdio

    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from bsde.io import PNG_SOFTWARE, is_bsde_png

    def png(metadata):
        buffer = stdio.BytesIO()
        FigureCanvasAgg(Figure(figsize=(1, 1))).print_png(buffer, metadata=metadata)
        return buffer.getvalue()

    cases = {"ours.png": png({"Software": PNG_SOFTWARE}), "matplotlib.png": png({}),
             "lookalike.png": png({"Software": PNG_SOFTWARE + "-not"}), "text.png": b"not a png"}
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
    assert [is_bsde_png(tmp_path / name) for name in cases] == [True, False, False, False]
    assert not is_bsde_png(tmp_path / "missing.png")


def test_a_full_disk_is_the_machines_failure_not_bad_input(tmp_path: Path) -> None:
    """OutputError.machine: exit 1 at the CLI for a full disk, exit 2 for a path the system refuses (review)."""
    import errno

    def failing(code: int):
        def write(handle) -> None:
            raise OSError(code, os.strerror(code))
        return write

    for code, machine in ((errno.ENOSPC, True), (errno.EACCES, False)):
        with pytest.raises(OutputError, match=os.strerror(code)) as info:
            atomic_write(tmp_path / "a.json", failing(code))
        assert info.value.machine is machine
    assert list(tmp_path.iterdir()) == []


def test_a_full_disk_when_the_temp_file_is_made_is_the_machines_failure_too(tmp_path: Path, monkeypatch) -> None:
    """atomic_write and check_writable fail at mkstemp on a full disk: the same error as a failed write."""
    import errno
    import tempfile

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(tempfile, "mkstemp", full)
    for call in (lambda: atomic_write(tmp_path / "a.json", lambda handle: None),
                 lambda: check_writable(tmp_path / "a.json")):
        with pytest.raises(OutputError, match="cannot write") as info:
            call()
        assert info.value.machine is True


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs named pipes (POSIX)")
def test_a_device_or_pipe_is_never_replaced(tmp_path: Path) -> None:
    """The atomic rename would put a regular file where the node was (as root, /dev/full became a file)."""
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    with pytest.raises(OutputError, match="is not a regular file"):
        write_text_atomic(fifo, "x")
    assert stat.S_ISFIFO(fifo.stat().st_mode)


def test_a_damaged_torch_file_is_named_in_words_not_by_a_bare_number(tmp_path: Path, monkeypatch):
    """torch can fail with a KeyError whose text is a number (a damaged record): 'not a readable checkpoint
    (174812789)' told the user nothing (QA)."""
    from bsde.io import torch_load_safely

    path = tmp_path / "checkpoint.pt"
    path.write_bytes(b"x")

    def damaged(*args, **kwargs):
        raise KeyError(174812789)

    monkeypatch.setattr(torch, "load", damaged)
    with pytest.raises(ProblemError, match=r"not a readable checkpoint \(damaged or not a torch file: KeyError "
                                           r"174812789\)"):
        torch_load_safely(path, "checkpoint")
