"""The Girsanov reference: f = -r y + m . z on a Brownian motion, against closed forms worked out by hand."""

import math

import pytest

import bsde
from bsde.errors import ProblemError
from bsde.reference import applicable_methods
from bsde.reference.girsanov import girsanov


def problem(driver: str, process: dict | None = None, params: dict | None = None, terminal: str = "sum(x ** 2)"):
    return bsde.problem_from_dict({"equation": {
        "kind": "custom", "dim": 10, "x0": 1.0, "total_time": 1.0, "params": params or {"m": 0.5, "r": 0.05},
        "process": process or {"kind": "brownian", "sigma": 0.4}, "terminal": terminal, "driver": driver}})


def exact(m: list[float], r: float = 0.0, sigma: float = 0.4, drift: float = 0.0, x0: float = 1.0) -> float:
    """e^{-rT} E |x0 + (b + sigma m) T + sigma W_T|^2 at T = 1: sum_i (x0 + b + sigma m_i)^2 + d sigma^2."""
    return math.exp(-r) * (sum((x0 + drift + sigma * mi) ** 2 for mi in m) + len(m) * sigma**2)


@pytest.mark.parametrize(("driver", "params", "drift", "expected"), [
    ("m * sum(z)", {"m": 0.5}, 0.0, exact([0.5] * 10)),                        # 16.0
    ("-r * y + m * sum(z)", {"m": 0.5, "r": 0.05}, 0.0, exact([0.5] * 10, r=0.05)),
    ("dot(c, z) - r * y", {"c": [0.1 * i - 0.4 for i in range(10)], "r": 0.02}, 0.3,
     exact([0.1 * i - 0.4 for i in range(10)], r=0.02, drift=0.3)),
])
def test_the_interval_holds_the_closed_form(driver, params, drift, expected):
    p = problem(driver, {"kind": "brownian", "sigma": 0.4, "drift": drift}, params)
    assert applicable_methods(p)[0] == "girsanov"
    result = bsde.reference(p, paths=1 << 18, seed=1)
    assert result.method == "girsanov" and result.ci95[0] < expected < result.ci95[1], (result.ci95, expected)
    assert result.details["rate"] == pytest.approx(params.get("r", 0.0))


@pytest.mark.parametrize(("driver", "process"), [
    ("m * sum(z) * x[0]", None),                                   # the coefficient of z depends on x
    ("m * sum(z) + 0.1", None),                                    # a constant term
    ("m * sum(z) - r * y * y", None),                              # not linear in y
    ("m * norm(z)", None),                                         # not linear in z
    ("m * sum(z)", {"kind": "gbm", "drift": 0.05, "vol": 0.2}),    # not a Brownian motion
])
def test_other_drivers_are_not_girsanov(driver, process):
    assert "girsanov" not in applicable_methods(problem(driver, process))


def test_without_z_it_is_plain_monte_carlo_and_girsanov_says_why():
    assert applicable_methods(problem("-r * y"))[0] == "mc"
    with pytest.raises(ProblemError, match="girsanov applies to a Brownian motion"):
        girsanov(problem("m * norm(z)").equation)
