"""Processes: laws against closed forms, Z = sigma^T grad u consistent with the noise, validation errors.

Moment tolerances are 5 standard errors of the Monte Carlo estimate (false-alarm rate < 1e-6 per check).
"""

import math
import time

import numpy as np
import pytest
import torch

import bsde
from bsde.errors import ProblemError
from bsde.processes import GBM, BrownianMotion, Diffusion, uniform_correlation_root
from bsde.greeks import gradient_from_z
from bsde.simulation import simulate_paths

N = 100_000
T64 = {"dtype": torch.float64}
C3 = ((1.0, 0.5, -0.3), (0.5, 1.0, 0.2), (-0.3, 0.2, 1.0))


def test_full_correlation_gbm_moments_match_the_matrix():
    """log X_T has covariance vol_i vol_j C_ij T and mean ln x0 + (mu - q - vol^2/2) T; E X_T = x0 e^{(mu - q) T}."""
    vol, div, mu, horizon, x0 = (0.1, 0.3, 0.5), (0.0, 0.02, 0.05), 0.04, 2.0, (90.0, 100.0, 110.0)
    process = GBM(mu, vol, C3, div)
    p = simulate_paths(process, x0, horizon, 4, N, generator=torch.Generator().manual_seed(1))
    logs = torch.log(p.x[:, -1])
    v, q = torch.tensor(vol, **T64), torch.tensor(div, **T64)
    cov = torch.tensor(C3, **T64) * torch.outer(v, v) * horizon
    mean = torch.log(torch.tensor(x0, **T64)) + (mu - q - 0.5 * v * v) * horizon
    assert ((logs.mean(0) - mean).abs() <= 5 * torch.sqrt(cov.diagonal() / N)).all()
    sample_cov = torch.cov(logs.T)
    # stderr of a sample covariance: sqrt((S_ii S_jj + S_ij^2) / N)
    tol = 5 * torch.sqrt((torch.outer(cov.diagonal(), cov.diagonal()) + cov.square()) / N)
    assert ((sample_cov - cov).abs() <= tol).all(), (sample_cov, cov)
    expected = torch.tensor(x0, **T64) * torch.exp((mu - q) * horizon)
    sd = expected * torch.sqrt(torch.exp(v * v * horizon) - 1)
    assert ((p.x[:, -1].mean(0) - expected).abs() <= 5 * sd / math.sqrt(N)).all()


def test_uniform_number_and_the_same_matrix_give_the_same_law():
    rho, d = 0.35, 4
    matrix = [[1.0 if i == j else rho for j in range(d)] for i in range(d)]
    uniform, full = GBM(0.0, 0.3, rho), GBM(0.0, 0.3, matrix)
    assert full.full_correlation and not uniform.full_correlation
    for process in (uniform, full):
        x = process.transition(torch.ones(d, **T64), 1.0, torch.randn(N, d, generator=torch.Generator().manual_seed(2),
                                                                       **T64))
        corr = torch.corrcoef(torch.log(x).T)
        off = corr[~torch.eye(d, dtype=torch.bool)]
        assert (off - rho).abs().max() < 5 * (1 - rho ** 2) / math.sqrt(N)


def test_exact_transition_and_states_and_steps_agree():
    """One path three ways: states from increments, step by step, and the transition over each step."""
    gen = torch.Generator().manual_seed(3)
    dw = torch.randn(5, 6, 3, generator=gen, **T64) * 0.1
    x0 = torch.tensor([1.0, 2.0, 3.0], **T64)
    for process in (BrownianMotion(0.7, drift=0.3), BrownianMotion(0.7, drift=(0.3, -0.1, 0.0)),
                    GBM(0.05, (0.1, 0.2, 0.3), C3, (0.0, 0.01, 0.0)), GBM(0.05, 0.2, 0.4)):
        states = process.states(x0, dw, 0.01)
        x = x0.expand(5, 3)
        for n in range(6):
            x = process.step(n * 0.01, x, 0.01, dw[:, n])
            torch.testing.assert_close(x, states[:, n + 1])
            torch.testing.assert_close(process.transition(states[:, n], 0.01, dw[:, n] / 0.1), states[:, n + 1])


