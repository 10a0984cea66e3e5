"""Device defaults: the dtype follows the device unless the problem sets it; TF32 only for float32 on CUDA."""

import pytest
import torch

import bsde
import bsde.trainer as trainer
from bsde.runtime import matmul_precision
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


@pytest.mark.parametrize(("dtype", "tf32", "device", "inside"), [
    ("float32", True, "cuda", True), ("float32", False, "cuda", False), ("float64", True, "cuda", None),
    ("float32", True, "cpu", None),
])
def test_tf32_only_for_float32_on_cuda(dtype, tf32, device, inside):
    """The flag is torch's global: set inside the block for float32 on CUDA only, and restored after."""
    flag = torch.backends.cuda.matmul
    before = flag.allow_tf32
    for start in (False, True):
        flag.allow_tf32 = start
        with matmul_precision(SolverSettings(dtype=dtype, tf32=tf32), torch.device(device)):
            assert flag.allow_tf32 == (start if inside is None else inside)
        assert flag.allow_tf32 == start
    flag.allow_tf32 = before


def test_a_cpu_solve_is_float64_by_default():
    result = bsde.solve(bsde.load_problem("hjb", {**TINY, "solver.iterations": 5}), device="cpu")
    assert result.dtype == "float64"


@cuda
def test_a_cuda_solve_is_float32_with_tf32_by_default(monkeypatch):
    seen = []
    loss = trainer.terminal_loss

    def spy(*args):
        if torch.is_grad_enabled():  # a training step (validation runs under no_grad, in plain float32)
            seen.append(torch.backends.cuda.matmul.allow_tf32)
        return loss(*args)

    monkeypatch.setattr(trainer, "terminal_loss", spy)
    before = torch.backends.cuda.matmul.allow_tf32
    result = bsde.solve(bsde.load_problem("hjb", {**TINY, "solver.iterations": 5}), device="cuda")
    assert result.dtype == "float32" and seen and all(seen)  # every training step ran with TF32 matmuls
    assert torch.backends.cuda.matmul.allow_tf32 == before
    explicit = bsde.solve(bsde.load_problem("hjb", {**TINY, "solver.iterations": 5, "solver.dtype": "float64"}),
                          device="cuda")
    assert explicit.dtype == "float64"
