"""What a 402 tells a client: the tokens and credits it states are the ones the hold was computed for."""

from __future__ import annotations

from decimal import Decimal

from gateway.core.billing import insufficient_message, plan_hold
from gateway.core.money import TokenPrices, worst_case_price_micros
from gateway.core.posting import InsufficientCredit

PRICES = TokenPrices(Decimal("0.0000005"), Decimal("0.0000015"), 4096)  # the demo model's
MARKUP = Decimal(2)


def test_without_max_tokens_the_message_states_what_the_smallest_hold_covers():
    plan = plan_hold(PRICES, 100, None, MARKUP)  # the client set no max_tokens: a flexible hold
    floor = plan.min_micros
    assert floor == worst_case_price_micros(PRICES, 100, 1, MARKUP)
    text = insufficient_message("demo", plan, InsufficientCredit(floor - 1, 0, floor), PRICES, MARKUP)
    assert "4096 output tokens" not in text.split(";")[1]  # not "needs X credits (... + up to 4096 output tokens)"
    assert f"needs at least 0.{floor:03d} credits (100 prompt tokens + 1 output token;" in text, text
    assert "max_tokens was not set" in text and "up to 4096 output tokens" in text, text


def test_with_max_tokens_the_message_states_them():
    plan = plan_hold(PRICES, 100, 50, MARKUP)
    text = insufficient_message("demo", plan, InsufficientCredit(0, 0, plan.amount_micros), PRICES, MARKUP)
    assert "(100 prompt tokens + up to 50 output tokens)" in text, text