@pytest.mark.parametrize("process", [
    BrownianMotion(1.3, drift=0.2),
    GBM(0.05, (0.1, 0.2, 0.3), C3),
    GBM(0.05, (0.1, 0.2, 0.3), 0.4),
    Diffusion(lambda t, x: 0.1 * x, lambda t, x: 0.2 + t * x.abs()),
], ids=["brownian", "gbm-matrix", "gbm-uniform", "diffusion"])
def test_z_transpose_is_the_adjoint_of_the_noise(process):
    """Z . dW = grad u . (sigma dW): the transpose and the step use the same sigma (L^T with L, not L)."""
    gen = torch.Generator().manual_seed(4)
    x = 1.0 + torch.rand(7, 3, generator=gen, **T64)
    grad, dw = torch.randn(7, 3, generator=gen, **T64), torch.randn(7, 3, generator=gen, **T64)
    t = 0.3
    if isinstance(process, GBM):  # sigma(x) dW = diag(vol x) L dW
        noise = torch.tensor(process.vol, **T64) * x * process.correlated(dw)
    else:  # the part of an Euler step that is linear in dW
        noise = process.step(t, x, 1.0, dw) - process.step(t, x, 1.0, torch.zeros_like(dw))
    z = process.diffusion_transpose(x, grad, t=t)
    torch.testing.assert_close((z * dw).sum(-1), (grad * noise).sum(-1))


def test_controlled_step_is_the_step_with_shifted_increments():
    gen = torch.Generator().manual_seed(5)
    x, dw, b = 1 + torch.rand(4, 3, generator=gen, **T64), torch.randn(4, 3, generator=gen, **T64), \
        torch.randn(4, 3, generator=gen, **T64)
    for process in (BrownianMotion(2.0, 0.1), BrownianMotion(2.0, [0.1, 0.0, -0.3]), GBM(0.05, 0.2, C3)):
        torch.testing.assert_close(process.step(0.0, x, 0.1, dw, control=b), process.step(0.0, x, 0.1, dw + 0.1 * b))


def test_diffusion_euler_substeps_bridge_sums_to_the_increment():
    """With drift 0 and sigma 1 the Euler path is x0 + W exactly: the bridge's sub-increments sum to dW."""
    process = Diffusion(lambda t, x: 0.0, lambda t, x: 1.0, substeps=4)
    p = simulate_paths(process, (1.0, -1.0), 1.0, 5, 16, generator=torch.Generator().manual_seed(6))
    torch.testing.assert_close(p.x[:, 1:] - p.x[:, :1], torch.cumsum(p.dw, 1))
    with pytest.raises(ValueError, match="generator"):
        process.states(torch.zeros(2, **T64), p.dw, 0.2)


def test_diffusion_ornstein_uhlenbeck_moments():
    """dX = -theta X dt + s dW: E X_T = x0 e^{-theta T}, Var = s^2 (1 - e^{-2 theta T}) / (2 theta), Euler bias O(h)."""
    theta, s, x0, horizon = 2.0, 0.5, 1.0, 1.0
    process = Diffusion(lambda t, x: -theta * x, lambda t, x: s, substeps=8)
    p = simulate_paths(process, (x0,), horizon, 10, N, generator=torch.Generator().manual_seed(7))
    xt = p.x[:, -1, 0]
    mean, var = x0 * math.exp(-theta * horizon), s * s * (1 - math.exp(-2 * theta * horizon)) / (2 * theta)
    h = horizon / 80
    euler_mean = x0 * (1 - theta * h) ** 80  # the scheme's own mean; its distance to the exact one is O(h)
    assert abs(euler_mean - mean) < 0.01
    assert abs(float(xt.mean()) - euler_mean) <= 5 * math.sqrt(var / N)
    assert abs(float(xt.var()) - var) <= 5 * var * math.sqrt(2 / N) + 2 * theta * h * var


def test_uniform_correlation_at_10000_dimensions_stays_o_of_d():
    d = 10_000
    eq = bsde.load_problem("max_call", {"equation.dim": d, "equation.correlation": 0.5}).equation
    began = time.perf_counter()
    p = simulate_paths(eq.process, eq.x_start, 1.0, 4, 64, generator=torch.Generator().manual_seed(8))
    z = eq.process.diffusion_transpose(p.x[:, -1], torch.ones(64, d, **T64))
    assert time.perf_counter() - began < 5.0 and z.shape == (64, d)
    assert all(key[0] in ("vol", "log_drift") for key in eq.process._tensors)  # no d x d matrix anywhere


