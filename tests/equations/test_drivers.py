"""Each driver and terminal condition against hand-computed values and against PDEs with known solutions.

The PDE residual tests check the driver's scaling: with Z = sigma^T grad u, an exact solution u must
satisfy u_t + generator u + f(t, x, u, sigma^T grad u) = 0. An off-by-two in f breaks them.
"""

import math

import pytest
import torch
from scipy.stats import norm

import bsde
from bsde.equations import HJB, AllenCahn, DefaultRisk, MaxCall

T64 = {"dtype": torch.float64}


def test_hjb_values():
    eq = HJB(dim=3, lam=2.0)
    x = torch.tensor([[1.0, 2.0, 2.0]], **T64)
    z = torch.tensor([[0.5, -1.0, 0.0]], **T64)
    assert eq.terminal(x).item() == pytest.approx(math.log((1 + 9) / 2))
    assert eq.driver(0.0, x, torch.zeros(1, **T64), z).item() == pytest.approx(-0.5 * 2.0 * 1.25)
    assert eq.process.sigma == pytest.approx(math.sqrt(2))


def test_allen_cahn_values():
    eq = AllenCahn(dim=2)
    x = torch.tensor([[1.0, 2.0]], **T64)
    y = torch.tensor([0.5], **T64)
    assert eq.terminal(x).item() == pytest.approx(1 / (2 + 0.4 * 5))
    assert eq.driver(0.0, x, y, torch.zeros_like(x)).item() == pytest.approx(0.5 - 0.125)


def test_max_call_values():
    eq = MaxCall(dim=3, strike=100.0, rate=0.03)
    x = torch.tensor([[90.0, 120.0, 95.0], [80.0, 90.0, 99.0]], **T64)
    assert eq.terminal(x).tolist() == [20.0, 0.0]
    assert eq.driver(0.0, x, torch.tensor([2.0, 4.0], **T64), x).tolist() == pytest.approx([-0.06, -0.12])
    assert eq.discount_rate == 0.03


def test_default_risk_intensity_and_driver():
    eq = DefaultRisk(dim=2)
    y = torch.tensor([40.0, 50.0, 60.0, 70.0, 90.0], **T64)
    assert eq.intensity(y).tolist() == pytest.approx([0.2, 0.2, 0.11, 0.02, 0.02])
    f = eq.driver(0.0, None, y, None)
    assert f.tolist() == pytest.approx((-(1 / 3) * eq.intensity(y) * y - 0.02 * y).tolist())
    assert eq.terminal(torch.tensor([[3.0, 1.0]], **T64)).item() == 1.0


def test_default_risk_with_one_intensity_is_linear_pricing():
    """gamma_h = gamma_l: f = -((1 - delta) gamma + R) y, so u0 = e^{-r T} E g(X_T); at d = 1 g = X_T and that is
    x0 e^{(mu - r) T} in closed form, which the `mc` reference (now applicable) holds (QA: a false trivial-solution
    warning, `mc` refused)."""
    eq = DefaultRisk(dim=1, x0=60.0, gamma_l=0.2)
    rate = (1 - eq.delta) * 0.2 + eq.rate
    assert eq.driver_is_linear and eq.discount_rate == pytest.approx(rate)
    assert not DefaultRisk(dim=1).driver_is_linear and DefaultRisk(dim=1).discount_rate == 0.0
    result = bsde.reference(eq, method="mc", seed=0)
    low, high = result.ci95
    assert low <= 60.0 * math.exp((eq.mu - rate) * eq.total_time) <= high


def _residual_brownian(eq, u, t, x):
    """u_t + (sigma^2 / 2) Lap u + f(t, x, u, sigma grad u) at (t, x), by autograd."""
    t = t.clone().requires_grad_(True)
    x = x.clone().requires_grad_(True)
    value = u(t, x)
    u_t, grad = torch.autograd.grad(value.sum(), (t, x), create_graph=True)
    lap = sum(torch.autograd.grad(grad[:, i].sum(), x, retain_graph=True)[0][:, i] for i in range(x.shape[1]))
    sigma = eq.process.sigma
    return u_t + 0.5 * sigma**2 * lap + eq.driver(t, x, value, sigma * grad)


@pytest.mark.parametrize("lam", [0.5, 1.0, 3.0])
def test_hjb_driver_solves_quadratic_cole_hopf_case(lam):
    """For g = a|x|^2 the HJB solution is u = d/(2 lam) ln(1 + 4 lam a tau) + a|x|^2 / (1 + 4 lam a tau)."""
    dim, a, horizon = 4, 0.7, 1.0
    eq = HJB(dim=dim, lam=lam, total_time=horizon)

    def u(t, x):
        tau = horizon - t
        k = 1 + 4 * lam * a * tau
        return dim / (2 * lam) * torch.log(k) + a * x.square().sum(-1) / k

    gen = torch.Generator().manual_seed(0)
    x = torch.randn(6, dim, generator=gen, **T64)
    t = torch.rand(6, generator=gen, **T64)
    assert _residual_brownian(eq, u, t, x).abs().max().item() < 1e-10
    # the same u with the off-by-two driver -lam |z|^2 is not a solution
    wrong = HJB(dim=dim, lam=2 * lam, total_time=horizon)
    assert _residual_brownian(wrong, u, t, x).abs().max().item() > 1e-2


