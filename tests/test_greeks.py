"""bsde.greeks: sigma^{-T} inverts the diffusion transpose; one-transition pathwise / likelihood-ratio Greeks."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import special

import bsde
from bsde.processes import GBM, BrownianMotion, Diffusion, Process, uniform_correlation_root
from bsde.greeks import (diffusion_times, gradient_from_z, inverse_correlation_root, transition_greeks,
                         transition_score)

F64 = torch.float64


@settings(max_examples=25, deadline=None)
@given(dim=st.integers(1, 6), rho=st.floats(-0.15, 0.9), seed=st.integers(0, 1000))
def test_gradient_from_z_inverts_the_geometric_diffusion(dim, rho, seed):
    rho = rho if dim > 1 else 0.0
    gen = torch.Generator().manual_seed(seed)
    vols = tuple(float(v) for v in torch.rand(dim, generator=gen, dtype=F64) * 0.5 + 0.05)
    process = GBM(0.03, vols, rho)
    x = torch.rand(4, dim, generator=gen, dtype=F64) * 100 + 10
    v = torch.randn(4, dim, generator=gen, dtype=F64)
    z = process.diffusion_transpose(x, v)
    assert torch.allclose(gradient_from_z(process, x, z), v, rtol=1e-10, atol=1e-12)


def test_gradient_from_z_brownian_and_the_dense_fallback():
    x = torch.randn(3, 4, dtype=F64)
    v = torch.randn(3, 4, dtype=F64)
    assert torch.allclose(gradient_from_z(BrownianMotion(1.7), x, 1.7 * v), v)

    # a process the helper does not know: sigma(x)^T v = A(x) v with an x-dependent, well-conditioned A
    class Sheared(Process):
        def diffusion_transpose(self, x, v, t=None):
            a = torch.eye(x.shape[-1], dtype=x.dtype) * 2.0 + 0.3 * torch.tanh(x).unsqueeze(-1)
            return (a @ v.unsqueeze(-1)).squeeze(-1)

    z = Sheared().diffusion_transpose(x, v)
    assert torch.allclose(gradient_from_z(Sheared(), x, z), v, rtol=1e-10, atol=1e-12)


def test_gradient_from_z_of_a_full_correlation_matrix_and_a_diffusion():
    corr = [[1.0, 0.3, -0.2], [0.3, 1.0, 0.5], [-0.2, 0.5, 1.0]]
    process = GBM(0.01, [0.2, 0.3, 0.1], correlation=corr)
    x, v = torch.rand(4, 3, dtype=F64) * 50 + 50, torch.randn(4, 3, dtype=F64)
    assert torch.allclose(gradient_from_z(process, x, process.diffusion_transpose(x, v)), v, rtol=1e-10)
    local = Diffusion(lambda t, x: 0.0 * x, lambda t, x: 0.5 + t + 0.1 * x.square())
    assert torch.allclose(gradient_from_z(local, x, local.diffusion_transpose(x, v, 0.3), 0.3), v, rtol=1e-12)


def test_inverse_correlation_root_against_a_dense_inverse():
    d, rho = 7, 0.35
    corr = (1 - rho) * torch.eye(d, dtype=F64) + rho
    values, vectors = torch.linalg.eigh(corr)
    inverse_root = vectors @ torch.diag(values.rsqrt()) @ vectors.T
    v = torch.randn(5, d, dtype=F64)
    assert torch.allclose(inverse_correlation_root(v, rho), v @ inverse_root, atol=1e-12)
    assert torch.allclose(inverse_correlation_root(uniform_correlation_root(v, rho), rho), v, atol=1e-12)


def test_diffusion_times_is_the_adjoint_of_the_transpose():
    process = GBM(0.0, (0.1, 0.2, 0.3), 0.4)
    x = torch.rand(6, 3, dtype=F64) + 0.5
    v, w = torch.randn(6, 3, dtype=F64), torch.randn(6, 3, dtype=F64)
    left = (w * diffusion_times(process, x, v)).sum(-1)
    right = (process.diffusion_transpose(x, w) * v).sum(-1)
    assert torch.allclose(left, right, atol=1e-12)


def test_transition_greeks_of_a_call_match_black_scholes():
    """One asset, phi' = 1{S > K}: delta e^{-qT} Phi(d1), gamma phi(d1)/(S vol sqrt T), within 4 standard errors."""
    s, k, r, vol, t = 100.0, 105.0, 0.05, 0.25, 0.75
    process = GBM(r, (vol,), 0.0)
    found = transition_greeks(process, torch.tensor([s], dtype=F64), t, lambda x: (x > k).to(F64),
                              discount=math.exp(-r * t), pairs=1 << 16, generator=torch.Generator().manual_seed(0))
    d1 = (math.log(s / k) + (r + 0.5 * vol * vol) * t) / (vol * math.sqrt(t))
    delta, gamma = special.ndtr(d1), math.exp(-0.5 * d1 * d1) / math.sqrt(2 * math.pi) / (s * vol * math.sqrt(t))
    assert abs(found.delta.item() - delta) < 4 * found.delta_stderr.item()
    assert abs(found.gamma.item() - gamma) < 4 * found.gamma_stderr.item()
    assert found.gamma_stderr.item() < 0.02 * gamma  # and the error bar is tight enough to mean something


