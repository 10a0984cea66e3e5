"""Closed forms against Monte Carlo (independent: exact GBM sampling of the declared payoff) and against
the separate Black-Scholes formula of bsde.reference.semi_analytic; declarations that do not fit are refused."""

import math

import pytest
import torch

import bsde
from bsde.closed_forms import (BlackScholesCall, BlackScholesPut, DigitalCall, DigitalPut, ExchangeOption,
                               GeometricBasketCall, GeometricBasketPut, from_mapping)
from bsde.errors import ProblemError
from bsde.reference.semi_analytic import black_scholes_call

CORRELATION = [[1.0, 0.3, 0.2, 0.1, 0.0], [0.3, 1.0, 0.4, 0.2, 0.1], [0.2, 0.4, 1.0, 0.3, 0.2],
               [0.1, 0.2, 0.3, 1.0, 0.4], [0.0, 0.1, 0.2, 0.4, 1.0]]
VOLS = [0.1, 0.2, 0.3, 0.25, 0.15]
RATE = 0.05


def discounted(rate):
    return lambda t, x, y, z: -rate * y


def basket(form, payoff, **market):
    process = bsde.GBM(market.get("drift", RATE), VOLS, market.get("correlation", CORRELATION),
                       market.get("dividend", [0.0, 0.01, 0.02, 0.0, 0.03]))
    return bsde.custom_equation(dim=5, x0=[100.0, 95.0, 105.0, 90.0, 110.0], process=process, terminal=payoff,
                                driver=discounted(RATE), closed_form=form)


def geometric(x):
    return x.log().mean(-1).exp()


@pytest.mark.parametrize("form, payoff", [
    (GeometricBasketCall(100.0), lambda x: (geometric(x) - 100.0).clamp(min=0)),
    (GeometricBasketPut(100.0), lambda x: (100.0 - geometric(x)).clamp(min=0)),
], ids=["call", "put"])
def test_geometric_basket_closed_form_inside_the_monte_carlo_interval(form, payoff):
    """Within 4 standard errors (a false failure once in 16,000 seeds; 95% intervals miss one seed in 20)."""
    eq = basket(form, payoff)
    closed = bsde.reference(eq)
    assert closed.method == "closed-form"
    mc = bsde.reference(eq, "mc", paths=1 << 18, seed=1)
    assert abs(mc.value - closed.value) <= 4 * mc.stderr, (closed.value, mc.value, mc.stderr)
    assert mc.stderr < 0.0025 * closed.value  # tight enough to mean something


def test_geometric_basket_put_call_parity_and_uniform_correlation():
    """C - P = e^{-rT} (E G_T - K) with E G_T = e^{m + s^2/2}; the O(d) uniform path equals the matrix path."""
    rho = 0.3
    matrix = [[1.0 if i == j else rho for j in range(5)] for i in range(5)]
    process_u, process_m = bsde.GBM(RATE, VOLS, rho), bsde.GBM(RATE, VOLS, matrix)
    x0 = (100.0, 95.0, 105.0, 90.0, 110.0)
    call_u = GeometricBasketCall(100.0).value(process_u, x0, 1.0, RATE)
    assert call_u == pytest.approx(GeometricBasketCall(100.0).value(process_m, x0, 1.0, RATE), rel=1e-12)
    put = GeometricBasketPut(100.0).value(process_u, x0, 1.0, RATE)
    m = sum(math.log(x) + (RATE - 0.5 * v * v) for x, v in zip(x0, VOLS)) / 5
    s2 = ((1 - rho) * sum(v * v for v in VOLS) + rho * sum(VOLS) ** 2) / 25
    assert call_u - put == pytest.approx(math.exp(-RATE) * (math.exp(m + s2 / 2) - 100.0), rel=1e-12)


@pytest.mark.parametrize("strike, dividend", [(95.0, 0.0), (110.0, 0.03)])
def test_one_asset_black_scholes_matches_the_other_implementation(strike, dividend):
    process = bsde.GBM(RATE, 0.25, dividend=dividend)
    call = BlackScholesCall(strike).value(process, (100.0,), 2.0, RATE)
    assert call == pytest.approx(black_scholes_call(100.0, strike, RATE, dividend, 0.25, 2.0), rel=1e-12)
    put = BlackScholesPut(strike).value(process, (100.0,), 2.0, RATE)  # parity
    assert call - put == pytest.approx(100.0 * math.exp(-dividend * 2.0) - strike * math.exp(-RATE * 2.0), rel=1e-10)


