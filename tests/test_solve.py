"""One solve: what follows training (warnings, the error estimate, the bound), the result and its flags."""

import math
import re

import pytest
import torch

import bsde


def test_linear_driver_flag():
    assert bsde.load_problem("max_call").equation.driver_is_linear
    assert not bsde.load_problem("default_risk").equation.driver_is_linear
    assert not bsde.load_problem("allen_cahn").equation.driver_is_linear


def test_a_run_that_diverges_without_a_nan_says_the_bound_is_gone():
    """A learning rate of 1e5 sends the HJB loss to ~1e40 without a NaN: the learned control overflows on the bound's
    fresh paths, so no bound; the result says so in a warning instead of silently switching the error basis."""
    from conftest import TINY

    problem = bsde.load_problem("hjb", {**TINY, "equation.dim": 10, "solver.iterations": 120,
                                        "solver.learning_rate": 1e5})
    result = bsde.solve(problem, seed=0, threads=1, reference=None, device="cpu")  # float64: 1e40 without overflow
    assert result.bound is None and math.isfinite(result.y0)
    assert any(w.startswith("no control bound for y0: the learned control overflows") for w in result.warnings)
    healthy = bsde.solve(bsde.load_problem("hjb", TINY), seed=0, threads=1, reference=None)
    assert healthy.bound is not None and not any("no control bound" in w for w in healthy.warnings)


def test_an_error_estimate_that_overflows_is_a_warning():
    """g = 1e200 sum(x): the Richardson estimate overflows, so y0 has no error estimate; the result says so."""
    huge = bsde.custom_equation(dim=2, x0=0.0, process=bsde.BrownianMotion(1.0), terminal=lambda x: 1e200 * x.sum(-1))
    result = bsde.solve(huge, solver={"iterations": 20, "time_steps": 4, "batch_size": 8, "valid_size": 8},
                        threads=1, auto_reference=False, device="cpu")  # float64 (on CUDA float32 overflows)
    assert result.error_estimate is None
    assert any(w.startswith("no error estimate for y0") for w in result.warnings)


def test_more_threads_than_cores_is_a_warning(monkeypatch):
    """Said of 2 threads where 1 core is there (patched: 17 threads on a 16-core GPU machine beside 7 busy test
    workers ran past the whole suite's 280 s)."""
    import importlib

    from conftest import TINY

    monkeypatch.setattr(importlib.import_module("bsde.solve"), "available_cores", lambda: 1)  # the module
    problem = bsde.load_problem("hjb", {**TINY, "solver.iterations": 2})
    many = bsde.solve(problem, threads=2, auto_reference=False, device="cpu")
    assert any("oversubscribed" in w for w in many.warnings)
    one = bsde.solve(problem, threads=1, auto_reference=False, device="cpu")
    assert not any("oversubscribed" in w for w in one.warnings)


def test_an_odd_step_count_has_an_estimate_and_one_step_has_none_without_an_overflow_warning():
    """Richardson pairs the first N - 1 of an odd N steps (QA: 25 steps had gone without an estimate or warning);
    one step has no pair: 'none (...)' is the basis, and the warning says y0 is unchecked, not that it overflowed (QA:
    Burgers at d = 3 on one step was 20% off and said nothing)."""
    settings = {"equation.dim": 2, "solver.iterations": 5, "solver.batch_size": 8, "solver.valid_size": 8}
    odd = bsde.solve(bsde.load_problem("allen_cahn", {**settings, "solver.time_steps": 3}), threads=1,
                     auto_reference=False)
    assert odd.error_estimate is not None and "on the first 2 of the 3 steps" in odd.error_basis
    one = bsde.solve(bsde.load_problem("allen_cahn", {**settings, "solver.time_steps": 1}), threads=1,
                     auto_reference=False)
    assert one.error_estimate is None and one.error_basis.startswith("none")
    unchecked = [w for w in one.warnings if w.startswith("no error estimate for y0")]
    assert len(unchecked) == 1 and "one time step can be far off" in unchecked[0] and "overflow" not in unchecked[0]