def test_a_correlation_matrix_and_the_number_it_spells_are_one_process():
    """Both use the symmetric root C^{1/2}: the same paths and the same Z = sigma^T grad u, so a driver that is not a
    function of |z| alone (a Girsanov term lam . z) poses the same PDE either way."""
    d, rho = 4, 0.5
    number = GBM(0.05, (0.1, 0.2, 0.3, 0.25), rho)
    matrix = GBM(0.05, (0.1, 0.2, 0.3, 0.25), [[1.0 if i == j else rho for j in range(d)] for i in range(d)])
    dw = torch.randn(16, 5, d, generator=torch.Generator().manual_seed(3), **T64)
    x0 = torch.full((d,), 100.0, **T64)
    torch.testing.assert_close(matrix.states(x0, dw, 0.1), number.states(x0, dw, 0.1))
    x, v = x0 * torch.rand(16, d, generator=torch.Generator().manual_seed(4), **T64) + 50, torch.randn(16, d, **T64)
    torch.testing.assert_close(matrix.diffusion_transpose(x, v), number.diffusion_transpose(x, v))
    torch.testing.assert_close(gradient_from_z(matrix, x, matrix.diffusion_transpose(x, v)), v)


def test_a_correlation_matrix_poses_the_same_problem_whatever_the_assets_order():
    """Z_i = (C^{1/2} w)_i: relabelling the assets permutes Z, where a Cholesky factor would mix them differently."""
    c = [[1.0, 0.6, 0.2], [0.6, 1.0, 0.4], [0.2, 0.4, 1.0]]
    order = [2, 0, 1]
    permuted = [[c[i][j] for j in order] for i in order]
    w = torch.randn(8, 3, generator=torch.Generator().manual_seed(5), **T64)
    x = torch.ones(8, 3, **T64)
    z = GBM(0.0, 1.0, c).diffusion_transpose(x, w)
    torch.testing.assert_close(GBM(0.0, 1.0, permuted).diffusion_transpose(x, w[:, order]), z[:, order])


def test_uniform_correlation_root_is_a_square_root():
    d, rho = 6, 0.3
    root = uniform_correlation_root(torch.eye(d, **T64), rho)
    torch.testing.assert_close(root @ root.T, (1 - rho) * torch.eye(d, **T64) + rho)


def test_a_singular_correlation_matrix_is_refused():
    """Rank-deficient matrices passed a Cholesky check by rounding; their symmetric root was NaN (review)."""
    rng = np.random.default_rng(0)
    factor = rng.standard_normal((20, 19))
    covariance = factor @ factor.T
    scale = np.sqrt(np.diag(covariance))
    singular = (covariance / np.outer(scale, scale)).tolist()
    for matrix in ([[1.0, 1.0, 0.0], [1.0, 1.0, 0.0], [0.0, 0.0, 1.0]], singular):
        matrix = [[1.0 if i == j else v for j, v in enumerate(row)] for i, row in enumerate(matrix)]
        with pytest.raises(ProblemError, match="correlation: the matrix is not positive definite"):
            GBM(0.05, 0.2, [[0.5 * (a + b) for a, b in zip(row, col)] for row, col in zip(matrix, zip(*matrix))])
    root = GBM(0.05, 0.2, [[1.0, 0.3], [0.3, 1.0]])._tensor("root", torch.zeros((), **T64))
    torch.testing.assert_close(root @ root, torch.tensor([[1.0, 0.3], [0.3, 1.0]], **T64))


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"correlation": ((1.0, 0.9, 0.0), (0.9, 1.0, 0.9), (0.0, 0.9, 1.0))}, "not positive definite"),
    ({"correlation": ((1.0, 0.2), (0.3, 1.0))}, "not symmetric"),
    ({"correlation": ((2.0, 0.0), (0.0, 1.0))}, "ones on its diagonal"),
    ({"correlation": ((1.0, 0.0), (0.0,))}, "2x2 matrix"),
    ({"correlation": ((1.0, 1.5), (1.5, 1.0))}, "outside"),
    ({"vol": -0.1}, "non-negative"),
    ({"vol": (0.1, 0.2), "dividend": (0.0, 0.1, 0.2)}, "disagree"),
    ({"vol": (0.1, 0.2, 0.3), "correlation": -0.6}, "not positive definite"),
    ({"drift": float("nan")}, "finite"),
])
def test_bad_gbm_is_a_clear_value_error(kwargs, message):
    args = {"drift": 0.05, "vol": 0.2, **kwargs}
    with pytest.raises(ValueError, match=message):
        GBM(**args)


