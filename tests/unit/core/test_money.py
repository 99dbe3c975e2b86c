"""Money arithmetic: rounding up, the profit invariant, credit conversions, hold sizing."""

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.core.money import (
    TokenPrices,
    affordable_output_tokens,
    credits_to_micros,
    micros_to_credits,
    to_decimal,
    usd_to_micros_ceil,
    user_price_micros,
    worst_case_price_micros,
)

costs = st.decimals(min_value=0, max_value=1000, places=12, allow_nan=False, allow_infinity=False)
markups = st.decimals(min_value=1, max_value=20, places=4, allow_nan=False, allow_infinity=False)
micros = st.integers(min_value=-(10**15), max_value=10**15)


@given(costs, markups)
def test_user_price_is_rounded_up_and_never_below_cost(cost, markup):
    price = user_price_micros(cost, markup)
    assert isinstance(price, int)
    exact = cost * markup * 1_000_000
    assert price >= exact and price - exact < 1  # the smallest integer not below the exact price
    assert price >= usd_to_micros_ceil(cost)  # profit invariant: user price >= provider cost (both in micros)


def test_known_prices():
    assert user_price_micros(Decimal("0.0000066"), Decimal("2.0")) == 14  # 13.2 micros rounds up
    assert user_price_micros(Decimal("0"), Decimal("2")) == 0
    assert user_price_micros(Decimal("0.000001"), Decimal("1")) == 1
    assert usd_to_micros_ceil(Decimal("0.0000066")) == 7
    with pytest.raises(ValueError):
        user_price_micros(Decimal("-0.1"), Decimal("2"))


@given(micros)
def test_credits_round_trip(amount):
    assert credits_to_micros(micros_to_credits(amount)) == amount


def test_credit_strings():
    assert micros_to_credits(1_000_000) == "1000"
    assert micros_to_credits(1500) == "1.5"
    assert micros_to_credits(1) == "0.001"
    assert micros_to_credits(-2500) == "-2.5"
    assert credits_to_micros("12") == 12_000
    for bad in ("0.0001", "abc", "nan", "inf", ""):
        with pytest.raises(ValueError):
            credits_to_micros(bad)


def test_float_boundary_uses_shortest_repr():
    assert to_decimal(6.6e-06) == Decimal("0.0000066")


prices = st.builds(
    TokenPrices,
    input_usd=st.decimals(min_value=0, max_value=Decimal("0.001"), places=10),
    output_usd=st.decimals(min_value=Decimal("0.0000000001"), max_value=Decimal("0.001"), places=10),
    max_output_tokens=st.just(None),
)


@given(prices, st.integers(0, 100_000), st.integers(0, 10**9), markups)
def test_affordable_tokens_fit_and_are_maximal(p, prompt, available, markup):
    tokens = affordable_output_tokens(p, prompt, available, markup)
    if tokens < 0:
        assert worst_case_price_micros(p, prompt, 0, markup) > available
        return
    assert worst_case_price_micros(p, prompt, tokens, markup) <= available
    assert worst_case_price_micros(p, prompt, tokens + 1, markup) > available
