"""The control bound and the value sampled under the learned control (HJB): exact for Z = 0 against
quadrature, unbiased for any control against the radial PDE solve, one-sided bound, refinement that helps."""

import math

import pytest
import torch

import bsde
from bsde.control_bound import (bound_side, control_bound, controlled_samples, exponential_mean, refine,
                                step_controls)
from bsde.model import DeepBSDE
from bsde.reference.radial import radial
from bsde.trainer import train


def chi_square_expectation(fun, dim: int, total_time: float = 1.0) -> float:
    """E fun(|X_T|^2) for X_T = sqrt(2) W_T in dim dimensions: |X_T|^2 = 2 T chi^2_dim, by quadrature."""
    from scipy import integrate, stats

    value, _ = integrate.quad(lambda s: fun(2 * total_time * s) * stats.chi2(dim).pdf(s), 0, math.inf)
    return value


def zero_control_model(dim: int, lam: float) -> DeepBSDE:
    problem = bsde.load_problem("hjb", {"equation.dim": dim, "equation.lam": lam, "solver.time_steps": 4})
    model = DeepBSDE(problem.equation, 4, [5], dtype=torch.float64)
    model.reset_parameters(torch.Generator().manual_seed(0), (0.0, 0.0))
    with torch.no_grad():
        model.z0.zero_()
    return model


def test_zero_control_gives_the_driver_free_value_and_the_cole_hopf_value():
    """Z = 0 (held, not interpolated towards Z_N = sigma grad g) means b = 0 and no running cost:
    J = E g(x0 + sqrt(2) W_T) and V = -(1/lam) ln E exp(-lam g), both known by quadrature."""
    lam = 2.0
    model = zero_control_model(3, lam)
    bound = control_bound(model, generator=torch.Generator().manual_seed(1), paths=1 << 16, substeps=2,
                          interpolate=False, batches=1)
    expected_j = chi_square_expectation(lambda s: math.log((1 + s) / 2), 3)
    expected_v = -math.log(chi_square_expectation(lambda s: ((1 + s) / 2) ** -lam, 3)) / lam
    assert bound.side == "upper" and bound.paths == 1 << 16
    assert abs(bound.value - expected_j) < 4 * bound.stderr, (bound, expected_j)
    assert abs(bound.exponential - expected_v) < 4 * bound.exponential_stderr, (bound, expected_v)
    assert bound.value - expected_v > 20 * bound.stderr  # Z = 0 is a poor control: J is well above u0


def test_exponential_mean_of_known_samples():
    constant = torch.full((100,), 0.7, dtype=torch.float64)
    value, stderr, effective = exponential_mean(constant, 3.0)
    assert value == pytest.approx(0.7, abs=1e-14) and stderr == pytest.approx(0.0, abs=1e-14)
    assert effective == pytest.approx(100.0)
    # two values: -(1/c) ln((e^{-c a} + e^{-c b}) / 2), whatever their size (the exponent is shifted)
    pair = torch.tensor([1000.0, 1001.0], dtype=torch.float64)
    value, _, effective = exponential_mean(pair, 2.0)
    assert value == pytest.approx(1000.0 - math.log((1 + math.exp(-2.0)) / 2) / 2.0, rel=1e-14)
    assert 1.0 < effective < 2.0


def test_side_follows_the_curvature_and_other_problems_have_none():
    assert bound_side(bsde.load_problem("hjb", {"equation.lam": 2.0}).equation) == "upper"
    assert bound_side(bsde.load_problem("hjb", {"equation.lam": -1.0}).equation) == "lower"
    for kind in ("allen_cahn", "max_call", "default_risk"):
        assert bound_side(bsde.load_problem(kind).equation) is None


@pytest.fixture(scope="module")
def briefly_trained():
    """A 5-d HJB (lam = 2) trained for 400 iterations: a control far from optimal (y0 some % off)."""
    problem = bsde.load_problem("hjb", {"equation.dim": 5, "equation.lam": 2.0, "solver.iterations": 400})
    trained = train(problem.equation, problem.solver, generator=torch.Generator().manual_seed(0),
                    device=torch.device("cpu"))
    return trained.model.eval(), radial(problem.equation).value


def test_value_is_unbiased_for_a_poor_control_and_the_bound_is_one_sided(briefly_trained):
    """The value sampled under any control has no bias beyond Monte Carlo (the radial PDE solve, independent
    of the solver, lies within 4 standard errors); J lies above it and nearer to it than the trained y0."""
    model, truth = briefly_trained
    bound = control_bound(model, generator=torch.Generator().manual_seed(5), paths=8192, tolerance=0.0, batches=2)
    y0 = model.y_start.item()
    assert bound.paths == 8192  # the first batch only steers the refinement
    assert abs(bound.exponential - truth) < 4 * bound.exponential_stderr, (bound, truth)
    assert bound.exponential_stderr < 0.005 * abs(truth)
    assert bound.value - truth > -4 * bound.stderr, (bound, truth)
    assert abs(bound.value - truth) < abs(y0 - truth), (bound.value, y0, truth)
    assert bound.value - truth > 8 * bound.stderr  # the control is far from optimal, and J says so


def test_refinement_reduces_the_variance(briefly_trained):
    """One refinement fitted on a batch lowers Var S (and J) on fresh paths: the regression points along e."""
    model, truth = briefly_trained
    controls = step_controls(model, torch.float32)
    draw = lambda seed, correction=None: controlled_samples(  # noqa: E731
        model, controls, 4096, 8, True, torch.Generator().manual_seed(seed), torch.float32, correction)
    samples, regressors = draw(1)
    correction = refine(samples, regressors).float()
    plain, _ = draw(2)
    refined, _ = draw(2, correction)
    assert correction.shape == (model.time_steps, 2)
    assert float(refined.var()) < 0.8 * float(plain.var()), (float(refined.var()), float(plain.var()))
    assert float(refined.mean()) < float(plain.mean())


