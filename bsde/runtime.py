"""Where and how fast to run: device choice and CPU threads."""

from __future__ import annotations

import os
import platform
import re
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

import torch

from bsde.arguments import integer
from bsde.errors import ArgumentError, BSDEError

if TYPE_CHECKING:
    from bsde.settings import SolverSettings


def available_cores() -> int:
    """Cores this process may run on (cgroup/affinity aware where the OS tells)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def processes_here() -> int:
    """How many processes of one torchrun job share this machine (LOCAL_WORLD_SIZE; 1 without torchrun)."""
    return max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))


def thread_count(threads: int | None = None) -> int:
    """The CPU threads a run takes: ``threads`` (checked), else the available cores shared out among the processes
    torchrun started on this machine."""
    return max(1, available_cores() // processes_here()) if threads is None else integer("threads", threads, minimum=1)


def set_threads(threads: int | None = None) -> int:
    """Set torch's intra-op CPU threads deliberately (:func:`thread_count`); returns it."""
    count = thread_count(threads)
    torch.set_num_threads(count)
    return count


@contextmanager
def callers_threads() -> Iterator[None]:
    """The caller's torch thread count back after the block, whatever the block set."""
    previous = torch.get_num_threads()
    try:
        yield
    finally:
        torch.set_num_threads(previous)


@contextmanager
def using_threads(threads: int | None = None) -> Iterator[int]:
    """``set_threads(threads)`` for the block, the caller's thread count back after it."""
    with callers_threads():
        yield set_threads(threads)


#: glibc's mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD, _M_MMAP_MAX = -1, -3, -4
#: glibc's largest dynamic mmap threshold on 64-bit systems (DEFAULT_MMAP_THRESHOLD_MAX)
MMAP_THRESHOLD_MAX = 32 << 20
#: how much of freed memory malloc keeps so far: 0 nothing set, 1 the heap's top, 2 blocks of any size too
_kept_level = 0


#: a run whose memory estimate (bsde.memory) is at least this also keeps freed blocks over MMAP_THRESHOLD_MAX on
#: the heap (at d = 10,000: the paths, the activations, the first and last layers' gradients)
KEEP_FREED_FROM = 256 << 20


def keep_freed_memory(device: torch.device | str = "cpu", need: int | None = None) -> bool:
    """For a run on the CPU (``device``) that needs ``need`` bytes (None: a large run), make glibc's malloc keep
    freed memory for reuse; returns whether it took effect (False off the CPU or off glibc). Process-wide and
    permanent, so the solver's iterations stop asking the kernel for pages that it zeroes on first touch.

    Every run: blocks under MMAP_THRESHOLD_MAX come from the heap, and the heap's top is never trimmed. By
    default glibc returned the top to the kernel as the step's tensors came and went: 100-500 fresh pages per
    iteration at d = 100 (a few percent of it, within the noise of the 2-core machine).
    From KEEP_FREED_FROM on, larger blocks too: by default each is a fresh mapping whose pages are zeroed each
    iteration again, a third of an iteration at d = 10,000 (float64 there: 0.72 -> 0.42 s per iteration); the
    price is a higher peak, as aligned blocks fragment the heap (1.36x at d = 10,000; no higher at d = 1000).
    Below KEEP_FREED_FROM a caller's own large arrays stay mappings of their own, returned to the kernel when freed.
    """
    global _kept_level
    level = 2 if need is None or need >= KEEP_FREED_FROM else 1
    if _kept_level >= level:
        return True
    if torch.device(device).type != "cpu" or platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    import ctypes

    try:
        libc = ctypes.CDLL(None)
        settings = [(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_MAX), (_M_TRIM_THRESHOLD, 2**31 - 1)]
        ok = all(libc.mallopt(option, value) for option, value in
                 settings + ([(_M_MMAP_MAX, 0)] if level == 2 else []))
    except (OSError, AttributeError):
        return False
    if ok:
        _kept_level = level
    return ok


