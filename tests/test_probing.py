"""Solver-facing flags: derived by probing the driver, and every declared flag checked against its driver."""

from __future__ import annotations

import math

import pytest
import torch

import bsde
from bsde.equations import EQUATIONS, AllenCahn, HJB, MaxCall
from bsde.errors import ProblemError
from bsde.probing import (DriverFlags, LinearInZ, declared_flags, linear_driver, payoff_jumps, probe_driver,
                          verify_flags, z_drift_coefficients)


def custom(driver, process=None, dim=3):
    return bsde.custom_equation(dim=dim, x0=1.0, process=process or bsde.BrownianMotion(math.sqrt(2)),
                                terminal=lambda x: x.square().sum(-1), driver=driver)


@pytest.mark.parametrize("driver, expected", [
    (None, DriverFlags(False, False, 0.0, None)),
    (lambda t, x, y, z: -0.07 * y, DriverFlags(True, False, 0.07, None)),
    (lambda t, x, y, z: 0.0 * y, DriverFlags(False, False, 0.0, None)),
    (lambda t, x, y, z: y - y ** 3, DriverFlags(True, False, None, None)),
    (lambda t, x, y, z: -0.05 * y + 0.01 * t, DriverFlags(True, False, None, None)),  # affine, not linear
    (lambda t, x, y, z: -x.sum(-1) * 0.01 * y, DriverFlags(True, False, None, None)),  # rate depends on x
    (lambda t, x, y, z: -1.5 * z.square().sum(-1), DriverFlags(False, True, None, 3.0)),
    (lambda t, x, y, z: -0.5 * z.square().sum(-1) + t * z.sum(-1) + x.sum(-1), DriverFlags(False, True, None, 1.0)),
    (lambda t, x, y, z: -(1 + t) * z.square().sum(-1), DriverFlags(False, True, None, None)),  # c depends on t
    (lambda t, x, y, z: -z.norm(dim=-1), DriverFlags(False, True, None, None)),
    (lambda t, x, y, z: -0.5 * z.square().sum(-1) - y, DriverFlags(True, True, None, 1.0)),
])
def test_probed_flags(driver, expected):
    assert custom(driver).driver_flags == expected


@pytest.mark.parametrize("driver, expected", [
    (lambda t, x, y, z: 0.3 * z.sum(-1) - 0.05 * y, LinearInZ(0.05, (0.3, 0.3, 0.3), False, False)),
    (lambda t, x, y, z: z @ torch.tensor([0.1, -0.2, 0.4], dtype=z.dtype) + 0.7, LinearInZ(0.0, (0.1, -0.2, 0.4),
                                                                                          True, False)),
    (lambda t, x, y, z: 0.3 * z.sum(-1) - 0.05 * y + t * t, LinearInZ(0.05, (0.3, 0.3, 0.3), True, False)),
    (lambda t, x, y, z: 0.3 * z.sum(-1) + x[..., 1].sin(), LinearInZ(0.0, (0.3, 0.3, 0.3), True, True)),
    (lambda t, x, y, z: 0.3 * z.sum(-1) - 0.05 * t * y, None),          # the rate changes with t
    (lambda t, x, y, z: 0.3 * z.sum(-1) * (1 + x[..., 0]), None),        # m changes with x
    (lambda t, x, y, z: 0.3 * z.norm(dim=-1) + 0.1, None),               # not linear in z
    (lambda t, x, y, z: 0.1 - 0.05 * y, None),                           # no z
])
def test_linear_driver_finds_rate_coefficients_and_source(driver, expected):
    """f = -r y + m . z + k(t, x): r and m constants, k's presence and whether it changes with x."""
    found = linear_driver(custom(driver))
    assert (found is None) == (expected is None)
    if expected is not None:
        assert found.rate == pytest.approx(expected.rate, abs=1e-12) and found.m == pytest.approx(expected.m)
        assert (found.source, found.source_uses_x) == (expected.source, expected.source_uses_x)


@pytest.mark.parametrize("driver, expected", [
    (lambda t, x, y, z: 0.3 * z.sum(-1) - 0.05 * t * y, (0.3, 0.3, 0.3)),          # any f(t, x, y, 0)
    (lambda t, x, y, z: y - y ** 3 + z @ torch.tensor([0.1, -0.2, 0.4], dtype=z.dtype) + x.sum(-1).cos(),
     (0.1, -0.2, 0.4)),
    (lambda t, x, y, z: 0.3 * z.sum(-1) * (1 + t), None),                          # m changes with t
    (lambda t, x, y, z: y * z.sum(-1), None),                                      # m changes with y
    (lambda t, x, y, z: -0.5 * z.square().sum(-1) + z.sum(-1), None),              # not linear in z
])
def test_z_drift_coefficients_need_only_a_constant_m(driver, expected):
    """f = f(t, x, y, 0) + m . z with a constant m, whatever f(t, x, y, 0) is."""
    found = z_drift_coefficients(custom(driver))
    assert found == (None if expected is None else pytest.approx(expected))


def bump(t):
    """0 at the grid times k T / 4 of T = 1, 2 at t = 0.6 (a hat of half-width 0.1)."""
    return 20 * torch.relu(0.1 - (torch.as_tensor(t, dtype=torch.float64) - 0.6).abs())