def test_dimension_checks_name_the_field():
    with pytest.raises(ValueError, match="correlation: expected a 4x4 matrix"):
        GBM(0.0, 0.2, C3).check_dim(4)
    with pytest.raises(ValueError, match="vol: expected a number or a list of dim = 4"):
        GBM(0.0, (0.1, 0.2)).check_dim(4)
    with pytest.raises(ValueError, match="drift: expected a number or a list of dim = 4"):
        BrownianMotion(0.3, (0.1, 0.2)).check_dim(4)
    with pytest.raises(ValueError, match="substeps"):
        Diffusion(lambda t, x: 0, lambda t, x: 1, substeps=0)


def test_max_call_market_fields_from_yaml():
    matrix = [list(row) for row in C3]
    problem = bsde.load_problem("max_call", {"equation.dim": 3, "equation.correlation": matrix,
                                             "equation.vol": [0.1, 0.2, 0.3], "equation.dividend": [0.0, 0.01, 0.02]})
    process = problem.equation.process
    assert process.full_correlation and process.dividend == (0.0, 0.01, 0.02) and process.drift == 0.05
    assert problem.to_dict()["equation"]["correlation"] == matrix


def test_gbm_takes_numpy_arrays_as_it_takes_lists():
    import numpy as np

    given = bsde.GBM(0.05, np.array([0.2, 0.3]), np.array([[1.0, 0.4], [0.4, 1.0]]), dividend=np.array([0.0, 0.01]))
    listed = bsde.GBM(0.05, [0.2, 0.3], [[1.0, 0.4], [0.4, 1.0]], dividend=[0.0, 0.01])
    assert given == listed
    assert bsde.GBM(np.float64(0.05), np.float64(0.2), np.float64(0.3)) == bsde.GBM(0.05, 0.2, 0.3)


@pytest.mark.parametrize("rho", [1.5, -1.5])
def test_a_uniform_correlation_outside_minus_one_one_is_refused_in_one_dimension(rho):
    """At dim 1 the positive-definite range check does not apply, and sqrt(1 - rho) raised a bare ValueError (QA)."""
    with pytest.raises(ProblemError, match=r"correlation: .* is outside \[-1, 1\]"):
        GBM(0.05, 0.2, rho).check_dim(1)
    with pytest.raises(ProblemError, match="outside"):
        bsde.load_problem("max_call", {"equation.dim": 1, "equation.correlation": rho})
    x = GBM(0.05, 0.2, 1.0).transition(torch.ones(4, 1, **T64), 0.5, torch.ones(4, 1, **T64))  # at the ends: fine
    assert torch.isfinite(x).all()


@pytest.mark.parametrize("dim", [3, 400])  # below and above STEP_BY_STEP_FROM numbers per step (batch 64)
@pytest.mark.parametrize("per_path_start", [False, True])
def test_running_sum_both_ways(dim, per_path_start):
    from bsde.processes import STEP_BY_STEP_FROM, running_sum

    assert (64 * dim >= STEP_BY_STEP_FROM) == (dim == 400)
    gen = torch.Generator().manual_seed(3)
    increments = torch.randn(64, 5, dim, generator=gen, dtype=torch.float64)
    start = torch.randn((64, dim) if per_path_start else (dim,), generator=gen, dtype=torch.float64)
    got = running_sum(start, increments, 0.5)
    expected = torch.cat([start.expand(64, dim).unsqueeze(1), start.unsqueeze(-2) + 0.5 * increments.cumsum(1)], dim=1)
    torch.testing.assert_close(got, expected, rtol=1e-13, atol=1e-13)


def test_a_brownian_drift_per_coordinate_moves_each_coordinate_by_its_own():
    """X_T = x0 + b T + sigma W_T: the exact transition's mean is x0 + b_i T (to 4 standard errors)."""
    process = BrownianMotion(0.5, drift=[0.2, -0.4, 0.0])
    assert process.dim == 3 and process.describe()["drift"] == [0.2, -0.4, 0.0]
    assert BrownianMotion(0.5, drift=[0.2]).drift == 0.2 and BrownianMotion(0.5, 0.2).drifts(2) == (0.2, 0.2)
    normals = torch.randn(1 << 16, 3, generator=torch.Generator().manual_seed(0), **T64)
    x = process.transition(torch.ones(3, **T64), 2.0, normals)
    expected = torch.tensor([1.0 + 0.4, 1.0 - 0.8, 1.0], **T64)
    assert ((x.mean(0) - expected).abs() < 4 * 0.5 * 2.0 ** 0.5 / 2 ** 8).all()