def resolve_device(name: str | torch.device = "auto") -> torch.device:
    """'auto' picks CUDA when present; 'cuda' without a GPU is an error, not a silent fallback."""
    if isinstance(name, torch.device):
        name = str(name)
    if not isinstance(name, str):
        raise ArgumentError(f"device: expected 'auto', 'cpu', 'cuda' or a torch.device, got {type(name).__name__}")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    if (cuda := re.fullmatch(r"cuda(?::(\d+))?", name)) is not None:
        if not torch.cuda.is_available():
            raise BSDEError(f"device '{name}' requested but torch sees no CUDA device; use --device cpu or auto")
        if cuda.group(1) is not None and int(cuda.group(1)) >= torch.cuda.device_count():
            raise ArgumentError(f"device '{name}': torch sees {torch.cuda.device_count()} CUDA device(s), "
                            f"cuda:0..cuda:{torch.cuda.device_count() - 1}")
        return torch.device(name)
    raise ArgumentError(f"unknown device '{name}' (use auto, cpu, cuda or cuda:N)")


def _tf32_switch() -> tuple[str, Any, Any]:
    """(attribute of ``torch.backends.cuda.matmul``, its TF32-on value, its off value): from torch 2.9 on the
    new ``fp32_precision`` alone (the legacy ``allow_tf32`` is deprecated there, and reading it raises once a
    caller has set the new one), before that the legacy flag."""
    if hasattr(torch.backends.cuda.matmul, "fp32_precision"):
        return "fp32_precision", "tf32", "ieee"
    return "allow_tf32", True, False


def cuda_tf32() -> bool:
    """Whether float32 matmuls on CUDA may run in TF32 now, read through the API that :func:`matmul_precision` sets."""
    name, on, _ = _tf32_switch()
    return getattr(torch.backends.cuda.matmul, name) == on


@contextmanager
def matmul_precision(settings: SolverSettings, device: torch.device) -> Iterator[None]:
    """Inside the block, float32 matmuls on CUDA run in TF32 when ``settings.tf32`` (restored after, exactly).

    TF32 rounds the factors of a product to a 10-bit mantissa and sums in float32: about 8x the
    float32 matmul throughput of recent NVIDIA GPUs. CPU and float64 runs are left as they are.
    """
    if device.type != "cuda" or settings.dtype != "float32":
        yield
        return
    matmul = torch.backends.cuda.matmul
    name, on, off = _tf32_switch()
    previous = getattr(matmul, name)
    setattr(matmul, name, on if settings.tf32 else off)
    try:
        yield
    finally:
        setattr(matmul, name, previous)


#: the first torch release with a fused Adam kernel, by device type (CUDA's predates our floor, torch 2.3)
FUSED_ADAM_SINCE = {"cuda": (2, 0), "cpu": (2, 4)}


def torch_version(version: str | None = None) -> tuple[int, int]:
    """(major, minor) of ``version`` (default: the running torch), e.g. (2, 13) for '2.13.0+cpu'."""
    found = re.match(r"(\d+)\.(\d+)", str(torch.__version__ if version is None else version))
    return (int(found[1]), int(found[2])) if found else (0, 0)


def fused_adam(device: torch.device | str, version: str | None = None) -> bool:
    """Whether ``torch.optim.Adam(fused=True)`` runs on ``device`` with this torch (CPU from 2.4 on).

    The fused step is one kernel instead of a dozen per parameter, with the same update; where torch
    has none for the device, the trainer takes the default (foreach) implementation instead.
    """
    since = FUSED_ADAM_SINCE.get(torch.device(device).type)
    return since is not None and torch_version(version) >= since


def proc_field(path: str, key: str) -> str | None:
    """The value of the ``key:`` line of a /proc file such as /proc/meminfo, or None."""
    try:
        for line in Path(path).read_text().splitlines():
            name, _, value = line.partition(":")
            if name.strip() == key:
                return value.strip()
    except OSError:
        pass
    return None


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo, else what ``platform`` knows."""
    return proc_field("/proc/cpuinfo", "model name") or platform.processor() or platform.machine() or "unknown"