@pytest.mark.parametrize("strike, dividend, horizon", [(95.0, 0.0, 1.0), (110.0, 0.03, 2.0)])
def test_a_digital_is_minus_the_strike_derivative_of_the_call(strike, dividend, horizon):
    """cash-or-nothing = -dC/dK (the other Black-Scholes implementation, central differences); put + call = cash
    e^{-rT}; the declared payoff matches a file's comparison terminal, and the reference engine takes it."""
    process = bsde.GBM(RATE, 0.25, dividend=dividend)
    h = 1e-4 * strike
    slope = (black_scholes_call(100.0, strike - h, RATE, dividend, 0.25, horizon)
             - black_scholes_call(100.0, strike + h, RATE, dividend, 0.25, horizon)) / (2 * h)
    call = DigitalCall(strike, cash=10.0).value(process, (100.0,), horizon, RATE)
    assert call == pytest.approx(10.0 * slope, rel=1e-6)
    put = DigitalPut(strike, cash=10.0).value(process, (100.0,), horizon, RATE)
    assert call + put == pytest.approx(10.0 * math.exp(-RATE * horizon), rel=1e-12)
    problem = bsde.problem_from_dict({"equation": {
        "kind": "custom", "dim": 1, "x0": 100.0, "total_time": horizon, "params": {"K": strike, "r": RATE},
        "process": {"kind": "gbm", "drift": RATE, "vol": 0.25, "dividend": dividend},
        "terminal": "10 * (x[0] > K)", "driver": "-r * y", "closed_form": {"name": "digital_call", "strike": strike,
                                                                           "cash": 10}}})
    found = bsde.reference(problem)
    assert found.method == "closed-form" and found.value == pytest.approx(call, rel=1e-12)
    assert from_mapping({"name": "digital_put", "strike": strike}) == DigitalPut(strike, 1.0)  # cash defaults to 1


def test_margrabe_inside_the_monte_carlo_interval():
    process = bsde.GBM(0.03, [0.2, 0.35], [[1.0, 0.6], [0.6, 1.0]], dividend=[0.01, 0.02])
    eq = bsde.custom_equation(dim=2, x0=[100.0, 90.0], process=process, terminal=lambda x: (x[..., 0] - x[..., 1]).relu(),
                              driver=discounted(RATE), closed_form={"name": "exchange_option"})
    closed = bsde.reference(eq)
    mc = bsde.reference(eq, "mc", paths=1 << 18, seed=2)
    assert closed.method == "closed-form" and mc.ci95[0] <= closed.value <= mc.ci95[1]
    # rho = 1 and equal vols: the spread is deterministic, the option worth its discounted forward gap
    same = bsde.GBM(0.03, 0.2, [[1.0, 0.999999], [0.999999, 1.0]])
    value = ExchangeOption().value(same, (100.0, 90.0), 1.0, RATE)
    assert value == pytest.approx(math.exp(-RATE) * 10.0 * math.exp(0.03), rel=1e-3)


def test_a_declaration_that_does_not_fit_is_refused():
    wrong_payoff = basket(GeometricBasketPut(100.0), lambda x: (100.0 - x.mean(-1)).clamp(min=0))
    with pytest.raises(ProblemError, match="differs from the terminal condition"):
        bsde.reference(wrong_payoff)
    nonlinear = bsde.custom_equation(dim=1, x0=100.0, process=bsde.GBM(RATE, 0.2),
                                     terminal=lambda x: (x[..., 0] - 100).relu(), driver=lambda t, x, y, z: -RATE * y * y,
                                     closed_form=BlackScholesCall(100.0))
    with pytest.raises(ProblemError, match="driver must be -r y"):
        bsde.reference(nonlinear)
    with pytest.raises(ProblemError, match="closed_form: black_scholes_call needs a gbm process, not Diffusion"):
        bsde.custom_equation(dim=1, x0=100.0, process=bsde.Diffusion(lambda t, x: 0.05 * x, lambda t, x: 0.2 * x),
                             terminal=lambda x: (x[..., 0] - 100).relu(), driver=discounted(RATE),
                             closed_form=BlackScholesCall(100.0))  # refused when built: no torch needed to tell
    with pytest.raises(ValueError, match="needs dim = 2"):
        basket(ExchangeOption(), lambda x: x[..., 0])


