"""The shipped closed-form solutions solve their PDEs, with Z = sigma^T grad u.

For every equation with ``exact_solution``: u(T, x) = g(x), and u_t + mu . grad u + 1/2 tr(sigma sigma^T Hess u)
+ f(t, x, u, sigma^T grad u) = 0 at random points, by autograd. The same check with the driver fed grad u instead of
sigma^T grad u fails, so it catches the driver-scaling slips the peers make.
"""

import math

import pytest
import torch

from bsde.equations import BlackScholesBarenblatt, BurgersType, DifferingRates, QuadraticGradient, ReactionDiffusion
from bsde.processes import GBM, BrownianMotion

T64 = {"dtype": torch.float64}


def generator_and_gradient(eq, t, x, u):
    """(u_t + mu . grad u + 1/2 tr(sigma sigma^T Hess u), grad u) for a diagonal diffusion, by autograd."""
    value = u(t, x)
    u_t, grad = torch.autograd.grad(value.sum(), (t, x), create_graph=True)
    hess_diag = torch.stack([torch.autograd.grad(grad[:, i].sum(), x, retain_graph=True)[0][:, i]
                             for i in range(x.shape[1])], -1)
    process = eq.process
    if isinstance(process, BrownianMotion):
        assert process.drift == 0.0
        return value, u_t + 0.5 * process.sigma ** 2 * hess_diag.sum(-1), grad
    assert isinstance(process, GBM) and process.independent and process.dividend == (0.0,)
    vol = torch.tensor(process.vols(x.shape[1]), **T64)
    return value, u_t + process.drift * (x * grad).sum(-1) + 0.5 * (vol * vol * x * x * hess_diag).sum(-1), grad


def diffusion_transpose(eq, x, grad):
    """sigma(x)^T grad u: sigma grad u (Brownian) or vol x_i u_{x_i} (geometric)."""
    process = eq.process
    if isinstance(process, BrownianMotion):
        return process.sigma * grad
    return torch.tensor(process.vols(x.shape[1]), **T64) * x * grad


def residual(eq, t, x, *, scale_z: bool = True):
    t, x = t.clone().requires_grad_(True), x.clone().requires_grad_(True)
    value, generated, grad = generator_and_gradient(eq, t, x, eq.exact_solution)
    z = diffusion_transpose(eq, x, grad) if scale_z else grad
    return generated + eq.driver(t, x, value, z)


def points(eq, n=16, seed=0):
    gen = torch.Generator().manual_seed(seed)
    t = eq.total_time * torch.rand(n, generator=gen, **T64)
    x = torch.tensor(eq.x_start, **T64) * (1 + 0.5 * torch.randn(n, eq.dim, generator=gen, **T64))
    if isinstance(eq.process, GBM):
        x = x.abs() + 0.1
    return t, x


EXACT = [
    BlackScholesBarenblatt(dim=6),
    BlackScholesBarenblatt(dim=3, rate=0.1, sigma=0.7, total_time=2.0, x0=[1.0, 2.0, 0.5]),
    BurgersType(dim=5, x0=0.5),
    BurgersType(dim=50, x0=0.3),
    ReactionDiffusion(dim=7, x0=0.3),
    ReactionDiffusion(dim=4, x0=0.5, kappa=0.2, lam=0.8, total_time=0.5),
    QuadraticGradient(dim=4, x0=0.5),
    QuadraticGradient(dim=30, x0=1.0, alpha=0.7, total_time=0.5),
]


@pytest.mark.parametrize("eq", EXACT, ids=lambda eq: f"{eq.kind}-{eq.dim}")
def test_exact_solution_solves_its_pde(eq):
    t, x = points(eq)
    scale = eq.exact_solution(t, x).abs().max().item()
    assert residual(eq, t, x).abs().max().item() < 1e-11 * max(scale, 1.0)
    assert torch.allclose(eq.exact_solution(eq.total_time, x), eq.terminal(x), rtol=1e-13, atol=0)


@pytest.mark.parametrize("eq", [eq for eq in EXACT if isinstance(eq, (BlackScholesBarenblatt, BurgersType))],
                         ids=lambda eq: f"{eq.kind}-{eq.dim}")
