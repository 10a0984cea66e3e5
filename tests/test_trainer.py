"""Divergence handling and reproducibility of the training loop."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from typer.testing import CliRunner

import bsde
import bsde.trainer as trainer
from bsde.cli.app import app
from bsde.trainer import MAX_ROLLBACKS, TrainHooks, train

from conftest import tiny_args

CPU = torch.device("cpu")


def run(problem: bsde.Problem, **kwargs) -> trainer.TrainResult:
    return train(problem.equation, problem.solver, generator=torch.Generator().manual_seed(0), device=CPU, **kwargs)


def with_rate(problem: bsde.Problem, rate: float) -> bsde.Problem:
    return replace(problem, solver=problem.solver.model_copy(update={"learning_rate": rate}))


def test_same_seed_same_y0(tiny: bsde.Problem) -> None:
    first = bsde.solve(tiny, seed=3, device="cpu", threads=1)
    second = bsde.solve(tiny, seed=3, device="cpu", threads=1)
    assert first.y0 == second.y0
    assert [h.loss for h in first.history] == [h.loss for h in second.history]
    assert bsde.solve(tiny, seed=4, device="cpu", threads=1).y0 != first.y0


def test_a_backward_after_training_leaves_the_model_alone(tiny: bsde.Problem) -> None:
    """Training updates the weights inside the backward; the returned model's later backward passes (a refit's,
    say) only accumulate gradients."""
    from bsde.simulation import simulate_paths

    model = run(tiny).model
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    eq = tiny.equation
    paths = simulate_paths(eq.process, eq.x_start, eq.total_time, tiny.solver.time_steps, 16,
                           generator=torch.Generator().manual_seed(1))
    model(paths.x, paths.dw, paths.dt).square().mean().backward()
    weights = [name for name, p in model.named_parameters() if p.dim() == 3]  # the stacked step-network weights
    assert weights and all(model.get_parameter(name).grad is not None for name in weights)
    for name, p in model.named_parameters():
        assert torch.equal(p.detach(), before[name]), name


def test_divergence_stops_with_iteration_and_last_good_y0(tiny: bsde.Problem) -> None:
    with pytest.raises(bsde.TrainingError, match=r"non-finite .* at iteration \d+ \(last good y0 [-0-9.e]+ at"):
        run(with_rate(tiny, 1e200))


def test_a_non_finite_problem_is_not_blamed_on_the_learning_rate() -> None:
    """A terminal condition that is not finite on the validation paths is the problem's: a ProblemError naming it
    (exit 2 on the CLI), before training, as is a driver that is not finite (probed along the paths)."""
    def problem(terminal: str, driver: str = "0") -> bsde.Problem:
        equation = {"kind": "custom", "dim": 2, "x0": 1.0, "terminal": terminal, "driver": driver,
                    "process": {"kind": "brownian", "sigma": 1.0}}
        return bsde.problem_from_dict({"equation": equation, "solver": {"iterations": 5, "batch_size": 8,
                                                                         "valid_size": 8, "time_steps": 4}})

    with pytest.raises(bsde.ProblemError, match=r"^equation.terminal: g\(X_T\) is not finite on 8 of 8 validation paths"):
        bsde.solve(problem("1 / (x[0] - x[0])"), threads=1)
    with pytest.raises(bsde.ProblemError, match="not finite on [1-7] of 8"):  # some paths only: still the problem's
        bsde.solve(problem("1 / relu(x[0] - 1)"), threads=1)
    with pytest.raises(bsde.ProblemError, match="equation.driver of 'custom': not finite at the probe points"):
        bsde.solve(problem("x[0]", driver="1 / (x[0] - x[0])"), threads=1)


def test_a_march_that_overflows_before_training_is_named() -> None:
    """-y^3 + k(t, x) (QA; u = 1 + 0.5 sin(sum x) e^{t - T}, g and f finite everywhere): the march of Y with the
    untrained Z overflows forward in time. The error said that g or f was not finite; it says that Y_N overflows
    where g(X_T) is finite. At T = 2: at the QA's T = 1 a start whose march stays finite now exists (the Z = 0
    value, which the search now finds), and training runs."""
    equation = {"kind": "custom", "dim": 3, "total_time": 2.0, "x0": [0.2, -0.1, 0.4], "params": {"T": 2.0},
                "process": {"kind": "brownian", "sigma": 0.5}, "terminal": "1 + 0.5*sin(sum(x))",
                "driver": "-y**3 + (1 + 0.5*sin(sum(x))*exp(t - T))**3 - 0.3125*sin(sum(x))*exp(t - T)"}
    problem = bsde.problem_from_dict({"equation": equation, "solver": {"iterations": 5}})
    with pytest.raises(bsde.TrainingError, match=r"iteration 0, before any training step: Y_N is not finite on \d+ of "
                                                 r"256 validation paths, where g\(X_T\) is"):
        bsde.solve(problem, threads=1)


def test_divergence_exits_1_on_the_cli() -> None:
    result = CliRunner().invoke(app, ["solve", "hjb", *tiny_args(**{"solver.learning_rate": 1e200}),
                                      "--device", "cpu", "-q"])
    assert result.exit_code == 1, result.output
    assert "non-finite" in result.output and "last good y0" in result.output and "Traceback" not in result.output


def test_rollback_gives_up_cleanly(tiny: bsde.Problem) -> None:
    warnings: list[str] = []
    with pytest.raises(bsde.TrainingError, match=f"after {MAX_ROLLBACKS} rollbacks"):
        run(with_rate(tiny, 1e200), on_nan="rollback", hooks=TrainHooks(on_warning=warnings.append))
    assert len(warnings) == MAX_ROLLBACKS and "halved the learning rate" in warnings[0]


def test_rollback_recovers_from_a_transient_nan(tiny: bsde.Problem, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = {"n": 0}
    real_loss = trainer.terminal_loss

    def flaky_loss(y, g):
        calls["n"] += 1
        loss = real_loss(y, g)
        return loss * float("nan") if calls["n"] == 25 else loss

    monkeypatch.setattr(trainer, "terminal_loss", flaky_loss)
    with pytest.raises(bsde.TrainingError):
        run(tiny)
    calls["n"] = 0
    result = run(tiny, on_nan="rollback")
    assert result.rollbacks == 1
    assert all(torch.isfinite(p).all() for p in result.model.parameters())
    assert result.history[-1].iteration == tiny.solver.iterations


def test_rollback_draws_fresh_batches_instead_of_replaying_the_one_that_failed(
        tiny: bsde.Problem, monkeypatch: pytest.MonkeyPatch) -> None:
    """A batch on which the loss fails whatever the learning rate (an extreme path): restored to the last snapshot,
    the streams had redrawn it at the same iteration, 5 times (QA: 5 rollbacks, each halving the rate, all failed
    at iteration 554); reseeded for each rollback (ShardStreams.branch), the run recovers after one."""
    calls, bad = {"n": 0}, {}
    real_loss = trainer.terminal_loss

    def loss_failing_on_one_batch(y, g):
        calls["n"] += 1
        key = float(g.double().sum())
        if calls["n"] == 25:
            bad["key"] = key
        loss = real_loss(y, g)
        return loss * float("nan") if key == bad.get("key") else loss

    monkeypatch.setattr(trainer, "terminal_loss", loss_failing_on_one_batch)
    result = run(tiny, on_nan="rollback")
    assert "key" in bad and result.rollbacks == 1
    assert result.history[-1].iteration == tiny.solver.iterations


def test_rollback_on_the_cli_reports_failure_with_exit_1() -> None:
    result = CliRunner().invoke(app, ["solve", "hjb", *tiny_args(**{"solver.learning_rate": 1e200}),
                                      "--device", "cpu", "-q", "--on-nan", "rollback"])
    assert result.exit_code == 1 and "rollbacks" in result.output and "Traceback" not in result.output


def test_finite_parameters_sees_a_nan_in_any_parameter_or_buffer():
    from bsde.model import DeepBSDE
    from bsde.trainer import _finite_parameters

    problem = bsde.load_problem("hjb", {"equation.dim": 3})
    model = DeepBSDE(problem.equation, 4, [5], dtype=torch.float64)
    model.reset_parameters(torch.Generator().manual_seed(0), (0.0, 1.0))
    assert _finite_parameters(model)
    with torch.no_grad():
        model.nets.norms[1].running_var[2] = float("inf")
    assert not _finite_parameters(model)
    with torch.no_grad():
        model.nets.norms[1].running_var[2] = 1.0
        model.nets.linears[0].weight[1, 2, 3] = float("nan")
    assert not _finite_parameters(model)
