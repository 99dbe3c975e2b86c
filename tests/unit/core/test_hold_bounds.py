"""The hold bounds what a provider bills: for any request the admission rules accept, the provider's usage
(as the billing-like fake upstream reports it, every choice as long as its budget allows) priced at the
model's rates never exceeds the hold, and a flexible hold's max_tokens keeps n choices inside it."""

from __future__ import annotations

from decimal import Decimal

import litellm
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from devtools.fake_upstream import DEFAULT_MODE, prompt_tokens_for_chat
from gateway.core.billing import max_tokens_for_hold, plan_hold
from gateway.core.money import TokenPrices, user_price_micros, worst_case_price_micros
from gateway.proxy import admission
from gateway.proxy.pricing import count_prompt_tokens

MODEL = "gpt-4o-mini"
_map = litellm.model_cost[MODEL]
PRICES = TokenPrices(Decimal(str(_map["input_cost_per_token"])), Decimal(str(_map["output_cost_per_token"])), 16_384)
MARKUP = Decimal("2.0")
TOKENS_PER_IMAGE = 50_000  # the default HOLD_TOKENS_PER_IMAGE
FAKE = {**DEFAULT_MODE, "image_tokens": 765}

words = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=400)
tool = st.fixed_dictionaries(
    {
        "type": st.just("function"),
        "function": st.fixed_dictionaries(
            {
                "name": st.from_regex(r"[a-z_]{1,20}", fullmatch=True),
                "description": words,
                "parameters": st.just({"type": "object", "properties": {"q": {"type": "string"}}}),
            }
        ),
    }
)
part = st.one_of(
    st.builds(lambda t: {"type": "text", "text": t}, words),
    st.just({"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}),
)
message = st.one_of(
    st.builds(lambda r, c: {"role": r, "content": c}, st.sampled_from(["system", "user", "assistant"]), words),
    st.builds(lambda parts: {"role": "user", "content": parts}, st.lists(part, min_size=1, max_size=4)),
)
request = st.fixed_dictionaries(
    {"model": st.just(MODEL), "messages": st.lists(message, min_size=1, max_size=6)},
    optional={
        "n": st.integers(1, admission.MAX_CHOICES),
        "max_tokens": st.integers(1, 5_000),
        "tools": st.lists(tool, min_size=1, max_size=3),
        "response_format": st.just({"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object"}}}),
    },
)


def provider_price(data: dict, completion_per_choice: int) -> int:
    """What the provider bills for `data` when every choice fills its budget, at user prices."""
    prompt = prompt_tokens_for_chat(data, MODEL, FAKE)
    choices = data.get("n") or 1
    return user_price_micros(PRICES.cost_usd(prompt, choices * completion_per_choice), MARKUP)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=request, balance=st.integers(0, 50_000_000))
def test_the_hold_covers_what_the_provider_bills(data, balance):
    admission.check_body(admission.CHAT, data)  # only requests the gateway would forward
    choices = data.get("n") or 1
    plan = plan_hold(
        PRICES,
        count_prompt_tokens(MODEL, data, False, TOKENS_PER_IMAGE),
        data.get("max_tokens"),
        MARKUP,
        choices=choices,
    )
    if plan.min_micros is None:  # the client chose max_tokens: the hold is all or nothing
        assert provider_price(data, data["max_tokens"]) <= plan.amount_micros
        return
    if balance < plan.min_micros:
        return  # refused with 402: nothing is called
    held = min(plan.amount_micros, balance)  # what the flexible hold reserves
    per_choice = max_tokens_for_hold(PRICES, plan, held, MARKUP)
    assert per_choice >= 1
    assert provider_price(data, per_choice) <= held <= balance


def test_twenty_choices_are_held_as_twenty():
    data = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "n": 20, "max_tokens": 200}
    plan = plan_hold(PRICES, count_prompt_tokens(MODEL, data, False, TOKENS_PER_IMAGE), 200, MARKUP, choices=20)
    assert plan.amount_micros >= worst_case_price_micros(PRICES, 0, 20 * 200, MARKUP)  # 4,000 output tokens
    assert provider_price(data, 200) <= plan.amount_micros


def test_each_image_is_held_at_the_configured_bound_not_its_data_url_length():
    image = {"type": "image_url", "image_url": {"url": "data:image/png;base64," + "A" * 200_000}}
    data = {
        "model": MODEL,
        "messages": [{"role": "user", "content": [{"type": "text", "text": "what is this?"}, image, image]}],
    }
    tokens = count_prompt_tokens(MODEL, data, False, TOKENS_PER_IMAGE)
    assert 2 * TOKENS_PER_IMAGE < tokens < 2 * TOKENS_PER_IMAGE + 100
