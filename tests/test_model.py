"""The BSDE march: Euler and trapezoid schemes on cases with a known answer, and Z_N = sigma^T grad g."""

import math

import pytest
import torch

import bsde
from bsde.errors import ProblemError
from bsde.model import DeepBSDE, terminal_z
from bsde.simulation import simulate_paths
from bsde.trainer import train


def model_for(problem: bsde.Problem, scheme: str, y0: float) -> DeepBSDE:
    eq = problem.equation
    model = DeepBSDE(eq, problem.solver.time_steps, [4], dtype=torch.float64, scheme=scheme)
    model.reset_parameters(torch.Generator().manual_seed(0), (y0, y0))
    return model


@pytest.mark.parametrize("scheme, growth", [("euler", lambda h: 1 + h), ("trapezoid", lambda h: 1 + h + h * h / 2)])
def test_linear_driver_with_zero_z_is_the_scheme_s_growth_factor(scheme, growth):
    """f = -r y, Z = 0: Y_N = y0 (1 + r dt)^N (Euler) or y0 (1 + r dt + (r dt)^2 / 2)^N (Heun's trapezoid)."""
    steps, rate = 8, 0.4
    problem = bsde.load_problem("max_call", {"equation.dim": 3, "equation.rate": rate, "solver.time_steps": steps})
    model = model_for(problem, scheme, 2.0)
    paths = simulate_paths(problem.equation.process, problem.equation.x_start, 1.0, steps, 5,
                           generator=torch.Generator().manual_seed(1))
    z = torch.zeros(5, steps, 3, dtype=torch.float64)
    y_end = model.march(paths.x, paths.dw, paths.dt, z)
    torch.testing.assert_close(y_end, torch.full((5,), 2.0 * growth(rate / steps) ** steps, dtype=torch.float64))


def test_trapezoid_is_second_order_where_euler_is_first():
    """Against e^{rT}: halving dt divides Euler's error by about 2 and the trapezoid's by about 4."""
    problem = bsde.load_problem("max_call", {"equation.dim": 1, "equation.rate": 1.0})
    errors = {}
    for scheme in ("euler", "trapezoid"):
        for steps in (10, 20):
            model = DeepBSDE(problem.equation, steps, [2], dtype=torch.float64, scheme=scheme)
            model.reset_parameters(torch.Generator().manual_seed(0), (1.0, 1.0))
            paths = simulate_paths(problem.equation.process, (100.0,), 1.0, steps, 2,
                                   generator=torch.Generator().manual_seed(1))
            y_end = model.march(paths.x, paths.dw, paths.dt, torch.zeros(2, steps, 1, dtype=torch.float64))
            errors[scheme, steps] = abs(y_end[0].item() - math.e)
    assert 1.8 < errors["euler", 10] / errors["euler", 20] < 2.2
    assert 3.6 < errors["trapezoid", 10] / errors["trapezoid", 20] < 4.4
    assert errors["trapezoid", 20] < errors["euler", 20] / 20