def test_the_check_catches_a_driver_fed_grad_u_instead_of_sigma_grad_u(eq):
    """Where f depends on z and sigma is not 1, passing grad u for Z leaves a residual."""
    t, x = points(eq)
    assert residual(eq, t, x, scale_z=False).abs().max().item() > 1e-3


def test_black_scholes_barenblatt_ports_with_x_times_z_are_off():
    """The driver r (u - sum x_i z_i) (Z = sigma^T grad u taken for grad u) does not solve the PDE; ours does."""
    eq = BlackScholesBarenblatt(dim=4)
    t, x = points(eq)
    t, x = t.requires_grad_(True), x.requires_grad_(True)
    value, generated, grad = generator_and_gradient(eq, t, x, eq.exact_solution)
    z = eq.sigma * x * grad
    ported = -eq.rate * (value - (x * z).sum(-1))
    assert (generated + ported).abs().max().item() > 1e-2
    assert (generated + eq.driver(t, x, value, z)).abs().max().item() < 1e-11


def test_exact_values_by_hand():
    bsb = BlackScholesBarenblatt(dim=100)
    x0 = torch.tensor(bsb.x_start, **T64)
    assert bsb.x_start[:4] == (1.0, 0.5, 1.0, 0.5)
    assert bsb.exact_solution(0.0, x0).item() == pytest.approx(62.5 * math.exp(0.21), rel=1e-14)
    burgers = BurgersType(x0=0.5)
    assert burgers.dim == 50 and burgers.process.sigma == 50.0
    assert burgers.exact_solution(0.0, torch.full((50,), 0.5, **T64)).item() == pytest.approx(1 / (1 + math.exp(-0.5)))
    rd = ReactionDiffusion(dim=100, x0=0.1)
    assert rd.exact_solution(0.0, torch.full((100,), 0.1, **T64)).item() == pytest.approx(
        1.6 + math.sin(1.0) * math.exp(-0.5), rel=1e-14)
    qg = QuadraticGradient(dim=100, x0=0.5)
    assert qg.exact_solution(0.0, torch.full((100,), 0.5, **T64)).item() == pytest.approx(
        math.sin(1.25 ** 0.4), rel=1e-14)


def test_reaction_diffusion_driver_vanishes_on_the_solution_and_is_capped():
    eq = ReactionDiffusion(dim=3)
    t, x = points(eq)
    u = eq.exact_solution(t, x)
    assert eq.driver(t, x, u, None).abs().max().item() == 0.0
    assert eq.driver(t, x, u + 0.5, None).tolist() == pytest.approx([0.25] * len(t))
    assert eq.driver(t, x, u + 3.0, None).tolist() == pytest.approx([1.0] * len(t))


def test_differing_rates_driver_is_the_pde_nonlinearity():
    """f + mu x . grad u = max(R^b (x . grad u - u), R^l (x . grad u - u)) with z_i = sigma x_i u_{x_i}."""
    eq = DifferingRates(dim=3)
    gen = torch.Generator().manual_seed(2)
    x = 100 + 20 * torch.randn(50, 3, generator=gen, **T64)
    grad = torch.randn(50, 3, generator=gen, **T64)
    u = 30 * torch.randn(50, generator=gen, **T64)
    held = (x * grad).sum(-1)
    f = eq.driver(0.0, x, u, eq.sigma * x * grad)
    expected = torch.maximum(0.06 * (held - u), 0.04 * (held - u)) - 0.06 * held
    assert torch.allclose(f, expected, rtol=1e-12, atol=1e-12)
    assert ((held - u) > 0).any() and ((held - u) < 0).any()  # both branches were exercised


def test_differing_rates_payoff_and_checks():
    eq = DifferingRates(dim=2)
    x = torch.tensor([[100.0, 130.0], [160.0, 10.0], [200.0, 1.0]], **T64)
    assert eq.terminal(x).tolist() == [10.0, 40.0 - 20.0, 80.0 - 100.0]
    with pytest.raises(ValueError, match="rate_borrow"):
        DifferingRates(dim=2, rate_borrow=0.01)
    with pytest.raises(ValueError, match="x0"):
        DifferingRates(dim=2, x0=[100.0, -1.0])
