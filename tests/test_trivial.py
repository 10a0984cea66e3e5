"""What a solver that learned nothing returns: the driver-free baseline, the Z = 0 value, the warning."""

import math

import pytest
import torch

import bsde
from bsde.heavy_tail import HEAVY_TAIL_SHARE
from bsde.trivial import Baseline, driver_free_baseline, heavy_tail, trivial_solution_warning

from conftest import TINY


def test_baseline_is_discounted_expectation_of_g():
    """max_call, d = 1: e^{-rT} E (S_T - K)^+ is the Black-Scholes price 10.4506 (5 stderr)."""
    eq = bsde.load_problem("max_call", {"equation.dim": 1}).equation
    base = driver_free_baseline(eq, paths=1 << 18, generator=torch.Generator().manual_seed(0), device="cpu")
    assert abs(base.value - 10.450584) < 5 * base.stderr
    assert base.payoff_var > 0


def _pole(dim: int = 3):
    """g = 1 / (x_1 - 0.5) at x0 = 0.5 on a Brownian motion: E|g(X_T)| is not finite (QA F8)."""
    return bsde.problem_from_dict({"equation": {
        "kind": "custom", "dim": dim, "x0": 0.5, "process": {"kind": "brownian", "sigma": 0.5},
        "terminal": "1/(x[0]-0.5)", "driver": "-0.05*y"}, "solver": {"iterations": 30}})


def test_a_payoff_without_a_finite_mean_has_a_heavy_tail():
    """One path of 2^16 carries most of the sample variance of 1 / W_T; of a smooth payoff, a tiny share (about
    2 ln(n) / n for a normal)."""
    kw = {"paths": 1 << 16, "generator": torch.Generator().manual_seed(0), "device": "cpu"}
    pole = driver_free_baseline(_pole().equation, **kw)
    assert pole.tail_share > HEAVY_TAIL_SHARE and pole.paths == 1 << 16
    assert "heavy tail" in heavy_tail(pole) and "rescale or guard the terminal condition" in heavy_tail(pole)
    smooth = driver_free_baseline(bsde.load_problem("max_call", {"equation.dim": 1}).equation, **kw)
    assert smooth.tail_share < 0.01 and heavy_tail(smooth) is None


def test_a_heavy_tailed_payoff_is_warned_and_named_as_the_cause():
    """QA F8: the pole's solve (y0 +- 18) advised more time steps or iterations, which cannot help."""
    # as bsde solve: an mc reference; float64 on the CPU (in float32 a path can hit the pole: g = inf, said so)
    result = bsde.solve(_pole(), seed=0, threads=2, auto_reference=True, device="cpu")
    tails = [w for w in result.warnings if "g(X_T) has a heavy tail" in w]
    assert len(tails) == 1 and tails[0].startswith("g(X_T)"), result.warnings  # not again for the mc reference
    assert result.reference_source.startswith("Monte Carlo")
    assert not any("more time steps or iterations may help" in w for w in result.warnings), result.warnings


def test_trivial_solution_warning():
    base = Baseline(value=4.6, stderr=0.001, payoff_var=0.02)
    assert "trivial solution" in trivial_solution_warning(4.6005, 0.019, base)
    assert trivial_solution_warning(4.59, 0.019, base) is None  # y0 away from the baseline
    assert trivial_solution_warning(4.6005, 0.001, base) is None  # the networks explain g
    assert trivial_solution_warning(4.6005, 0.019, base, linear=True) is None  # f = -r y: baseline is the answer
    assert "not finite" in trivial_solution_warning(1.0, 1.0, Baseline(math.inf, 0.0, 0.0))
    # where the Z = 0 value is known, y0 is compared with it, not with E g
    assert "a solver with Z = 0 returns (4.2" in trivial_solution_warning(4.2001, 0.019, base, zero_z=4.2)
    assert trivial_solution_warning(4.6005, 0.019, base, zero_z=4.2) is None


