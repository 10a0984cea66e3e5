"""Greeks and u over a region against independent references: closed forms, the differentiated max-call integral
and the radial solve. The section-4 cases of issue 11 (bsde/greeks_cases.py) are slow; the small ones here run
in the default suite with tolerances their settings meet, each far inside what a wrong answer (Z = 0, a flat u)
would give."""

from __future__ import annotations

import numpy as np
import pytest

import bsde
from bsde.greeks_cases import CASES, run_case
from bsde.reference.greeks import black_scholes_greeks
from bsde.reference.semi_analytic import black_scholes_call

CALL = (100.0, 0.05, 0.0, 0.2, 1.0)  # strike, rate, dividend, vol, horizon


@pytest.mark.slow
@pytest.mark.parametrize("name", list(CASES))
def test_section_4(name):
    case, _, _ = run_case(name, seed=0)
    for target in case.targets:
        assert target["ok"], f"{name}: {target['name']} off by {100 * target['worst']:.3g}% (limit " \
                             f"{100 * target['limit']:.3g}%)"
    if name == "call_region":  # the refit's standard errors: informative (under the 5% limit) and not too small
        # (over seeds 0-8, error / standard error had an RMS of 1.39 for gamma and 1.10 for delta, at most 3.41)
        for row in case.rows:
            assert row["gamma_se"] < 0.05 * row["gamma_ref"]
            assert abs(row["gamma"] - row["gamma_ref"]) <= 4 * row["gamma_se"], row
            assert abs(row["delta"] - row["delta_ref"]) <= 4 * row["delta_se"], row


def test_point_solve_delta_and_gamma_of_a_call():
    """One asset, 10 steps, 800 iterations with the learning rate decayed inside them, refit: delta = z0 / (vol S0)
    within 2%, the first-step gamma within 15% (Z = 0 would give 0 for both). The first-step gamma carries the
    error of the trained Z_1: over seeds 0-3 it was within 6% here, and 4-38% off at 400 iterations at lr 0.02."""
    problem = bsde.load_problem("max_call", {"equation.dim": 1, "solver.time_steps": 10, "solver.iterations": 800,
                                             "solver.learning_rate": {"boundaries": [400, 640],
                                                                      "values": [0.02, 0.005, 0.001]},
                                             "solver.log_every": 200, "solver.refit": True})
    result = bsde.solve(problem, seed=0, threads=1)
    delta, gamma = black_scholes_greeks(100.0, *CALL)
    assert result.delta[0] == pytest.approx(delta, rel=0.02)
    assert result.gamma_diag[0] == pytest.approx(gamma, rel=0.15)


def test_region_solve_of_a_call():
    """Trained over [90, 110] (10 steps, 400 iterations): u within 1% and delta within 4% at 95, 100 and 105."""
    problem = bsde.load_problem("max_call", {"equation.dim": 1, "solver.time_steps": 10, "solver.iterations": 400,
                                             "solver.log_every": 200, "solver.region": {"low": 90, "high": 110}})
    result = bsde.solve(problem, seed=0, threads=1)
    spots = np.array([[95.0], [100.0], [105.0]])
    u, delta = result.u(spots), result.grad(spots)[:, 0]
    for k, spot in enumerate(spots[:, 0]):
        assert u[k] == pytest.approx(black_scholes_call(spot, *CALL), rel=0.01)
        assert delta[k] == pytest.approx(black_scholes_greeks(spot, *CALL)[0], rel=0.04)
