"""Atomic file output: every file the package writes goes through ``atomic_write``.

The data goes to a temporary file in the target's folder, is flushed and fsynced, then
``os.replace``-d over the target and the folder is fsynced: a reader (or a crash) sees the
old file or the complete new one, never a torn mix.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import socket
import tempfile
from pathlib import Path
from typing import IO, Any, Callable

import torch

from bsde.errors import BSDEError, ProblemError


class OutputError(BSDEError):
    """A file or folder cannot be written (missing permission, a path component is a file...); ``machine`` when
    the machine failed (a full disk, an I/O error), not the path given."""

    def __init__(self, message: str = "", *, machine: bool = False):
        super().__init__(message)
        self.machine = machine


#: the system's errors that are the machine's doing, whatever path it was given
MACHINE_ERRORS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EIO})


def _reason(exc: OSError) -> str:
    return exc.strerror or type(exc).__name__


def _cannot_write(path: Path, exc: OSError, where: str = "") -> OutputError:
    """The one-line error for a write the system refused; ``machine`` for a full disk or an I/O error."""
    return OutputError(f"{path}: cannot write{where} ({_reason(exc)})", machine=exc.errno in MACHINE_ERRORS)


def ensure_folder(folder: Path) -> Path:
    """Create ``folder`` (and parents) if needed; one-line :class:`OutputError` when impossible."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise OutputError(f"{folder}: cannot create folder (a path component is a file)") from None
    except OSError as exc:
        raise OutputError(f"{folder}: cannot create folder ({_reason(exc)})") from None
    if not folder.is_dir():
        raise OutputError(f"{folder}: expected a folder, found a file")
    return folder


def _fsync_folder(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover - some filesystems refuse fsync on folders
        pass
    finally:
        os.close(fd)


def _file_mode(path: Path) -> int:
    """The existing file's permissions, else what a plain open() would give (0o666 less the umask)."""
    try:
        return path.stat().st_mode & 0o7777
    except OSError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # another user's: alive
        return True
    return True


def _host() -> str:
    """This host's name kept to letters, digits and '-'."""
    return re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname()) or "host"


def _writer_tag() -> str:
    """'HOST.PID' of this process, as its temp files carry it."""
    return f"{_host()}.{os.getpid()}"


def temporary_files(path: Path) -> list[Path]:
    """The temp files of ``atomic_write(path)`` beside it, '.NAME.HOST.PID.XXXX.tmp', that a writer on this host,
    of this user, left when it was killed (SIGKILL, a power cut) before it could remove them. None on Windows."""
    path = Path(path)
    if os.name == "nt" or not path.parent.is_dir():
        return []
    pattern = re.compile(rf"^\.{re.escape(path.name)}\.{re.escape(_host())}\.(\d+)\.[A-Za-z0-9_]+\.tmp$")
    found = []
    for candidate in path.parent.iterdir():
        match = pattern.match(candidate.name)
        try:
            if match and candidate.lstat().st_uid == os.getuid() and not _alive(int(match.group(1))):
                found.append(candidate)
        except OSError:  # gone meanwhile
            pass
    return found


def atomic_write(path: Path, write: Callable[[IO[bytes]], None]) -> Path:
    """Write ``path`` atomically: ``write(f)`` fills a temp file '.NAME.HOST.PID.XXXX.tmp' that then replaces
    ``path``; the temp files of writers of ``path`` that were killed before they could remove theirs go too."""
    path = Path(path)
    if path.is_dir():
        raise OutputError(f"{path}: is a folder, expected a file path")
    if path.exists() and not path.is_file():  # a device, a pipe, a socket: the rename would replace the node itself
        raise OutputError(f"{path}: is not a regular file (a device or a pipe); not replacing it")
    folder = ensure_folder(path.parent)
    for debris in temporary_files(path):
        with contextlib.suppress(OSError):  # best effort
            debris.unlink()
    try:
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{path.name}.{_writer_tag()}.", suffix=".tmp")
    except OSError as exc:
        raise _cannot_write(path, exc) from None
    try:
        os.chmod(tmp, _file_mode(path))
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise _cannot_write(path, exc) from None
        raise
    _fsync_folder(folder)
    return path


def write_bytes_atomic(path: Path, data: bytes) -> Path:
    return atomic_write(path, lambda handle: handle.write(data))