def test_a_price_of_zero_is_said_to_be_zero_within_its_error_not_inaccurate():
    """A put 20% out of the money with a month to go is worth 0 (every path's payoff is 0): y0's error is then
    at least |y0|, which the warning says, in place of 'exceeds 1% of |y0|; more iterations may help' (QA). A y0 of
    a payoff that is not 0 everywhere keeps that warning however large its error (a diverged run: test_control_bound)."""
    problem = bsde.load_problem("basket_put", {"equation.params.K": 80, "equation.total_time": 0.1,
                                               "solver.iterations": 10, "solver.batch_size": 16})
    result = bsde.solve(problem, threads=1)
    said = [w for w in result.warnings if w.startswith("the estimated error of y0")]
    assert result.error_estimate >= abs(result.y0) > 0
    assert len(said) == 1 and "y0 is 0 within it, as g(X_T) is 0 on every sampled path" in said[0], said
    assert "exceeds" not in said[0] and "more time steps" not in said[0]


def test_solve_under_no_grad_trains_and_leaves_the_callers_threads(tiny):
    """A caller's torch.no_grad() / inference_mode() does not reach training (it raised torch's "does not require
    grad"), and the caller's thread count is back afterwards, whatever the solve used (QA)."""
    import pytest

    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        with torch.no_grad():
            plain = bsde.solve(tiny, seed=0, threads=2)
        assert torch.get_num_threads() == 1
        with torch.inference_mode():
            inference = bsde.solve(tiny, seed=0, threads=1)
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
    assert math.isfinite(plain.y0) and inference.y0 == pytest.approx(plain.y0, rel=1e-9)
    for hook in ("on_log", "on_warning", "stop_requested"):
        with pytest.raises(bsde.ArgumentError, match=f"^{hook}: expected a function"):
            bsde.solve(tiny, **{hook: 5})


def test_a_reference_engine_fault_is_a_warning_not_a_lost_solve(tiny, monkeypatch):
    """The reference runs after training: a fault there (the hjb integral overflowed, review) must not take the
    trained result with it."""
    import importlib

    solving = importlib.import_module("bsde.solve")  # the module (bsde.solve, the attribute, is the function)

    def broken(problem):
        raise ValueError("math domain error")

    monkeypatch.setattr(solving, "cheap_reference", broken)
    problem = bsde.load_problem("hjb", {"equation.dim": 2, "solver.iterations": 5, "solver.batch_size": 8,
                                        "solver.valid_size": 8, "solver.time_steps": 4})
    result = bsde.solve(problem, seed=0, threads=1, auto_reference=True)
    assert math.isfinite(result.y0) and result.reference is None
    assert any("engine failed unexpectedly (ValueError: math domain error" in text for text in result.warnings)


def test_a_solve_without_a_quick_reference_says_why():
    """default_risk off its published point: no reference in passing (multilevel Picard is not quick), and the
    result says so, and which method `bsde reference` would run, instead of a silent gap (QA)."""
    problem = bsde.load_problem("default_risk", {"equation.dim": 3, "solver.iterations": 5, "solver.batch_size": 8,
                                                 "solver.valid_size": 8, "solver.time_steps": 4})
    result = bsde.solve(problem, seed=0, threads=1, auto_reference=True, device="cpu")
    assert result.reference is None and "bsde reference" in result.no_reference and "mlp" in result.no_reference
    assert result.reference_source is None  # not "" (QA)
    assert bsde.solve(problem, seed=0, threads=1, device="cpu").no_reference is None  # not asked for: no note


CUBIC_A = 0.5  # u = e^{t - T} cos(a x) solves this PDE (QA's manufactured solution, checked by sympy)
CUBIC_EXACT = math.exp(-1) * math.cos(CUBIC_A * 0.3)