def test_what_changes_between_grid_times_is_seen():
    """The probe times are not the grid k T / 4, where these drivers look like -r y + m . z (QA: their source was
    dropped, the rate and m read as constants, the x-dependence missed; the twin and reference were 9-10% off)."""
    c = torch.tensor([0.3, -0.5, 0.8], dtype=torch.float64)
    periodic = linear_driver(custom(lambda t, x, y, z: -0.05 * y + z @ c.to(z.dtype) + torch.sin(8 * math.pi * torch.as_tensor(t, dtype=torch.float64)) ** 2))
    assert periodic is not None and periodic.source and not periodic.source_uses_x
    between = linear_driver(custom(lambda t, x, y, z: z @ c.to(z.dtype) + 0.2 + bump(t) * x.square().sum(-1)))
    assert between is not None and between.source and between.source_uses_x
    assert custom(lambda t, x, y, z: -(0.03 + bump(t)) * y).driver_flags.discount_rate is None  # not a constant r
    assert linear_driver(custom(lambda t, x, y, z: (1 + bump(t)) * (z @ c.to(z.dtype)))) is None
    assert z_drift_coefficients(custom(lambda t, x, y, z: (1 + bump(t)) * (z @ c.to(z.dtype)))) is None


def test_flags_given_skip_probing_but_are_checked_before_a_solve():
    eq = bsde.custom_equation(dim=2, x0=1.0, process=bsde.BrownianMotion(1.0), terminal=lambda x: x.sum(-1),
                              driver=lambda t, x, y, z: y, flags=DriverFlags(uses_y=False, uses_z=False))
    assert not eq.driver_uses_y  # as given
    with pytest.raises(ProblemError, match="driver_uses_y is False but the driver changes with y"):
        bsde.solve(eq, solver={"iterations": 1})
    with pytest.raises(ProblemError, match="driver_uses_y"):
        bsde.reference(eq)


def _defaults(kind: str):
    """The kind's equation at a small dimension (None where the kind has required fields)."""
    try:
        return EQUATIONS[kind](dim=3)
    except Exception:  # noqa: BLE001 - kinds with required fields (e.g. custom) are probed through their files
        return None


@pytest.mark.parametrize("kind", sorted(EQUATIONS))
def test_every_built_in_kind_declares_what_its_driver_does(kind):
    """A declared flag that would change the answer (False where probing finds a dependence, a wrong r or c)
    fails; the declared flags also agree with the probed ones where probing proves them."""
    eq = _defaults(kind)
    if eq is None:
        pytest.skip(f"{kind} has required fields")
    verify_flags(eq)
    declared, probed = declared_flags(eq), probe_driver(eq)
    assert declared.uses_y == probed.uses_y or declared.uses_y  # conservative is allowed, a miss is not
    assert declared.uses_z == probed.uses_z or declared.uses_z
    assert declared.discount_rate == pytest.approx(probed.discount_rate) if declared.linear else True


@pytest.mark.parametrize("name", sorted(bsde.shipped_problems()))
def test_every_shipped_problem_passes_the_check(name):
    small = {} if bsde.load_problem(name).equation.dim <= 10 else {"equation.dim": 3}  # basket_put fixes dim 5
    verify_flags(bsde.load_problem(name, small).equation)


class _SaysNoY(AllenCahn):
    @property
    def driver_uses_y(self) -> bool:  # wrong: y - y^3 uses y (the solver would sum f with y = 0)
        return False


class _WrongRate(MaxCall):
    @property
    def discount_rate(self) -> float:  # wrong: f = -rate y
        return self.rate + 0.01


class _WrongHessian(HJB):
    @property
    def z_hessian(self) -> float:
        return 2.0 * self.lam


class _SaysNoZ(HJB):
    @property
    def driver_uses_z(self) -> bool:
        return False


@pytest.mark.parametrize("cls, message", [
    (_SaysNoY, "driver_uses_y is False"), (_WrongRate, "driver_is_linear says f = -0.06 y, but the driver is -0.05 y"),
    (_WrongHessian, "c = 2"), (_SaysNoZ, "driver_uses_z is False"),
])
def test_a_wrong_declared_flag_stops_the_solve(cls, message):
    with pytest.raises(ProblemError, match=message):
        bsde.solve(cls(dim=2), solver={"iterations": 1, "time_steps": 2})


def test_probing_does_not_depend_on_where_x0_sits():
    eq = bsde.custom_equation(dim=2, x0=[100.0, 50.0], process=bsde.GBM(0.05, 0.3), terminal=lambda x: x.amax(-1),
                              driver=lambda t, x, y, z: -0.05 * y)
    assert eq.driver_flags == DriverFlags(True, False, 0.05, None)


def test_a_driver_not_finite_names_the_key_and_a_point():
    """'the driver of custom is not finite' named neither the key nor where (QA): one point is shown."""
    eq = bsde.custom_equation(dim=1, x0=0.0, process=bsde.BrownianMotion(1.0), terminal=lambda x: x[..., 0],
                              driver=lambda t, x, y, z: 1.0 / x[..., 0])
    with pytest.raises(ProblemError, match=r"^equation.driver of 'custom': not finite at the probe points \(t and "
                                           r"x along its paths, .*\): f = inf at t = 0, x = \[0\], y = "):
        probe_driver(eq)


@pytest.mark.parametrize("terminal, jumps", [
    ("where(x[0] > K, 1.0, 0.0)", True),  # a digital: gradient 0 wherever autograd looks
    ("10 * (x[0] > K)", True),
    ("where(x[0] > K, x[0], 0 * x[0])", True),  # asset-or-nothing: slope 1 and a jump of K
    ("relu(x[0] - K)", False),  # a kink is no jump
    ("relu(max(x) - K)", False),
    ("exp(mean(log(x))) + sum(x ** 2) / 100", False),
])
def test_payoff_jumps(terminal, jumps):
    problem = bsde.problem_from_dict({"equation": {
        "kind": "custom", "dim": 2, "x0": 100.0, "params": {"K": 105.0, "r": 0.05}, "terminal": terminal,
        "driver": "-r * y", "process": {"kind": "gbm", "drift": 0.05, "vol": 0.2, "correlation": 0.5}}})
    assert payoff_jumps(problem.equation) is jumps