def test_lower_bound_side():
    """lam < 0 (convex driver): J is a lower bound and the value still matches the radial solve."""
    problem = bsde.load_problem("hjb", {"equation.dim": 5, "equation.lam": -1.0, "solver.iterations": 400})
    truth = radial(problem.equation).value
    model = train(problem.equation, problem.solver, generator=torch.Generator().manual_seed(0),
                  device=torch.device("cpu")).model.eval()
    bound = control_bound(model, generator=torch.Generator().manual_seed(5), paths=8192, tolerance=0.0, batches=2)
    assert bound.side == "lower"
    assert bound.value - truth < 4 * bound.stderr, (bound, truth)
    assert abs(bound.exponential - truth) < 4 * bound.exponential_stderr + 1e-4 * abs(truth), (bound, truth)


def test_refine_recovers_known_coefficients_with_a_vanishing_column():
    """S = u0 + sum_n (a_n R_n0 + b_n R_n1) + noise, with one regressor column about 0 (the Z_0 column at x0 = 0):
    the least squares with a rank cutoff gives the a_n, b_n of the columns that carry information."""
    generator = torch.Generator().manual_seed(5)
    paths, steps = 4000, 3
    regressors = torch.randn(paths, 2 * steps, generator=generator, dtype=torch.float64)
    regressors[:, 1] = 1e-17 * regressors[:, 1]  # step 0's state column: X_0 - x0 = 0
    coefficients = torch.tensor([0.3, 0.0, -0.2, 0.5, 0.1, -0.4], dtype=torch.float64)
    samples = 1.5 + regressors @ coefficients + 0.01 * torch.randn(paths, generator=generator, dtype=torch.float64)
    found = refine(samples, regressors)
    assert found.shape == (steps, 2) and found.device == samples.device
    assert torch.allclose(found.reshape(-1)[[0, 2, 3, 4, 5]], coefficients[[0, 2, 3, 4, 5]], atol=2e-3)
    assert torch.isfinite(found).all()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_refine_runs_on_cuda_tensors():
    """torch's CUDA lstsq refuses the 'gelsd' driver: the fit runs on the CPU and comes back on the samples' device."""
    generator = torch.Generator().manual_seed(6)
    regressors = torch.randn(500, 4, generator=generator, dtype=torch.float64)
    samples = regressors.sum(1)
    on_cpu = refine(samples, regressors)
    on_cuda = refine(samples.cuda(), regressors.cuda())
    assert on_cuda.device.type == "cuda" and torch.allclose(on_cuda.cpu(), on_cpu)


def test_a_diverged_run_has_no_bound_and_says_its_error_is_large():
    """A learning rate of 10 blows the loss up to about 1e21 without a NaN: the learned control overflows the
    bound's float32 paths. No bound (it once reached lstsq as NaN and crashed inside it); the time-step
    estimate then reports an error far above 1% of y0, with the warning."""
    settings = {"iterations": 20, "time_steps": 4, "batch_size": 32, "valid_size": 32, "log_every": 10,
                "learning_rate": 10.0}
    result = bsde.solve(bsde.load_problem("hjb", {"equation.dim": 3, "equation.lam": 10}), solver=settings,
                        threads=1)
    assert result.bound is None and "Richardson" in result.error_basis
    assert result.error_estimate > 0.01 * abs(result.y0)
    assert any("exceeds 1% of |y0|" in w for w in result.warnings)


def test_a_source_enters_the_sampled_value_by_the_trapezoid():
    """f = +|z|^2 / 2 + k(t, x), manufactured so that u = e^{-t} mean(x^2) (QA; u0 = 0.308, d = 5). Under the exact
    control the samples' only error is the quadrature of k, which the left-point rule made h/2 (k(T) - k(0)) per
    path: 6e-4 low, 13 standard errors, on 20 x 4 sub-steps (the solve's value was 1.1-1.8 of its standard errors
    low). By the trapezoid the value holds u0 within 4 standard errors."""
    from types import SimpleNamespace

    dim, s, steps = 5, 0.5, 20
    equation = bsde.problem_from_dict({"equation": {
        "kind": "custom", "dim": dim, "total_time": 1.0, "x0": [1.0, 0.5, -0.5, 0.2, 0.0], "params": {"s": s},
        "process": {"kind": "brownian", "sigma": s}, "terminal": "exp(-1.0)*mean(x**2)",
        "driver": "0.5*sum(z**2) + exp(-t)*mean(x**2) - s**2*exp(-t) - 2*s**2*exp(-2*t)*sum(x**2)/dim**2"}}).equation
    model = SimpleNamespace(equation=equation, time_steps=steps, y0=torch.zeros(()))
    exact = [lambda x, t=n / steps: s * math.exp(-t) * 2 * x / dim for n in range(steps + 1)]  # sigma grad u
    samples, _ = controlled_samples(model, exact, 1 << 14, 4, True, torch.Generator().manual_seed(0), torch.float64)
    c = equation.z_hessian
    value = float(samples.mean()) - math.log(float(torch.exp(-c * (samples - samples.mean())).mean())) / c
    stderr = float(samples.std()) / math.sqrt(samples.numel())
    assert abs(value - 0.308) < 4 * stderr, (value, stderr)