@pytest.mark.parametrize("scheme", ["euler", "trapezoid"])
def test_the_zero_z_value_of_an_affine_driver_is_its_closed_form(scheme):
    """f = a y + b, X = x0 + W, g = |x|^2: with Z = 0 each step maps Y to q Y - c (Euler: q = 1 - a dt, c = b dt;
    trapezoid: q = 1 - a dt + (a dt)^2 / 2, c = b dt (1 - a dt / 2)), so the loss is least at the y0 with
    q^N y0 - c (1 - q^N) / (1 - q) = E g = |x0|^2 + d T; to the baseline's Monte Carlo error."""
    a, b, dim, steps, total = 0.8, -0.3, 3, 6, 1.0
    equation = bsde.custom_equation(dim=dim, x0=0.5, total_time=total, process=bsde.BrownianMotion(1.0),
                                    terminal=lambda x: x.square().sum(-1), driver=lambda t, x, y, z: a * y + b)
    solver = {"iterations": 10, "time_steps": steps, "batch_size": 16, "valid_size": 16, "scheme": scheme}
    result = bsde.solve(equation, solver=solver, device="cpu", threads=1)
    dt = total / steps
    q, c = (1 - a * dt, b * dt) if scheme == "euler" else (1 - a * dt + (a * dt) ** 2 / 2, b * dt * (1 - a * dt / 2))
    expected = (dim * 0.25 + dim * total + c * (1 - q ** steps) / (1 - q)) / q ** steps
    assert result.zero_z_value == pytest.approx(expected, abs=4 * result.baseline_stderr / q ** steps)
    assert abs(expected - result.baseline) > 100 * result.baseline_stderr  # not E g: the check can fail


def test_a_solve_stuck_at_z_0_is_warned_where_the_driver_moves_y():
    """Allen-Cahn (f = y - y^3): with Z = 0 a solver ends near e^T E g, 35% above E g at d = 10. A run held at
    that value (y0 started there, a learning rate too small to move anything) is warned of; the check against
    E g alone let it pass."""
    problem = {**TINY, "equation.dim": 10, "solver.iterations": 20}
    first = bsde.solve(bsde.load_problem("allen_cahn", problem), device="cpu", threads=1)
    assert first.zero_z_value > 1.2 * first.baseline
    value = first.zero_z_value
    stuck = bsde.solve(bsde.load_problem("allen_cahn", {**problem, "solver.y0_init": [value, value],
                                                        "solver.learning_rate": 1e-12}), device="cpu", threads=1)
    assert any("a solver with Z = 0 returns" in w and "trivial solution" in w for w in stuck.warnings), stuck.warnings
    assert not any("trivial solution" in w for w in first.warnings)


def test_the_zero_z_value_of_allen_cahn_is_the_scalar_march_root():
    """f = y - y^3 does not see x: with Z = 0 the trapezoid march is a scalar recursion, and the Z = 0 value is
    the y whose recursion ends at E g (the baseline). Nonlinear in y, so the shift of the root from the check
    paths' mean g to the baseline's must use the slope at the root (at E g it was 0.1-0.3% off at d = 2, T = 1)."""
    from scipy.optimize import brentq

    problem = bsde.load_problem("allen_cahn", {**TINY, "equation.total_time": 1.0, "solver.iterations": 5,
                                               "solver.time_steps": 20})
    result = bsde.solve(problem, device="cpu", threads=1)
    equation, dt = problem.equation, 1.0 / 20
    x, z = torch.zeros(1, 2, dtype=torch.float64), torch.zeros(1, 2, dtype=torch.float64)

    def driver(y: float) -> float:
        return float(equation.driver(0.0, x, torch.tensor([y], dtype=torch.float64), z)[0])

    def end(y: float) -> float:
        for _ in range(20):
            f = driver(y)
            y = y - 0.5 * dt * (f + driver(y - dt * f))
        return y

    expected = brentq(lambda y: end(y) - result.baseline, 0.0, 0.95, xtol=1e-14)
    assert result.zero_z_value == pytest.approx(expected, rel=1e-6)
    assert expected > 2 * result.baseline  # far from E g: the check can fail