def test_hjb_at_lam_zero_is_the_heat_equation():
    """lam = 0: f = 0, no quadratic term to steer by; the solve runs plain; radial and Cole-Hopf (E g) agree."""
    problem = bsde.load_problem("hjb", {"equation.dim": 2, "equation.lam": 0, "equation.x0": 0.5,
                                        "solver.iterations": 30, "solver.time_steps": 4, "solver.batch_size": 16,
                                        "solver.valid_size": 16, "solver.log_every": 10})
    assert problem.equation.z_hessian is None and not problem.equation.controllable
    assert problem.equation.driver_is_linear and not problem.equation.driver_uses_z  # f = 0 = -0 y
    result = bsde.solve(problem, seed=0, threads=1, reference=bsde.reference(problem, "cole-hopf", seed=1))
    radial = bsde.reference(problem, "radial")
    assert math.isfinite(result.y0) and abs(radial.value - result.reference) < 4 * result.reference_stderr
    assert result.error_basis == "Monte Carlo value of the linear problem"  # E g(X_T) at hand, not Richardson
    assert abs(bsde.reference(problem, "mc", seed=2).value - radial.value) < 4 * bsde.reference(problem, "mc").stderr


def _black_scholes_call(s, k, r, q, vol, tau):
    d1 = (torch.log(s / k) + (r - q + 0.5 * vol**2) * tau) / (vol * torch.sqrt(tau))
    d2 = d1 - vol * torch.sqrt(tau)
    cdf = lambda v: 0.5 * (1 + torch.erf(v / math.sqrt(2)))  # noqa: E731
    return s * torch.exp(-q * tau) * cdf(d1) - k * torch.exp(-r * tau) * cdf(d2)


def test_max_call_driver_with_black_scholes_pde():
    """d = 1: the Black-Scholes call solves u_t + (r - q) x u_x + vol^2 x^2 u_xx / 2 + f(u) = 0."""
    eq = MaxCall(dim=1, rate=0.05, dividend=0.02, vol=0.3, strike=100.0, total_time=1.0)
    t = torch.tensor([0.1, 0.5, 0.9], **T64).requires_grad_(True)
    x = torch.tensor([80.0, 100.0, 130.0], **T64).requires_grad_(True)
    u = _black_scholes_call(x, 100.0, 0.05, 0.02, 0.3, 1.0 - t)
    u_t, u_x = torch.autograd.grad(u.sum(), (t, x), create_graph=True)
    u_xx = torch.autograd.grad(u_x.sum(), x)[0]
    residual = u_t + 0.03 * x * u_x + 0.5 * 0.09 * x**2 * u_xx + eq.driver(t, x[:, None], u, None)
    assert residual.abs().max().item() < 1e-9
    # sanity: the formula itself, against scipy
    s, k, tau = 100.0, 100.0, 1.0
    d1 = (math.log(s / k) + (0.05 - 0.02 + 0.045) * tau) / 0.3
    ref = s * math.exp(-0.02) * norm.cdf(d1) - k * math.exp(-0.05) * norm.cdf(d1 - 0.3)
    assert _black_scholes_call(torch.tensor(s, **T64), k, 0.05, 0.02, 0.3, torch.tensor(tau, **T64)).item() == \
        pytest.approx(ref, rel=1e-12)


def small_dim(name: str) -> dict:
    """dim 3 for a problem whose file does not fix its dimension (by per-asset lists), none otherwise."""
    return {} if bsde.load_problem(name).equation.dim <= 10 else {"equation.dim": 3}


@pytest.mark.parametrize("name", sorted(bsde.shipped_problems()))
def test_shipped_equations_broadcast_and_batch(name):
    """driver and terminal accept any leading batch shape (the solver evaluates all steps at once)."""
    eq = bsde.load_problem(name, small_dim(name)).equation
    gen = torch.Generator().manual_seed(1)
    x = 100 * torch.rand(2, 5, eq.dim, generator=gen, **T64) + 1
    y = torch.rand(2, 5, generator=gen, **T64)
    z = torch.randn(2, 5, eq.dim, generator=gen, **T64)
    assert eq.terminal(x).shape == (2, 5)
    assert eq.driver(torch.zeros(5, **T64), x, y, z).shape == (2, 5)
    flat = eq.driver(0.0, x[1, 2:3], y[1, 2:3], z[1, 2:3])
    assert flat.item() == pytest.approx(eq.driver(torch.zeros(5, **T64), x, y, z)[1, 2].item())
