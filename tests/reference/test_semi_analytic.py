import math

import numpy as np
import pytest

import bsde
from bsde.errors import ProblemError
from bsde.reference.semi_analytic import black_scholes_call, max_call_independent, semi_analytic


def test_black_scholes_textbook_value():
    # Hull's example: S = K = 100, r = 5%, vol 20%, T = 1 -> 10.4506
    assert black_scholes_call(100, 100, 0.05, 0.0, 0.2, 1.0) == pytest.approx(10.450583572185565, rel=1e-12)


def test_black_scholes_put_call_parity_with_dividend():
    s, k, r, q, v, t = 95.0, 105.0, 0.03, 0.02, 0.3, 0.7
    call = black_scholes_call(s, k, r, q, v, t)
    put_via_symmetry = black_scholes_call(k, s, q, r, v, t)  # put-call symmetry: P(S, K, r, q) = C(K, S, q, r)
    assert call - put_via_symmetry == pytest.approx(s * math.exp(-q * t) - k * math.exp(-r * t), abs=1e-10)


@pytest.mark.parametrize("strike", [80.0, 100.0, 130.0])
def test_one_asset_is_black_scholes(strike):
    price, _ = max_call_independent(np.array([100.0]), np.array([0.25]), strike, 0.04, 0.01, 1.5)
    assert price == pytest.approx(black_scholes_call(100.0, strike, 0.04, 0.01, 0.25, 1.5), rel=1e-8)


def test_zero_strike_one_asset_is_discounted_forward():
    price, _ = max_call_independent(np.array([100.0]), np.array([0.2]), 0.0, 0.05, 0.02, 1.0)
    assert price == pytest.approx(100.0 * math.exp(-0.02), rel=1e-8)


def test_two_identical_assets_by_direct_quadrature():
    # P(max <= m) = Phi(d)^2: compare with the same integral done on the linear scale
    from scipy import integrate, special
    x, v, k, r, t = 100.0, 0.3, 110.0, 0.05, 1.0
    mu = math.log(x) + (r - 0.5 * v * v) * t

    def tail(m):
        return 1.0 - special.ndtr((math.log(m) - mu) / (v * math.sqrt(t))) ** 2

    direct = math.exp(-r * t) * integrate.quad(tail, k, 2000.0, epsrel=1e-12, limit=400)[0]
    price, _ = max_call_independent(np.array([x, x]), np.array([v, v]), k, r, 0.0, t)
    assert price == pytest.approx(direct, rel=1e-8)


def test_default_max_call_price():
    result = semi_analytic(bsde.load_problem("max_call").equation)
    assert result.value == pytest.approx(67.3397, abs=5e-4)
    assert result.stderr is None and result.method == "semi-analytic"


def test_rejects_correlation_and_other_payoffs():
    with pytest.raises(ProblemError, match="correlation"):
        semi_analytic(bsde.load_problem("max_call", {"equation.correlation": 0.2}).equation)
    with pytest.raises(ProblemError, match="max_call"):
        semi_analytic(bsde.load_problem("hjb").equation)