def cubic(solver: dict) -> bsde.Problem:
    """-0.5 y^3 + ...: from the driver-free start 0.953 the march of Y blows up (QA: a loss of 1e209)."""
    a, c, b, sigma = CUBIC_A, 0.4, 0.1, 0.5
    return bsde.problem_from_dict({"equation": {
        "kind": "custom", "dim": 1, "x0": 0.3, "total_time": 1.0,
        "params": {"a": a, "c": c, "K1": 1 - sigma**2 * a**2 / 2, "ba": (b + sigma * c) * a},
        "process": {"kind": "brownian", "sigma": sigma, "drift": b}, "terminal": "cos(a * x[0])",
        "driver": "-0.5 * y ** 3 + c * sum(z) - exp(t - 1) * cos(a * x[0]) * K1 + ba * exp(t - 1) * sin(a * x[0])"
                  " + 0.5 * (exp(t - 1) * cos(a * x[0])) ** 3"},
        "solver": {"log_every": 100, "measure": "plain", **solver}})


def test_a_march_that_blows_up_from_the_driver_free_value_starts_at_the_zero_z_value():
    """The default start moves to the Z = 0 value, says so, and trains to u0 (0.075% off in 300 iterations; from
    the driver-free start it never recovered); ``y0_init: zero_z`` starts there silently, the same run."""
    result = bsde.solve(cubic({"iterations": 300}), seed=0, threads=1, device="cpu")
    moved = [w for w in result.warnings if w.startswith("y0 starts at the Z = 0 value")]
    assert len(moved) == 1 and "solver.y0_init: zero_z" in moved[0], result.warnings
    start = float(re.search(r"the Z = 0 value ([0-9.]+)", moved[0]).group(1))
    assert abs(start - CUBIC_EXACT) < 0.05 * CUBIC_EXACT
    assert abs(result.y0 - CUBIC_EXACT) < 0.005 * CUBIC_EXACT
    asked = bsde.solve(cubic({"iterations": 300, "y0_init": "zero_z"}), seed=0, threads=1, device="cpu")
    assert asked.y0 == result.y0 and not any(w.startswith("y0 starts at") for w in asked.warnings)


def test_a_start_whose_march_does_not_blow_up_stays_at_the_driver_free_value():
    """Allen-Cahn (f = y - y^3) at its driver-free start: a validation loss far under 10 E g^2, no move."""
    from conftest import TINY

    result = bsde.solve(bsde.load_problem("allen_cahn", TINY), seed=0, threads=1, device="cpu")
    assert not any(w.startswith("y0 starts at") for w in result.warnings)
    assert result.history[0].y0 == pytest.approx(result.baseline, rel=0.05)  # the driver-free value on 64 paths


def test_a_terminal_that_is_zero_on_every_path_gives_no_scale_for_a_march_gone_astray():
    """A put out of the money at zero volatility: g(X_T) = 0 on every path, so E g^2 = 0, and the untrained Z's
    loss was 'infx E g(X_T)^2', a march that 'blows up' (QA); only a march that is not finite is astray then."""
    from conftest import TINY

    problem = bsde.load_problem("basket_put", {**TINY, "equation.dim": 5, "equation.process.vol": 0.0})
    result = bsde.solve(problem, seed=0, threads=1, device="cpu")
    assert result.baseline == 0.0 and not any(w.startswith("y0 starts at") for w in result.warnings)


def test_a_run_gone_astray_says_to_start_y0_nearer():
    """Started by hand where the march blows up: the warning names solver.y0_init (zero_z among its choices) and
    the Z = 0 value, not more iterations."""
    result = bsde.solve(cubic({"iterations": 30, "y0_init": [0.953, 0.953]}), seed=0, threads=1, device="cpu")
    astray = [w for w in result.warnings if "went astray" in w]
    assert len(astray) == 1 and "solver.y0_init: [low, high] or zero_z" in astray[0], result.warnings
    suggested = float(re.search(r"the Z = 0 value is ([0-9.]+)", astray[0]).group(1))
    assert abs(suggested - CUBIC_EXACT) < 0.05 * CUBIC_EXACT and abs(result.y0 - CUBIC_EXACT) > 0.5 * CUBIC_EXACT
