"""Trained solves of the shipped problems with exact solutions, and of the differing-rates problem, against
references that share no code with the solver (the closed forms; the 1-d PDE solve).

Each case first shows that it is not trivial: the driver-free value E g(X_T) and the value a solver that learned
nothing (Z = 0) settles on both lie well outside the stated tolerance. The exception is the reaction-diffusion
example, whose reaction vanishes on the solution (E g(X_T) is the answer); there only the Z = 0 value is far.
"""

import pytest
import torch

import bsde
from bsde.model import DeepBSDE
from bsde.reference import reference
from bsde.reference.pde1d import solve_1d
from bsde.simulation import simulate_paths
from bsde.solve import driver_free_baseline


def zero_z_value(problem: bsde.Problem, paths: int = 4096, seed: int = 0) -> float:
    """The y0 that makes E Y_N = E g(X_N) when Z = 0 on the problem's own time grid (secant iteration)."""
    eq, steps = problem.equation, problem.solver.time_steps
    gen = torch.Generator().manual_seed(seed)
    p = simulate_paths(eq.process, eq.x_start, eq.total_time, steps, paths, generator=gen)
    model = DeepBSDE(eq, steps, [2], dtype=torch.float64)
    zero, terminal = torch.zeros_like(p.dw), eq.terminal(p.x[:, -1])

    def gap(y0: float) -> float:
        with torch.no_grad():
            return float((model.march(p.x, p.dw, p.dt, zero, y_start=torch.tensor(y0, dtype=torch.float64))
                          - terminal).mean())

    a = float(terminal.mean())
    b = 1.01 * a + 1e-3
    fa, fb = gap(a), gap(b)
    for _ in range(50):
        if fb == fa or abs(fb) < 1e-12 * (1 + abs(b)):
            break
        a, fa, b = b, fb, b - fb * (b - a) / (fb - fa)
        fb = gap(b)
    return b


def gaps(problem: bsde.Problem, exact: float) -> tuple[float, float, float]:
    """Relative distance of the driver-free value and of the Z = 0 value from ``exact``; the former's stderr."""
    baseline = driver_free_baseline(problem.equation, paths=1 << 16, generator=torch.Generator().manual_seed(7),
                                    device=torch.device("cpu"))
    return (abs(baseline.value - exact) / abs(exact), abs(zero_z_value(problem) - exact) / abs(exact),
            baseline.stderr / abs(exact))


@pytest.mark.parametrize("name, overrides, tolerance", [
    ("black_scholes_barenblatt", {}, 0.005),
    ("burgers_type", {}, 0.03),
    ("quadratic_gradient", {"equation.dim": 10}, 0.003),
])
def test_problems_are_not_trivial(name, overrides, tolerance):
    """The driver-free value and the Z = 0 value both miss the exact value by more than 3 tolerances."""
    problem = bsde.load_problem(name, overrides)
    exact = reference(problem, "exact").value
    driver_free, zero_z, stderr = gaps(problem, exact)
    assert driver_free > 3 * tolerance + 4 * stderr, driver_free
    assert zero_z > 3 * tolerance, zero_z


def test_quadratic_gradient_is_nearly_trivial_in_100_dimensions():
    """|X_t|^2/d concentrates at d = 100: the driver-free value is 0.3% off and Z = 0 gives 0.07%, so the shipped
    100-d file tests little; the trained test below solves d = 10."""
    problem = bsde.load_problem("quadratic_gradient")
    driver_free, zero_z, _ = gaps(problem, reference(problem).value)
    assert 0.002 < driver_free < 0.005 and zero_z < 0.002


def test_reaction_diffusion_is_trivial_for_the_driver_free_value_but_not_for_z():
    """The reaction vanishes on the solution, so E g(X_T) is u(0, x0); with Z = 0 the reaction adds 4%."""
    problem = bsde.load_problem("reaction_diffusion")
    exact = reference(problem, "exact").value
    driver_free, zero_z, stderr = gaps(problem, exact)
    assert driver_free < 4 * stderr
    assert zero_z > 0.03


@pytest.mark.slow
def test_black_scholes_barenblatt_100d_within_half_a_percent():
    """The shipped 100-d problem, default settings under the process's own drift (measure plain: the default trains
    on its linear twin, bsde.girsanov, whose baseline is the answer): within 0.5% of e^{0.21} |x0|^2 (the
    baseline is 4.9% off), so the solver learned Z through a driver in z."""
    problem = bsde.load_problem("black_scholes_barenblatt", {"solver.measure": "plain"})
    exact = reference(problem).value
    result = bsde.solve(problem, seed=0, auto_reference=True)
    assert result.reference == pytest.approx(exact) and result.rel_error < 0.005, (result.y0, exact)
    assert abs(result.baseline - exact) > 0.04 * exact


def test_quadratic_gradient_10d_within_a_third_of_a_percent():
    """At d = 10 |X|^2/d no longer concentrates: the baseline is 3.1% below the answer and Z = 0 gives 1.1%;
    we ask 0.3% (the reported value is the corrected control bound: f is quadratic in z)."""
    problem = bsde.load_problem("quadratic_gradient", {"equation.dim": 10, "solver.iterations": 1000})
    exact = reference(problem).value
    result = bsde.solve(problem, seed=0)
    assert abs(result.baseline - exact) > 0.025 * exact
    assert result.bound_side == "lower" and result.bound < exact + 3 * result.bound_stderr
    assert abs(result.y0 - exact) < 0.003 * exact, (result.y0, exact)


@pytest.mark.slow
def test_differing_rates_one_asset_against_the_pde():
    """d = 1, x0 = 135: the value is 1.4% above both Black-Scholes prices (the nonlinearity matters) and does not
    depend on the drift mu, which the driver must remove: with mu = 0.12 the Z = 0 value is 5% off. We ask 0.6%."""
    overrides = {"equation.dim": 1, "equation.x0": 135.0, "equation.mu": 0.12, "solver.time_steps": 40}
    problem = bsde.load_problem("differing_rates", overrides)
    value = solve_1d(problem.equation)
    assert value == pytest.approx(solve_1d(bsde.load_problem("differing_rates", {
        **overrides, "equation.mu": 0.06}).equation), rel=1e-5)  # mu drops out
    assert abs(zero_z_value(problem) - value) > 0.03 * value
    result = bsde.solve(problem, seed=0, auto_reference=True)
    assert result.reference == pytest.approx(value, rel=1e-5)  # bsde solve takes the 1-d PDE solve by itself
    assert abs(result.y0 - value) < 0.006 * value, (result.y0, value)


def test_differing_rates_100d_lies_above_both_black_scholes_prices():
    """The comparison theorem bounds u below by the larger linear price (borrowing at R^b: 21.093, from the
    semi-analytic max-call formula); the published 21.299 respects it, and so does a short solve."""
    from bsde.equations import MaxCall
    from bsde.reference.semi_analytic import semi_analytic

    def spread(rate):
        calls = [semi_analytic(MaxCall(dim=100, x0=100.0, rate=rate, vol=0.2, strike=k, total_time=0.5)).value
                 for k in (120.0, 150.0)]
        return calls[0] - 2 * calls[1]

    lower = max(spread(0.04), spread(0.06))
    assert lower == pytest.approx(21.0932, abs=1e-3)
    assert bsde.load_problem("differing_rates").reference.value > lower