def test_terminal_z_is_sigma_times_grad_g_for_hjb():
    problem = bsde.load_problem("hjb", {"equation.dim": 4})
    x = torch.randn(6, 4, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    expected = math.sqrt(2.0) * 2 * x / (1 + x.square().sum(-1, keepdim=True))
    torch.testing.assert_close(terminal_z(problem.equation, x), expected)


def test_terminal_z_of_a_call_is_vol_times_s_above_the_strike():
    """One GBM asset: Z_N = vol S 1{S > K} (sigma(S) = vol S)."""
    problem = bsde.load_problem("max_call", {"equation.dim": 1, "equation.vol": 0.3, "equation.strike": 100.0})
    s = torch.tensor([[80.0], [120.0], [150.0]], dtype=torch.float64)
    torch.testing.assert_close(terminal_z(problem.equation, s), torch.tensor([[0.0], [36.0], [45.0]],
                                                                                dtype=torch.float64))


def digital(terminal):
    return bsde.custom_equation(dim=1, x0=100.0, process=bsde.GBM(drift=0.05, vol=0.2), terminal=terminal,
                                driver=lambda t, x, y, z: -0.05 * y + 0.01 * z.sum(-1))


def test_terminal_z_of_a_payoff_of_comparisons_is_zero():
    """10 * (S > K) records no gradient in torch: its gradient is 0 almost everywhere, not an error."""
    s = torch.tensor([[80.0], [120.0]], dtype=torch.float64)
    z = terminal_z(digital(lambda x: 10.0 * (x[..., 0] > 105.0).to(x.dtype)), s)
    torch.testing.assert_close(z, torch.zeros_like(s))


def test_a_terminal_torch_cannot_differentiate_is_named():
    """Through numpy g changes with x but records no gradient: unknown, not 0."""
    through_numpy = digital(lambda x: torch.from_numpy(x.detach().numpy()[..., 0] ** 2))
    with pytest.raises(ProblemError, match="equation.terminal: torch records no gradient of g"):
        terminal_z(through_numpy, torch.tensor([[80.0], [120.0]], dtype=torch.float64))


def test_trapezoid_uses_terminal_z_where_the_driver_needs_z():
    """HJB with Z_0..Z_{N-1} = 0: Y_N - y0 = dt/2 (lam/2) |Z_N|^2 exactly (the last node's half weight)."""
    problem = bsde.load_problem("hjb", {"equation.dim": 3, "equation.lam": 2.0, "solver.time_steps": 4})
    model = model_for(problem, "trapezoid", 0.5)
    paths = simulate_paths(problem.equation.process, problem.equation.x_start, 1.0, 4, 7,
                           generator=torch.Generator().manual_seed(3))
    y_end = model.march(paths.x, paths.dw, paths.dt, torch.zeros(7, 4, 3, dtype=torch.float64))
    z_end = terminal_z(problem.equation, paths.x[:, -1])
    torch.testing.assert_close(y_end, 0.5 + 0.5 * paths.dt * z_end.square().sum(-1))


def test_controlled_measure_needs_a_control_representation():
    with pytest.raises(bsde.ProblemError, match=r"solver\.measure.*'controlled' needs"):
        bsde.load_problem("allen_cahn", {"solver.measure": "controlled"})
    plain = bsde.load_problem("allen_cahn", {"equation.dim": 2, "solver.iterations": 2})
    settings = plain.solver.model_copy(update={"measure": "controlled"})  # past the file check, in Python
    with pytest.raises(bsde.ProblemError, match="does not apply to 'allen_cahn'"):
        train(plain.equation, settings, generator=torch.Generator().manual_seed(0),
                           device=torch.device("cpu"))
    problem = bsde.load_problem("hjb", {"equation.dim": 2, "solver.measure": "controlled", "solver.iterations": 50,
                                        "solver.time_steps": 4, "solver.log_every": 25})
    result = bsde.solve(problem, seed=0, threads=1)
    assert math.isfinite(result.y0)


def test_the_measure_passed_to_forward_overrides_the_attribute():
    """The trainer's compiled loss passes the measure (torch 2.3's compile missed a change of the attribute)."""
    problem = bsde.load_problem("hjb", {"equation.dim": 3, "solver.time_steps": 4})
    model = DeepBSDE(problem.equation, 4, [5], dtype=torch.float64)
    model.reset_parameters(torch.Generator().manual_seed(0), (0.0, 1.0))
    with torch.no_grad():
        model.z0.fill_(0.3)
    paths = simulate_paths(problem.equation.process, problem.equation.x_start, 1.0, 4, 16,
                           generator=torch.Generator().manual_seed(1))
    plain = model(paths.x, paths.dw, paths.dt)
    model.controlled = True
    steered = model(paths.x, paths.dw, paths.dt)
    assert not torch.allclose(plain, steered)  # the measure matters here
    assert torch.equal(model(paths.x, paths.dw, paths.dt, controlled=False), plain)
    model.controlled = False
    assert torch.equal(model(paths.x, paths.dw, paths.dt, controlled=True), steered)
