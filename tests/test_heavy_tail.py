"""The heavy-tail share: one draw's part of the sample variance, from the extremes, mean and scatter."""

import math

import pytest

import bsde
from bsde.heavy_tail import HEAVY_TAIL_SHARE, heavy_tail_warning, largest_share
from bsde.reference.girsanov import girsanov


def test_the_share_of_the_largest_deviation():
    sample = [0.0, 1.0, 2.0, 10.0]
    mean = sum(sample) / 4
    scatter = sum((v - mean) ** 2 for v in sample)
    assert largest_share(10.0, 0.0, mean, scatter) == pytest.approx((10.0 - mean) ** 2 / scatter)
    assert largest_share(1.0, 1.0, 1.0, 0.0) == 0.0  # a constant sample has no tail
    assert largest_share(1.0, 0.0, 0.5, math.inf) == 0.0  # an overflow is said elsewhere


def test_a_spread_whose_squares_underflow_is_all_tail():
    """QA: the Barenblatt value at sigma 10, T = 10 (exactly e^1000 and more, beyond float64) sampled as
    1.1e-304 +- 0, its draws e^-700 and smaller, whose squares underflow to a scatter of 0: one draw carries it all."""
    assert largest_share(1.1e-304, 0.0, 1e-310, 0.0) == 1.0
    problem = bsde.load_problem("black_scholes_barenblatt", {"equation.dim": 2, "equation.sigma": 10.0,
                                                             "equation.total_time": 10.0, "equation.x0": 1.0})
    found = girsanov(problem.equation, paths=1 << 20, seed=0)  # (on 2^14 paths every draw underflows to 0)
    assert 0 < found.value < 1e-290 and found.stderr == 0.0  # the case as described: a spread, squared to 0
    assert found.details["tail_share"] == 1.0 > HEAVY_TAIL_SHARE
    assert "heavy tail" in heavy_tail_warning(found.details["tail_share"], 1 << 19)


def test_a_sample_of_one_value_says_its_interval_has_no_width():
    """QA: on 2^14 paths every draw of that value underflows to 0, read as 0 +- 0 with nothing said; the same
    caveat holds for an honest 0 (a payoff 0 wherever the paths go), which the plain Monte Carlo shows."""
    problem = bsde.load_problem("black_scholes_barenblatt", {"equation.dim": 2, "equation.sigma": 10.0,
                                                             "equation.total_time": 10.0, "equation.x0": 1.0})
    found = girsanov(problem.equation, paths=1 << 14, seed=0)
    assert found.value == 0.0 and found.stderr == 0.0 and found.details["constant_sample"] is True
    assert "every one of its 8192 antithetic pairs gave 0, so its 95% interval has no width" in found.caveat
    spread = girsanov(problem.equation, paths=1 << 20, seed=0)  # the underflowing spread: the tail's caveat instead
    assert spread.details["constant_sample"] is False and "heavy tail" in spread.caveat
    normal = girsanov(bsde.load_problem("black_scholes_barenblatt", {"equation.dim": 2}).equation, paths=1 << 12)
    assert normal.details["constant_sample"] is False and normal.caveat is None