@pytest.mark.parametrize("spec, message", [
    ({"name": "geometric_basket_cal", "strike": 1}, "did you mean 'geometric_basket_call'"),
    ({"name": "geometric_basket_call"}, "strike: missing"),
    ({"name": "exchange_option", "strike": 1}, "strike: unknown key"),
    ({"name": "geometric_basket_call", "strike": "a"}, "takes numbers"),
    ({"name": "geometric_basket_call", "strike": -1}, "strike: expected a finite number >= 0"),
    ({"name": "digital_call", "cash": 1}, "strike: missing"),
    ({"name": "digital_call", "strike": 0}, "strike: expected a finite number > 0"),
    ("geometric_basket_call", "expected a mapping with a 'name'"),
])
def test_from_mapping_errors_name_the_key(spec, message):
    with pytest.raises(ValueError, match=message):
        from_mapping(spec)


def test_payoffs_act_on_batches():
    x = 50 + 100 * torch.rand(4, 3, 5, dtype=torch.float64)
    assert GeometricBasketCall(100.0).payoff(x).shape == (4, 3)
    assert ExchangeOption().payoff(x[..., :2]).shape == (4, 3)


GEOMETRIC_CALL_YAML = """\
equation:
  kind: custom
  dim: 5
  x0: [100.0, 95.0, 105.0, 90.0, 110.0]
  params: {K: 100.0, r: 0.05}
  process:
    kind: gbm
    drift: 0.05
    vol: [0.1, 0.2, 0.3, 0.25, 0.15]
    dividend: [0.0, 0.01, 0.02, 0.0, 0.03]
    correlation: [[1.0, 0.3, 0.2, 0.1, 0.0], [0.3, 1.0, 0.4, 0.2, 0.1], [0.2, 0.4, 1.0, 0.3, 0.2],
                  [0.1, 0.2, 0.3, 1.0, 0.4], [0.0, 0.1, 0.2, 0.4, 1.0]]
  terminal: "relu(exp(mean(log(x))) - K)"
  driver: "-r * y"
  closed_form: {name: geometric_basket_call, strike: 100}
"""


def test_a_problem_file_declares_its_closed_form(tmp_path):
    """From YAML alone: `bsde reference` takes the closed form, and Monte Carlo on the same file agrees."""
    import json

    from typer.testing import CliRunner

    from bsde.cli.app import app

    path = tmp_path / "geometric_call.yaml"
    path.write_text(GEOMETRIC_CALL_YAML)
    runner = CliRunner()
    closed = runner.invoke(app, ["reference", str(path), "--json", "--quiet"])
    assert closed.exit_code == 0, closed.output
    value = json.loads(closed.stdout)
    assert value["method"] == "closed-form"
    assert value["value"] == pytest.approx(GeometricBasketCall(100.0).value(
        bsde.GBM(RATE, VOLS, CORRELATION, [0.0, 0.01, 0.02, 0.0, 0.03]), (100.0, 95.0, 105.0, 90.0, 110.0), 1.0, RATE))
    mc = runner.invoke(app, ["reference", str(path), "--json", "--quiet", "--method", "mc", "--paths", "262144"])
    low, high = json.loads(mc.stdout)["ci95"]
    assert low <= value["value"] <= high
    shown = runner.invoke(app, ["show", str(path)])
    assert "closed_form:\n    name: geometric_basket_call\n    strike: 100.0" in shown.stdout  # round trip
    wrong = runner.invoke(app, ["reference", str(path), "--set", "equation.closed_form.name=geometric_basket_put"])
    assert wrong.exit_code == 2 and f"{path}: equation.closed_form: cannot be used: the declared geometric_basket_put " \
        "payoff" in wrong.output
    solve = runner.invoke(app, ["solve", str(path), "--set", "equation.closed_form.name=geometric_basket_put",
                                "--set", "solver.iterations=2", "--threads", "1", "--json"])
    assert solve.exit_code == 2 and f"{path}: equation.closed_form: cannot be used" in solve.output  # before training
    assert solve.stdout == ""
    checked = runner.invoke(app, ["reference", str(path), "--set", "equation.closed_form.name=geometric_basket_put",
                                  "--method", "mc", "--paths", "4096", "--json", "--quiet"])
    assert checked.exit_code == 0 and json.loads(checked.stdout)["method"] == "mc"  # Monte Carlo to compare with
    typo = runner.invoke(app, ["show", str(path), "--set", "equation.closed_form.name=geometric_call"])
    assert typo.exit_code == 2 and "equation.closed_form.name (from --set): unknown closed form" in typo.output
