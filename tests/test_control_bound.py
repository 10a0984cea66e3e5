"""The control bound: exact for Z = 0, one-sided for a trained Z, closer to the truth than y0 (HJB)."""

import math

import pytest
import torch

import bsde
from bsde.control_bound import bound_side, control_bound
from bsde.model import DeepBSDE
from bsde.reference.radial import radial
from bsde.trainer import train


def test_zero_control_gives_the_driver_free_value():
    """Z = 0 (held, not interpolated towards Z_N = sigma grad g) means b = 0 and no running cost:
    J = E g(x0 + sqrt(2) W_T), known by quadrature since |X_T|^2 / 2 is chi-square."""
    problem = bsde.load_problem("hjb", {"equation.dim": 3, "solver.time_steps": 4})
    model = DeepBSDE(problem.equation, 4, [5], dtype=torch.float64)
    model.reset_parameters(torch.Generator().manual_seed(0), (0.0, 0.0))
    with torch.no_grad():
        model.z0.zero_()
    bound = control_bound(model, generator=torch.Generator().manual_seed(1), paths=1 << 16, substeps=2,
                          interpolate=False)
    # g = ln((1 + |X|^2) / 2) with |X|^2 = 2 T chi^2_3: E g by quadrature of the chi-square density
    from scipy import integrate, stats
    expected, _ = integrate.quad(lambda s: math.log((1 + 2 * s) / 2) * stats.chi2(3).pdf(s), 0, math.inf)
    assert bound.side == "upper"
    assert abs(bound.value - expected) < 4 * bound.stderr, (bound, expected)


def test_side_follows_the_curvature_and_other_problems_have_none():
    assert bound_side(bsde.load_problem("hjb", {"equation.lam": 2.0}).equation) == "upper"
    assert bound_side(bsde.load_problem("hjb", {"equation.lam": -1.0}).equation) == "lower"
    for kind in ("allen_cahn", "max_call", "default_risk"):
        assert bound_side(bsde.load_problem(kind).equation) is None


@pytest.mark.parametrize("lam", [2.0, -1.0])
def test_trained_bound_is_one_sided(lam):
    """A briefly trained 5-d HJB: the bound lies on its side of the radial value; for lam > 0 (the
    control problem of the shipped HJB) it is also nearer to it than y0. For lam < 0 the control pushes
    paths outwards, where the networks saw few, and the bound is only a bound."""
    problem = bsde.load_problem("hjb", {"equation.dim": 5, "equation.lam": lam, "solver.iterations": 400})
    truth = radial(problem.equation).value
    trained = train(problem.equation, problem.solver, generator=torch.Generator().manual_seed(0),
                    device=torch.device("cpu"))
    model = trained.model.eval()
    bound = control_bound(model, generator=torch.Generator().manual_seed(5))
    y0 = model.y_start.item()
    sign = 1 if lam > 0 else -1
    assert sign * (bound.value - truth) > -4 * bound.stderr, (bound, truth)
    if lam > 0:
        assert abs(bound.value - truth) < abs(y0 - truth), (bound.value, y0, truth)