def test_transition_greeks_of_a_quadratic_under_brownian_motion():
    """phi(x) = x^T A x / 2 (A symmetric): grad E phi = A x0 and Hess = A exactly, whatever the time."""
    a = torch.tensor([[2.0, 0.5, 0.0], [0.5, 1.0, -0.3], [0.0, -0.3, 3.0]], dtype=F64)
    x0 = torch.tensor([0.3, -1.0, 0.7], dtype=F64)
    found = transition_greeks(BrownianMotion(1.3), x0, 0.4, lambda x: x @ a, discount=1.0, pairs=1 << 15,
                              generator=torch.Generator().manual_seed(1))
    assert torch.allclose(found.delta, a @ x0, atol=1e-10)  # antithetic pairs cancel the noise exactly
    assert torch.all((found.gamma - a).abs() <= 4 * found.gamma_stderr + 1e-12)
    diagonal_only = transition_greeks(BrownianMotion(1.3), x0, 0.4, lambda x: x @ a, discount=1.0, pairs=1 << 12,
                                      generator=torch.Generator().manual_seed(1), full=False)
    assert diagonal_only.gamma.shape == (3,) and torch.allclose(diagonal_only.gamma_diag, found.gamma_diag, atol=0.2)


def test_transition_score_is_the_gradient_of_the_log_density():
    """Brownian: log p = -|x - x0|^2 / (2 sigma^2 h): its x0-gradient at x = x0 + sigma sqrt(h) xi."""
    xi = torch.randn(5, 2, dtype=F64)
    x0 = torch.tensor([0.2, -0.4], dtype=F64)
    sigma, h = 1.5, 0.3
    x = x0 + sigma * math.sqrt(h) * xi
    leaf = x0.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad((-(x - leaf).square().sum(-1) / (2 * sigma**2 * h)).sum(), leaf)
    assert torch.allclose(transition_score(BrownianMotion(sigma), x0, h, xi).sum(0), grad, atol=1e-12)


@pytest.mark.parametrize("rho", [0.0, 0.3])
def test_geometric_score_is_the_gradient_of_the_log_density(rho):
    process = GBM(0.02, (0.2, 0.3, 0.25), rho)
    x0 = torch.tensor([90.0, 100.0, 110.0], dtype=F64)
    h, xi = 0.5, torch.randn(4, 3, dtype=F64)
    vol = torch.tensor(process.vol, dtype=F64)
    log_x = torch.log(x0) + (process.drift - 0.5 * vol**2) * h + vol * uniform_correlation_root(xi, rho) * math.sqrt(h)
    corr = (1 - rho) * torch.eye(3, dtype=F64) + rho
    cov = h * torch.diag(vol) @ corr @ torch.diag(vol)
    leaf = x0.clone().requires_grad_(True)
    mean = torch.log(leaf) + (process.drift - 0.5 * vol**2) * h
    centred = log_x - mean
    log_density = -0.5 * (centred @ torch.linalg.inv(cov) * centred).sum()  # the Jacobian 1/x does not involve x0
    (grad,) = torch.autograd.grad(log_density, leaf)
    assert torch.allclose(transition_score(process, x0, h, xi).sum(0), grad, rtol=1e-10)


def test_a_diffusions_sub_steps_average_sigma_for_delta():
    """Z_n . dW_n hedges a whole step over which the sub-steps move X with sigma(t_k, x) in turn: Z_0 is about
    mean_k sigma(t_k, x0) grad u, and dividing by sigma(0, x0) alone left delta O(dt) off (QA: 1.028 for 1)."""
    process = Diffusion(lambda t, x: 0.0 * x, lambda t, x: 0.2 + 0.3 * t + 0.0 * x, substeps=4)
    x, z = torch.ones(3, 2, dtype=torch.float64), torch.full((3, 2), 0.5, dtype=torch.float64)
    mean_sigma = 0.2 + 0.3 * (0.0 + 0.025 + 0.05 + 0.075) / 4
    torch.testing.assert_close(gradient_from_z(process, x, z, 0.0, over=0.1), z / mean_sigma)
    torch.testing.assert_close(gradient_from_z(process, x, z, 0.0), z / 0.2)  # at one time


@pytest.mark.slow
def test_delta_of_a_time_dependent_diffusion_with_sub_steps():
    """dX = 0.1 t dt + (0.2 + 0.3 t) dW, g = x_1 + x_2, f = 0.3 t: delta = [1, 1] exactly (was 1.056 with 10 steps)."""
    from bsde.problem import problem_from_dict

    problem = problem_from_dict({"equation": {
        "kind": "custom", "dim": 2, "x0": 1.0, "terminal": "sum(x)", "driver": "0.3 * t",
        "process": {"kind": "diffusion", "drift": "0.1 * t", "sigma": "0.2 + 0.3 * t", "substeps": 4}},
        "solver": {"iterations": 300, "time_steps": 10}})
    result = bsde.solve(problem, seed=0, threads=1, auto_reference=False)
    assert np.allclose(result.delta, 1.0, atol=0.01), result.delta