def write_text_atomic(path: Path, text: str) -> Path:
    return write_bytes_atomic(path, text.encode("utf-8"))


def write_json_atomic(path: Path, data: Any) -> Path:
    """JSON (strict: NaN and infinities are refused) with a trailing newline."""
    return write_text_atomic(path, json.dumps(data, indent=2, allow_nan=False) + "\n")


def torch_save_atomic(path: Path, obj: Any) -> Path:
    return atomic_write(path, lambda handle: torch.save(obj, handle))


def torch_load_safely(path: Path, what: str) -> Any:
    """``torch.load(path, weights_only=True)`` on the CPU; a damaged or foreign file is one line saying so (not
    torch's advice to load it with weights_only=False, which would run code from the file)."""
    path = Path(path)
    if not path.is_file():  # a folder, or a pipe or device that torch.load would block on
        raise ProblemError(f"{path}: {'is a folder' if path.is_dir() else 'not a regular file'}, expected {what}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises many types for a damaged or foreign file
        text = str(exc).strip()
        first = text.splitlines()[0] if text else ""
        reason = ("damaged, or holds more than tensors and plain values" if text.startswith("Weights only load failed")
                  else first if any(c.isalpha() for c in first)
                  else f"damaged or not a torch file: {type(exc).__name__} {first}".rstrip())  # e.g. a bare number
        raise ProblemError(f"{path}: not a readable {what} ({reason})") from None


def check_replaceable(path: Path, ours: Callable[[Path], bool], what: str) -> Path:
    """Refuse (:class:`OutputError`) an existing ``path`` that ``ours`` does not recognise as ``what`` bsde wrote:
    a rerun replaces its own output, never someone else's file (a link is judged by what it points to)."""
    path = Path(path)
    if path.is_dir():
        raise OutputError(f"{path}: is a folder, expected a file path")
    if (path.exists() or path.is_symlink()) and not (path.is_file() and ours(path)):
        raise OutputError(f"{path}: exists and is not {what} written by bsde; not replacing it: move it away, "
                          "or give another path")
    return path


def is_solve_json(path: Path) -> bool:
    """Whether ``path`` holds a solve's JSON result (bsde solve --out)."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and {"problem", "kind", "y0", "error_estimate", "iterations"} <= data.keys()


#: the PNG text chunk that marks a plot as bsde's (matplotlib's metadata 'Software')
PNG_SOFTWARE = "bsde"


def is_bsde_png(path: Path) -> bool:
    """Whether ``path`` is a PNG with a text chunk 'Software' = PNG_SOFTWARE (a plot bsde wrote) before its image data."""
    try:
        data = Path(path).read_bytes()
    except OSError:
        return False
    if not data.startswith(b"\x89PNG\r\n\x1a\n"):
        return False
    at = 8
    while at + 8 <= len(data):  # chunks: length (4 bytes, big-endian), type (4), data, CRC (4)
        length, kind = int.from_bytes(data[at:at + 4], "big"), data[at + 4:at + 8]
        if kind == b"tEXt" and data[at + 8:at + 8 + length] == b"Software\x00" + PNG_SOFTWARE.encode():
            return True
        if kind in (b"IDAT", b"IEND"):
            return False
        at += 12 + length
    return False


def check_writable(path: Path) -> Path:
    """Fail now, not after a long run, when ``path`` cannot be written: its folder is made and a file tried
    there, then the folders made for the try go again (a run stopped before it writes leaves no empty folder)."""
    path = Path(path)
    if path.is_dir():
        raise OutputError(f"{path}: is a folder, expected a file path")
    missing = [folder for folder in (path.parent, *path.parent.parents) if not folder.exists()]  # deepest first
    try:
        folder = ensure_folder(path.parent)
        try:  # try it: permission bits do not tell the whole story (root, read-only mounts)
            fd, probe = tempfile.mkstemp(dir=folder, prefix=f".{path.name}.", suffix=".probe")
        except OSError as exc:
            raise _cannot_write(path, exc, f" into {folder}") from None
        os.close(fd)
        os.unlink(probe)
    finally:
        for made in missing:
            with contextlib.suppress(OSError):  # not empty any more (another writer), or never made
                made.rmdir()
    return path