def test_the_zero_z_value_minimises_the_loss_where_y_n_depends_on_the_path():
    """f = c x y (Euler): with Z = 0, Y_N = y P, P = prod (1 - c X_n dt) differs from path to path, and the loss
    E|y P - g|^2 is least at E[P g] / E[P^2] = 2.36, not at the root of the mean gap E g / E P = 3.23 (review);
    the reference by numpy on 2^21 paths, the tolerance four times the spread of a 4096-path estimate (0.047)."""
    import numpy as np

    c, total, steps, x0 = 0.5, 1.0, 10, 1.0
    dt = total / steps
    noise = np.random.default_rng(0).standard_normal((1 << 21, steps)) * math.sqrt(dt)
    x = x0 + np.concatenate([np.zeros((noise.shape[0], 1)), np.cumsum(noise, 1)], 1)
    product, g = np.prod(1 - c * x[:, :-1] * dt, 1), x[:, -1] ** 2
    minimiser, root = (product * g).mean() / (product * product).mean(), g.mean() / product.mean()
    equation = bsde.custom_equation(dim=1, x0=x0, total_time=total, process=bsde.BrownianMotion(1.0),
                                    terminal=lambda x: x.square().sum(-1), driver=lambda t, x, y, z: c * x[..., 0] * y)
    solver = {"iterations": 5, "time_steps": steps, "batch_size": 16, "valid_size": 16, "scheme": "euler"}
    result = bsde.solve(equation, solver=solver, device="cpu", threads=1)
    assert result.zero_z_value == pytest.approx(minimiser, abs=0.19)
    assert abs(root - minimiser) > 0.8  # the check can fail


def test_a_fault_in_the_zero_z_value_does_not_lose_the_solve():
    """A terminal that autograd cannot differentiate (detached) under the trapezoid with a z-driver: training
    never needs grad g under the Euler step, and the Z = 0 value must not need it either, or fail quietly."""
    equation = bsde.custom_equation(dim=2, x0=0.5, process=bsde.BrownianMotion(1.0),
                                    terminal=lambda x: x.detach().square().sum(-1),
                                    driver=lambda t, x, y, z: 0.1 * y + 0.1 * z.abs().sum(-1))
    solver = {"iterations": 5, "time_steps": 4, "batch_size": 8, "valid_size": 8, "scheme": "euler"}
    result = bsde.solve(equation, solver=solver, device="cpu", threads=1)
    assert math.isfinite(result.y0) and result.zero_z_value is not None


def test_the_zero_z_start_is_found_where_the_march_from_e_g_overflows():
    """QA: f = y - y^3 - k(t, x) with u = e^{t-1} cos(mean x) + t/2 (u0 = 0.3388394). The march with Z = 0 from E g = 1.39
    overflows, and so did the Newton step from 0 (1e276), so the search gave up and the solve failed at iteration 0;
    now the step is halved until it lowers the gap, the start is the Z = 0 value, and the solve finds u0."""
    u = "exp(t-1)*cos(mean(x))"
    problem = bsde.problem_from_dict({"equation": {
        "kind": "custom", "dim": 3, "total_time": 1.0, "x0": [0.5, 1.0, -0.3],
        "process": {"kind": "brownian", "sigma": 0.5}, "terminal": "cos(mean(x)) + 0.5",
        "driver": f"y - y**3 - (23/24*{u} + 0.5 + {u} + 0.5*t - ({u} + 0.5*t)**3)"}, "solver": {"iterations": 200}})
    result = bsde.solve(problem, seed=0, threads=1, device="cpu")  # float64 (float32: the Z = 0 value 0.344)
    assert any(w.startswith("y0 starts at the Z = 0 value 0.35") and "not finite" in w for w in result.warnings)
    assert abs(result.y0 - 0.3388394) <= result.error_estimate < 0.01
