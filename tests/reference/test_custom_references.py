"""References for problems built from functions: Euler-Maruyama Monte Carlo with step halving, MLP on a
custom process, and the engine's choices."""

from __future__ import annotations

import math

import pytest

import bsde
from bsde.reference import applicable_methods
from bsde.reference.semi_analytic import black_scholes_call

RATE, VOL, STRIKE = 0.05, 0.3, 100.0


def discount(t, x, y, z):
    return -RATE * y


def call(x):
    return (x[..., 0] - STRIKE).relu()


def test_euler_monte_carlo_with_step_halving_covers_black_scholes():
    """A Diffusion with drift r x and sigma vol x is a GBM: its Euler reference must cover Black-Scholes; the
    interval is widened by the bias estimate and the halving stops once that bias is inside it."""
    process = bsde.Diffusion(lambda t, x: RATE * x, lambda t, x: VOL * x)
    eq = bsde.custom_equation(dim=1, x0=100.0, process=process, terminal=call, driver=discount)
    assert applicable_methods(bsde.as_problem(eq)) == ["mc"]  # no exact transition: no mlp
    result = bsde.reference(eq, paths=1 << 17, seed=0)
    truth = black_scholes_call(100.0, STRIKE, RATE, 0.0, VOL, 1.0)
    assert result.ci95[0] <= truth <= result.ci95[1], (result.value, result.ci95, truth)
    details = result.details
    assert details["scheme"] == "euler-maruyama" and details["converged"]
    assert [h["steps"] for h in details["halving"]] == [8 * 2 ** i for i in range(len(details["halving"]))]
    last = details["halving"][-1]
    assert 2 * (abs(last["bias"]) + 2 * last["bias_stderr"]) <= 1.96 * last["stderr"]


def test_an_euler_interval_covers_a_fast_mean_reversion():
    """dX = -5 X dt + 0.3 dW, g = x: E X_1 = e^{-5}. Antithetic pairs make the noise 0, so the interval is the
    bias term alone; widened by |P_512 - P_256| it missed e^{-5} by 2% of its half-width (QA), by twice that not."""
    process = bsde.Diffusion(lambda t, x: -5.0 * x, lambda t, x: 0.3)
    eq = bsde.custom_equation(dim=1, x0=1.0, process=process, terminal=lambda x: x[..., 0],
                              driver=lambda t, x, y, z: 0.0 * y)
    from bsde.reference.monte_carlo import euler_monte_carlo

    result = euler_monte_carlo(eq, paths=1 << 12, seed=0)
    assert result.ci95[0] <= math.exp(-5.0) <= result.ci95[1], (result.value, result.ci95)


def test_euler_bias_is_caught_when_the_steps_are_capped():
    """Capped at 8 steps, a strongly nonlinear drift leaves a bias the check reports (not converged)."""
    process = bsde.Diffusion(lambda t, x: -3.0 * x ** 3, lambda t, x: 0.5)
    eq = bsde.custom_equation(dim=1, x0=1.5, process=process, terminal=lambda x: x[..., 0] ** 2, driver=discount)
    from bsde.reference.monte_carlo import euler_monte_carlo

    capped = euler_monte_carlo(eq, paths=1 << 16, seed=1, max_steps=8)
    assert not capped.details["converged"] and capped.details["discretisation_bias"] > 0
    assert capped.ci95[1] - capped.ci95[0] > 2 * 1.96 * capped.stderr  # widened by the bias


def test_mlp_on_a_custom_gbm_matches_monte_carlo_for_a_linear_driver():
    """MLP uses the process's exact transition; on f = -r y it must agree with the Monte Carlo price."""
    eq = bsde.custom_equation(dim=2, x0=100.0, process=bsde.GBM(RATE, [0.2, 0.3], [[1.0, 0.5], [0.5, 1.0]]),
                              terminal=lambda x: (x.amax(-1) - STRIKE).relu(), driver=discount)
    mc = bsde.reference(eq, "mc", paths=1 << 18)
    mlp = bsde.reference(eq, "mlp", paths=6)
    assert abs(mlp.value - mc.value) <= 4 * math.hypot(mlp.stderr, mc.stderr), (mlp.value, mc.value)


def test_a_nonlinear_custom_driver_gets_mlp_and_a_z_driver_gets_none():
    process = bsde.GBM(RATE, 0.2)
    y_driver = bsde.custom_equation(dim=2, x0=100.0, process=process, terminal=lambda x: x.amin(-1),
                                    driver=lambda t, x, y, z: -0.02 * y - 0.1 * y.clamp(max=50.0) * 0.01)
    assert applicable_methods(bsde.as_problem(y_driver)) == ["mlp"]
    z_driver = bsde.custom_equation(dim=2, x0=100.0, process=process, terminal=lambda x: x.amin(-1),
                                    driver=lambda t, x, y, z: -z.abs().sum(-1))
    with pytest.raises(bsde.ProblemError, match="no reference method applies"):
        bsde.reference(z_driver)
    with pytest.raises(bsde.ProblemError, match=r"method 'mc' does not apply .*\(the driver is not -r y\)"):
        bsde.reference(z_driver, "mc")


def test_semi_analytic_max_call_with_per_asset_dividends_and_its_limits():
    """Independent assets with their own vols and dividends: the quadrature lies in the Monte Carlo interval;
    an identity matrix counts as independent, a correlated matrix is refused."""
    base = {"equation.dim": 3, "equation.vol": [0.15, 0.3, 0.2], "equation.dividend": [0.0, 0.04, 0.02],
            "equation.x0": [100.0, 95.0, 105.0]}
    problem = bsde.load_problem("max_call", base)
    semi = bsde.reference(problem, "semi-analytic")
    mc = bsde.reference(problem, "mc", paths=1 << 18, seed=3)
    assert mc.ci95[0] <= semi.value <= mc.ci95[1], (semi.value, mc.ci95)
    identity = [[1.0 if i == j else 0.0 for j in range(3)] for i in range(3)]
    same = bsde.reference(bsde.load_problem("max_call", {**base, "equation.correlation": identity}), "semi-analytic")
    assert same.value == semi.value
    correlated = [[1.0, 0.2, 0.0], [0.2, 1.0, 0.0], [0.0, 0.0, 1.0]]
    with pytest.raises(bsde.ProblemError, match="applicable: mc, mlp"):
        bsde.reference(bsde.load_problem("max_call", {**base, "equation.correlation": correlated}), "semi-analytic")
