"""The lower bound of a driver that is the largest of linear pieces (differing rates) and the y0 it raises."""

import math

import pytest

import bsde
from bsde.error_estimate import ErrorEstimate, with_bound
from bsde.reference.pde1d import solve_1d
from bsde.reference.semi_analytic import black_scholes_call
from bsde.regime_bound import RegimeBound, regime_bound


def _spread(x0: float, rate: float) -> float:
    """The differing-rates payoff's Black-Scholes price at one rate (d = 1, sigma 0.2, T 0.5, strikes 120 and 150)."""
    return black_scholes_call(x0, 120.0, rate, 0.0, 0.2, 0.5) - 2 * black_scholes_call(x0, 150.0, rate, 0.0, 0.2, 0.5)


@pytest.mark.parametrize(("x0", "piece"), [(135.0, 1), (160.0, 0)])  # borrowing is dearer below 150, lending above
def test_the_bound_is_the_larger_black_scholes_price(x0, piece):
    """Each piece held throughout is the linear price at its rate (closed form), and the bound takes the larger."""
    equation = bsde.load_problem("differing_rates", {"equation.dim": 1, "equation.x0": x0}).equation
    bound = regime_bound(equation, seed=0)
    expected = max(_spread(x0, 0.04), _spread(x0, 0.06))
    assert bound.piece == piece and bound.side == "lower"
    assert abs(bound.value - expected) < 4 * bound.stderr, (bound, expected)
    assert bound.value <= solve_1d(equation) + 4 * bound.stderr  # a bound of u itself (the PDE solve)


def test_other_drivers_have_no_such_bound():
    assert bsde.load_problem("hjb").equation.linear_pieces is None
    assert regime_bound(bsde.load_problem("burgers_type").equation) is None


def test_a_y0_below_the_bound_becomes_the_bound():
    """u is at least the bound, so a y0 below it is raised to it, its error grown by 2 standard errors of the bound;
    a y0 above it is kept, the bound beside it."""
    bound = RegimeBound(21.09, 0.005, 1 << 18, 1)
    low = with_bound(ErrorEstimate(21.057, 0.32, "Richardson"), bound)
    assert (low.y0, low.raised, low.bound) == (21.09, 21.057, bound)
    assert low.error == pytest.approx(0.33) and "y0 raised from 21.057 to a lower bound" in low.basis
    high = with_bound(ErrorEstimate(21.2, 0.32, "Richardson"), bound)
    assert (high.y0, high.error, high.basis, high.raised, high.bound) == (21.2, 0.32, "Richardson", None, bound)


def test_a_solve_below_the_bound_reports_the_bound():
    """d = 1, x0 = 135: y0 held far below u (started at 10, a learning rate too small to move it) is reported as the
    bound (12.46, Black-Scholes at R^b) with a warning, and its interval still holds the PDE's u = 12.64."""
    problem = bsde.load_problem("differing_rates", {
        "equation.dim": 1, "equation.x0": 135.0, "solver.iterations": 20, "solver.y0_init": [10.0, 10.0],
        "solver.learning_rate": 1e-9, "solver.batch_size": 16, "solver.valid_size": 16})
    result = bsde.solve(problem, seed=0, threads=1)
    assert result.y0_bsde == pytest.approx(10.0, abs=0.01)
    assert result.y0 == pytest.approx(_spread(135.0, 0.06), abs=0.05) and result.bound == result.y0
    assert any(w.startswith("the march's y0 (10") and "lies below a lower bound" in w for w in result.warnings)
    assert math.isfinite(result.error_estimate) and abs(result.y0 - solve_1d(problem.equation)) <= result.error_estimate
