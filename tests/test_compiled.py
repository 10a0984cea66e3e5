"""solver.compile: the compiled training step follows the eager one (same loss history to float rounding)."""

import functools

import pytest
import torch

import bsde
from bsde.compiled import CompileError, compiled

from conftest import TINY


@functools.lru_cache(maxsize=1)
def inductor_works() -> bool:
    try:
        return float(torch.compile(lambda x: (x * 2).sum(), dynamic=False)(torch.ones(3))) == 6.0
    except Exception:  # noqa: BLE001 - any failure means: no inductor here
        return False


needs_inductor = pytest.mark.skipif("not inductor_works()", reason="torch.compile (inductor) does not work here")


def _same_history(changes):
    """...and each compiled function is one graph: no graph break (the terminal Z_N = sigma^T grad g(X_N), by
    autograd, broke the loss's graph into 7 pieces until the trainer computed it outside)."""
    from torch._dynamo.utils import counters

    settings = {**TINY, "solver.iterations": 30, "solver.log_every": 5, **changes}
    eager = bsde.solve(bsde.load_problem("hjb", settings), seed=4, device="cpu")
    counters.clear()
    fast = bsde.solve(bsde.load_problem("hjb", {**settings, "solver.compile": True}), seed=4, device="cpu")
    assert not counters["graph_break"], list(counters["graph_break"])
    assert [h.iteration for h in fast.history] == [h.iteration for h in eager.history]
    for a, b in zip(fast.history, eager.history):  # float64: rounding only
        assert a.loss == pytest.approx(b.loss, rel=1e-9) and a.y0 == pytest.approx(b.y0, rel=1e-9)
    assert fast.y0 == pytest.approx(eager.y0, rel=1e-9)
    assert fast.history[-1].y0 != fast.history[0].y0  # and it trained


@needs_inductor
def test_compiled_training_matches_eager():
    """Both compiled functions: the loss with its backward, and the controlled paths (from the start here); the
    first layer, 24 -> 6, stores its weights transposed with a backward of its own (bsde.networks)."""
    _same_history({"solver.measure": "controlled", "solver.control_from": 0.0, "equation.dim": 24,
                   "solver.hidden": [6, 6]})


@pytest.mark.slow
@needs_inductor
def test_compiled_training_matches_eager_across_the_switch_of_measure():
    """Plain paths first, then controlled ones: the loss recompiles once for the other mode."""
    _same_history({"solver.measure": "controlled", "solver.control_from": 0.5})


def test_compile_off_is_the_function_itself():
    def function(x):
        return x

    assert compiled(function, False) is function


def test_compile_failure_is_one_error_naming_the_key(monkeypatch):
    def broken(function, **kwargs):
        def run(*args):
            raise torch._dynamo.exc.TorchDynamoException("no working C++ compiler\nsecond line")
        return run

    import torch._dynamo  # noqa: F401 - the exception type lives there

    monkeypatch.setattr(torch, "compile", broken)
    with pytest.raises(CompileError, match=r"^solver.compile: .*no working C\+\+ compiler\); set solver.compile=false$"):
        compiled(lambda x: x, True)(1)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("mode", [True, "reduce-overhead"])
def test_compiled_training_on_cuda_matches_eager(mode):
    """Float64 on the GPU (no TF32): the compiled step (and its CUDA-graph replay) follows the eager one to rounding,
    across the switch from plain to controlled paths."""
    settings = {**TINY, "solver.iterations": 30, "solver.log_every": 5, "solver.dtype": "float64",
                "solver.measure": "controlled", "solver.control_from": 0.5}
    eager = bsde.solve(bsde.load_problem("hjb", settings), seed=4, device="cuda")
    fast = bsde.solve(bsde.load_problem("hjb", {**settings, "solver.compile": mode}), seed=4, device="cuda")
    for a, b in zip(fast.history, eager.history):
        assert a.loss == pytest.approx(b.loss, rel=1e-7) and a.y0 == pytest.approx(b.y0, rel=1e-7)
