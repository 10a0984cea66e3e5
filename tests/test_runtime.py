"""Device defaults: the dtype follows the device unless the problem sets it; TF32 only for float32 on CUDA."""

import platform
import subprocess
import sys

import pytest
import torch

import bsde
import bsde.trainer as trainer
from bsde.runtime import cuda_tf32, matmul_precision
from bsde.settings import SolverSettings

from conftest import TINY

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def test_dtype_follows_the_device_unless_set():
    unset = SolverSettings()
    assert unset.dtype is None and unset.torch_dtype == torch.float64
    assert unset.for_device("cuda").dtype == "float32" and unset.for_device("cpu").dtype == "float64"
    for dtype in ("float32", "float64"):
        assert SolverSettings(dtype=dtype).for_device("cuda").dtype == dtype
        assert SolverSettings(dtype=dtype).for_device("cpu").dtype == dtype
    assert bsde.load_problem("hjb").solver.dtype is None  # the shipped problems leave it to the device


NEW_TF32_API = hasattr(torch.backends.cuda.matmul, "fp32_precision")  # torch >= 2.9


@pytest.mark.parametrize(("dtype", "tf32", "device", "inside"), [
    ("float32", True, "cuda", True), ("float32", False, "cuda", False), ("float64", True, "cuda", None),
    ("float32", True, "cpu", None),
])
def test_tf32_only_for_float32_on_cuda(dtype, tf32, device, inside):
    """The flag is torch's global: set inside the block for float32 on CUDA only, and restored after, exactly."""
    flag = torch.backends.cuda.matmul
    name, starts = ("fp32_precision", ("none", "ieee", "tf32")) if NEW_TF32_API else ("allow_tf32", (False, True))
    before = getattr(flag, name)
    try:
        for start in starts:
            setattr(flag, name, start)
            with matmul_precision(SolverSettings(dtype=dtype, tf32=tf32), torch.device(device)):
                assert cuda_tf32() == ((start in ("tf32", True)) if inside is None else inside)
            assert getattr(flag, name) == start
    finally:
        setattr(flag, name, before)


@pytest.mark.skipif(not NEW_TF32_API, reason="torch < 2.9 has only the legacy allow_tf32 flag")
def test_tf32_block_works_after_the_caller_set_the_new_api():
    """torch's recommended TF32 setting (the new API) makes its legacy flag raise when read; the block must not
    read it (it did: every float32 solve on CUDA of such a caller failed)."""
    flag = torch.backends.cuda.matmul
    before = flag.fp32_precision
    try:
        flag.fp32_precision = "tf32"
        with matmul_precision(SolverSettings(dtype="float32", tf32=False), torch.device("cuda")):
            assert flag.fp32_precision == "ieee" and not cuda_tf32()
        assert flag.fp32_precision == "tf32"
    finally:
        flag.fp32_precision = before


def test_a_cuda_device_is_named_as_given(monkeypatch):
    from bsde.errors import BSDEError
    from bsde.runtime import resolve_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(BSDEError, match="^device 'cuda:0' requested but torch sees no CUDA device"):
        resolve_device("cuda:0")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert resolve_device("cuda:1") == torch.device("cuda:1")
    with pytest.raises(BSDEError, match=r"^device 'cuda:2': torch sees 2 CUDA device\(s\), cuda:0..cuda:1$"):
        resolve_device("cuda:2")
    # a bad name is a bad argument: ArgumentError, a ValueError as well as a BSDEError
    with pytest.raises(ValueError, match="unknown device 'gpu'"):
        resolve_device("gpu")


def test_a_cpu_solve_is_float64_by_default():
    result = bsde.solve(bsde.load_problem("hjb", {**TINY, "solver.iterations": 5}), device="cpu")
    assert result.dtype == "float64"


@cuda
def test_a_cuda_solve_is_float32_with_tf32_by_default(monkeypatch):
    seen = []
    loss = trainer.terminal_loss

    def spy(*args):
        if torch.is_grad_enabled():  # a training step (validation runs under no_grad, in plain float32)
            seen.append(cuda_tf32())
        return loss(*args)

    monkeypatch.setattr(trainer, "terminal_loss", spy)
    before = cuda_tf32()
    result = bsde.solve(bsde.load_problem("hjb", {**TINY, "solver.iterations": 5}), device="cuda")
    assert result.dtype == "float32" and seen and all(seen)  # every training step ran with TF32 matmuls
    assert cuda_tf32() == before
    explicit = bsde.solve(bsde.load_problem("hjb", {**TINY, "solver.iterations": 5, "solver.dtype": "float64"}),
                          device="cuda")
    assert explicit.dtype == "float64"


HEAP_OF_BLOCKS = """
import ctypes, sys, torch
from bsde.runtime import keep_freed_memory
class Mallinfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]
libc = ctypes.CDLL(None)
libc.mallinfo2.restype = Mallinfo2
kept = {"large": lambda: keep_freed_memory(), "default": lambda: keep_freed_memory("meta"),  # not a CPU run: no effect
        "small": lambda: keep_freed_memory("cpu", 2**20)}[sys.argv[1]]()
for size in (8 * 2**20, 64 * 2**20):  # under and over glibc's largest mmap threshold (32 MB)
    block = torch.ones(size // 4)
    mapped = libc.mallinfo2().hblkhd  # bytes in blocks that are mappings of their own
    del block
    print(kept, mapped, libc.mallinfo2().fordblks)  # fordblks: free bytes the heap keeps for reuse
"""


@pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc"
                    or tuple(map(int, platform.libc_ver()[1].split(".")[:2])) < (2, 33), reason="glibc 2.33+ only")
def test_keep_freed_memory_puts_blocks_on_the_heap_and_keeps_them_when_freed():
    """By default an 8 MB and a 64 MB block are mappings of their own, unmapped when freed (their pages zeroed
    afresh on the next touch). Any CPU run keeps the 8 MB one on the heap when freed; a large run the 64 MB one
    too, while a small run leaves it a mapping. Read from glibc's own counts (mallinfo2), not page faults,
    which some kernels and sandboxes count differently."""
    def heap(mode: str) -> list[tuple[str, int, int]]:
        out = subprocess.run([sys.executable, "-c", HEAP_OF_BLOCKS, mode], capture_output=True, text=True,
                             check=True).stdout.splitlines()
        return [(kept, int(mapped), int(free)) for kept, mapped, free in (line.split() for line in out)]

    medium, large = 8 * 2**20, 64 * 2**20
    (kept, large_mapped_8, large_free_8), (_, large_mapped_64, large_free_64) = heap("large")
    (other_device, default_mapped_8, _), (_, default_mapped_64, _) = heap("default")
    (small_run, small_mapped_8, small_free_8), (_, small_mapped_64, _) = heap("small")
    assert kept == "True" and other_device == "False" and small_run == "True"
    assert default_mapped_8 >= medium and default_mapped_64 >= large  # the default: mappings of their own
    assert small_mapped_8 < medium and small_free_8 >= medium, (small_mapped_8, small_free_8)
    assert small_mapped_64 >= large  # a small run leaves blocks over 32 MB as they were
    assert large_mapped_8 < medium and large_free_8 >= medium, (large_mapped_8, large_free_8)
    assert large_mapped_64 < large and large_free_64 >= large, (large_mapped_64, large_free_64)
