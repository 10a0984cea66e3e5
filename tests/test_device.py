"""Every tensor the library makes lands on the run's device, and every draw uses a generator there.

On a CPU-only machine a tensor made without ``device=`` works by accident (the default device is
the CPU), so the bug only shows on a GPU. :class:`FactoryGuard` makes it visible here: it records
each tensor factory call (``torch.zeros``, ``torch.rand``, ``torch.tensor``, ...) made from the
``bsde`` package without a ``device`` argument, and each draw whose generator sits on another
device than the one asked for. The CUDA tests at the end run where a GPU is present.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest
import torch
from torch.overrides import TorchFunctionMode

import bsde
import bsde.trainer as trainer
from bsde.bench.cases import QUICK, compare_loops
from bsde.errors import Interrupted
from bsde.reference import reference
from bsde.runtime import fused_adam
from bsde.trivial import driver_free_baseline

from conftest import TINY

PACKAGE = Path(bsde.__file__).resolve().parent
TORCH = Path(torch.__file__).resolve().parent
FACTORIES = {
    torch.empty, torch.zeros, torch.ones, torch.full, torch.rand, torch.randn, torch.randint, torch.randperm,
    torch.normal, torch.arange, torch.linspace, torch.logspace, torch.eye, torch.tensor, torch.as_tensor,
    torch.scalar_tensor, torch.empty_strided,
}
cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


class FactoryGuard(TorchFunctionMode):
    """Records factory calls from ``bsde`` code that name no device or draw from a foreign generator."""

    def __init__(self) -> None:
        super().__init__()
        self.offences: list[str] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in FACTORIES:
            where = _caller()
            if where is not None:
                generator = kwargs.get("generator")
                if "device" not in kwargs:
                    self.offences.append(f"{where}: torch.{func.__name__} without device=")
                elif generator is not None and torch.device(kwargs["device"]).type != generator.device.type:
                    self.offences.append(f"{where}: torch.{func.__name__} on {kwargs['device']} with a "
                                         f"{generator.device} generator")
        return func(*args, **kwargs)


def _caller() -> str | None:
    """'bsde/x.py:12' for the first frame outside torch and this file, if it lies in the bsde package."""
    frame = sys._getframe(2)
    while frame is not None:
        path = Path(frame.f_code.co_filename).resolve()
        if path != Path(__file__).resolve() and TORCH not in path.parents:
            if PACKAGE in path.parents:
                return f"{path.relative_to(PACKAGE.parent)}:{frame.f_lineno}"
            return None
        frame = frame.f_back
    return None


def guarded_run(work) -> list[str]:
    """The offences recorded while ``work()`` runs."""
    with FactoryGuard() as guard:
        work()
    return sorted(set(guard.offences))


def assert_on_device(work) -> None:
    offences = guarded_run(work)
    assert not offences, "tensors made off the run's device:\n" + "\n".join(offences)


def test_guard_catches_a_factory_call_without_device():
    def careless() -> None:
        exec(compile("import torch\ntorch.zeros(3)", str(PACKAGE / "careless.py"), "exec"), {})

    assert guarded_run(careless) == ["bsde/careless.py:2: torch.zeros without device="]


@pytest.mark.parametrize("name", ["hjb", "allen_cahn", "max_call", "default_risk"])
def test_solve_names_the_device_everywhere(name):
    problem = bsde.load_problem(name, {**TINY, "solver.iterations": 3})
    results = []
    assert_on_device(lambda: results.append(bsde.solve(problem, device="cpu")))
    assert math.isfinite(results[0].y0)


def test_baseline_names_the_device():
    equation = bsde.load_problem("max_call", {"equation.dim": 3}).equation
    assert_on_device(lambda: driver_free_baseline(equation, paths=512, device=torch.device("cpu"),
                                                  generator=torch.Generator().manual_seed(0)))


@pytest.mark.parametrize(("name", "method", "paths"), [
    ("hjb", "cole-hopf", 256), ("max_call", "mc", 256), ("allen_cahn", "mlp", 2), ("default_risk", "mlp", 2),
])
def test_reference_engine_names_the_device(name, method, paths):
    problem = bsde.load_problem(name, {"equation.dim": 3})
    assert_on_device(lambda: reference(problem, method, paths=paths))


def _custom_equations() -> list:
    """A full-correlation GBM with a closed form, and a Diffusion with substeps (Euler paths, bridge draws)."""
    from bsde.closed_forms import GeometricBasketPut

    gbm = bsde.custom_equation(dim=2, x0=100.0, process=bsde.GBM(0.05, [0.2, 0.3], [[1.0, 0.5], [0.5, 1.0]]),
                               terminal=lambda x: (100 - x.log().mean(-1).exp()).relu(),
                               driver=lambda t, x, y, z: -0.05 * y, closed_form=GeometricBasketPut(100.0))
    diffusion = bsde.custom_equation(dim=2, x0=1.0, process=bsde.Diffusion(lambda t, x: -x, lambda t, x: 0.5,
                                                                            substeps=2),
                                     terminal=lambda x: x.square().sum(-1), driver=lambda t, x, y, z: -0.1 * y)
    return [gbm, diffusion]


@pytest.mark.parametrize("index", [0, 1], ids=["gbm-matrix", "diffusion"])
def test_custom_equations_name_the_device(index):
    equation = _custom_equations()[index]
    settings = {"iterations": 3, "time_steps": 4, "batch_size": 8, "valid_size": 8}
    assert_on_device(lambda: bsde.solve(equation, solver=settings, device="cpu", auto_reference=True))
    assert_on_device(lambda: reference(equation, "mc", paths=256))


@cuda
@pytest.mark.parametrize("index", [0, 1], ids=["gbm-matrix", "diffusion"])
def test_custom_equations_solve_on_cuda(index):
    settings = {"iterations": 20, "time_steps": 4, "batch_size": 16, "valid_size": 16}
    result = bsde.solve(_custom_equations()[index], solver=settings, device="cuda", seed=0)
    assert result.device.startswith("cuda") and math.isfinite(result.y0)


def test_bench_cases_name_the_device():
    assert_on_device(lambda: compare_loops(torch.device("cpu"), QUICK))


@cuda
@pytest.mark.parametrize("name", ["hjb", "max_call", "default_risk"])
def test_solve_on_cuda(name):
    result = bsde.solve(bsde.load_problem(name, TINY), device="cuda", seed=0)
    assert result.device.startswith("cuda")
    assert math.isfinite(result.y0) and result.baseline is not None


@cuda
def test_resume_on_cuda_matches_an_uninterrupted_run(tmp_path):
    problem = bsde.load_problem("hjb", TINY)
    whole = bsde.solve(problem, device="cuda", seed=3)
    stops = iter(range(1000))
    with pytest.raises(Interrupted):
        bsde.solve(problem, device="cuda", seed=3, checkpoint=tmp_path, stop_requested=lambda: next(stops) == 20)
    resumed = bsde.solve(problem, device="cuda", seed=3, resume=tmp_path)
    assert resumed.y0 == pytest.approx(whole.y0, rel=1e-9)


@cuda
def test_bench_loops_on_cuda():
    assert compare_loops(torch.device("cuda"), QUICK).agree


def test_fused_adam_only_where_torch_has_it():
    assert fused_adam("cpu", "2.13.0+cpu") and fused_adam("cpu", "2.4.0")
    assert not fused_adam("cpu", "2.3.1+cpu")  # the declared floor: no fused CPU kernel yet
    assert fused_adam("cuda", "2.3.1") and fused_adam(torch.device("cuda", 1), "2.3.0")
    assert not fused_adam("meta", "2.13.0")


def test_training_without_fused_adam_matches(monkeypatch):
    """What torch 2.3 on a CPU runs: the default Adam, same update as the fused one."""
    problem = bsde.load_problem("hjb", {**TINY, "solver.iterations": 20})
    fused = bsde.solve(problem, device="cpu")
    monkeypatch.setattr(trainer, "fused_adam", lambda device: False)
    plain = bsde.solve(problem, device="cpu")
    assert plain.y0 == pytest.approx(fused.y0, rel=1e-9, abs=1e-12)


def test_region_refit_solution_and_checkpoint_name_the_device(tmp_path):
    """The paths the solves above do not take: a region solve with its refit, the Solution's u, grad, hessian,
    save and load, a checkpoint and its resume."""
    region = bsde.load_problem("hjb", {**TINY, "solver.iterations": 4, "solver.region": {"low": -1, "high": 1}})
    found = []
    assert_on_device(lambda: found.append(bsde.solve(region, device="cpu", seed=0)))
    solution = found[0].solution
    points = [[0.1, -0.2], [0.4, 0.3]]
    assert_on_device(lambda: (solution.u(points), solution.grad(points), solution.hessian(points),
                              solution.save(tmp_path / "saved", {"y0": found[0].y0})))
    assert_on_device(lambda: bsde.Solution.load(tmp_path / "saved").u(points))
    point = bsde.load_problem("hjb", {**TINY, "solver.iterations": 6})
    stops = iter(range(100))
    with FactoryGuard() as guard, pytest.raises(Interrupted):
        bsde.solve(point, device="cpu", checkpoint=tmp_path / "ck", stop_requested=lambda: next(stops) == 3)
    assert not guard.offences, guard.offences
    assert_on_device(lambda: bsde.solve(point, device="cpu", resume=tmp_path / "ck"))


def test_bench_speed_parts_and_reference_greeks_name_the_device():
    from bsde.bench.cases import matmul_floor, matmul_peak, time_training
    from bsde.reference.greeks import reference_greeks

    cpu = torch.device("cpu")
    problem = bsde.load_problem("hjb", {**TINY, "solver.iterations": 4})
    assert_on_device(lambda: time_training(problem, cpu, warmup=1, blocks=1, block=2, floor=matmul_floor(problem, cpu)))
    assert_on_device(lambda: matmul_peak(16, problem.solver, cpu, repeats=1))
    assert_on_device(lambda: reference_greeks(bsde.load_problem("max_call", {"equation.dim": 2}), "mc", paths=512))


@cuda
@pytest.mark.parametrize("name", ["hjb", "max_call"])
def test_region_greeks_and_references_on_cuda(name, tmp_path):
    """A region solve on the GPU (its float64 refit, the Greeks, the Solution) with the reference a CLI solve
    takes (hjb: the semi-analytic Cole-Hopf integral on the CPU beside a CUDA model)."""
    settings = {**TINY, "solver.iterations": 30, "solver.region": {"low": -1, "high": 1} if name == "hjb"
                else {"low": 90, "high": 110}}
    result = bsde.solve(bsde.load_problem(name, settings), device="cuda", seed=0, auto_reference=True)
    assert result.device.startswith("cuda") and math.isfinite(result.y0)
    assert result.reference is not None and math.isfinite(result.reference)
    assert result.delta is not None and all(math.isfinite(v) for v in result.delta)
    point = [[0.1, -0.2]] if name == "hjb" else [[100.0, 101.0]]
    for values in (result.solution.u(point), result.solution.grad(point), result.solution.hessian(point)):
        assert torch.isfinite(torch.as_tensor(values)).all()
    result.solution.save(tmp_path / "saved", {"y0": result.y0})
    here = result.solution.u(point)
    assert bsde.Solution.load(tmp_path / "saved", device="cuda").u(point) == pytest.approx(here, rel=1e-6)
    # float32 sums in another order on the CPU, amplified by the refit's large cancelling last-layer weights
    assert bsde.Solution.load(tmp_path / "saved").u(point) == pytest.approx(here, rel=1e-3)


@cuda
def test_a_point_solves_gamma_is_the_same_draws_on_any_device(tmp_path):
    """The first-step Greeks draw from a CPU stream: loaded on the CPU, a CUDA solve's gamma is the same numbers
    (to float32 rounding), not another Monte Carlo sample."""
    settings = {**TINY, "equation.correlation": 0.3, "solver.iterations": 30}
    result = bsde.solve(bsde.load_problem("max_call", settings), device="cuda", seed=0)
    loaded = bsde.Solution.load(result.solution.save(tmp_path / "point"))
    assert torch.allclose(torch.as_tensor(loaded.gamma), torch.as_tensor(result.gamma), rtol=1e-4, atol=1e-9)
