"""A call's user price is LiteLLM's cost of its usage x markup, rounded up to a micro: checked for each
kind of usage detail LiteLLM's cost calculator knows, against a price computed by hand from the model's
entry in LiteLLM's bundled map. (Audio parts are refused by the gateway's admission rules; its pricing is
checked anyway, so a future allow-list change starts from a known-good price.)"""

from __future__ import annotations

import math
from decimal import Decimal

import litellm
import pytest
from litellm.types.utils import CompletionTokensDetailsWrapper, PromptTokensDetailsWrapper

from gateway.core.billing import price_call
from gateway.core.money import TokenPrices

MARKUP = Decimal("2.0")
NO_TABLE = TokenPrices(Decimal(0), Decimal(0))


def rate(model: str, key: str) -> Decimal:
    return Decimal(str(litellm.model_cost[model][key]))


def charged(model: str, usage: litellm.Usage) -> int:
    response = litellm.ModelResponse(model=model, usage=usage)
    cost = litellm.completion_cost(completion_response=response, model=model)
    return price_call(cost, NO_TABLE, usage.prompt_tokens, usage.completion_tokens, MARKUP).user_price_micros


def by_hand(cost_usd: Decimal) -> int:
    return math.ceil(cost_usd * MARKUP * 1_000_000)


def test_cached_prompt_tokens():
    m = "gpt-4o-mini"
    usage = litellm.Usage(
        prompt_tokens=10_000,
        completion_tokens=500,
        prompt_tokens_details=PromptTokensDetailsWrapper(cached_tokens=8_000),
    )
    expected = (
        2_000 * rate(m, "input_cost_per_token")
        + 8_000 * rate(m, "cache_read_input_token_cost")
        + 500 * rate(m, "output_cost_per_token")
    )
    assert charged(m, usage) == by_hand(expected)


def test_cache_creation_tokens():
    m = "claude-sonnet-4-5"
    usage = litellm.Usage(
        prompt_tokens=3_000, completion_tokens=200, cache_creation_input_tokens=2_000, cache_read_input_tokens=0
    )
    expected = (
        1_000 * rate(m, "input_cost_per_token")
        + 2_000 * rate(m, "cache_creation_input_token_cost")
        + 200 * rate(m, "output_cost_per_token")
    )
    assert charged(m, usage) == by_hand(expected)


def test_reasoning_tokens_are_billed_as_output():
    m = "o3-mini"
    usage = litellm.Usage(
        prompt_tokens=1_000,
        completion_tokens=3_000,
        completion_tokens_details=CompletionTokensDetailsWrapper(reasoning_tokens=2_500),
    )
    expected = 1_000 * rate(m, "input_cost_per_token") + 3_000 * rate(m, "output_cost_per_token")
    assert charged(m, usage) == by_hand(expected)


def test_audio_tokens():
    m = "gpt-4o-audio-preview-2024-12-17"
    usage = litellm.Usage(
        prompt_tokens=1_000,
        completion_tokens=400,
        prompt_tokens_details=PromptTokensDetailsWrapper(audio_tokens=600, text_tokens=400),
        completion_tokens_details=CompletionTokensDetailsWrapper(audio_tokens=300, text_tokens=100),
    )
    expected = (
        400 * rate(m, "input_cost_per_token")
        + 600 * rate(m, "input_cost_per_audio_token")
        + 100 * rate(m, "output_cost_per_token")
        + 300 * rate(m, "output_cost_per_audio_token")
    )
    assert charged(m, usage) == by_hand(expected)


@pytest.mark.parametrize("cost", [None, 0, "", 0.0])
def test_a_call_litellm_could_not_price_is_priced_from_the_table_never_free(cost):
    prices = TokenPrices(Decimal("1e-6"), Decimal("2e-6"))
    charge = price_call(cost, prices, 100, 50, MARKUP)
    assert charge.cost_source == "price_table" and charge.user_price_micros == by_hand(Decimal("0.0002"))
