"""Against a provider that bills like OpenAI (every choice as long as its budget allows, prompt counted its
own way, cached and reasoning tokens reported): the hold bounds the charge, a balance never goes below
zero, and what a provider bills above a hold is recorded as uncollected instead of taken."""

from __future__ import annotations

import math

import openai
import pytest
import sqlalchemy as sa

from gateway import ledger
from gateway.config import Settings
from gateway.db.schema import credit_holds, llm_usage
from gateway.jobs.reconcile import reconcile
from tests.ledger_checks import assert_books_balance

pytestmark = pytest.mark.timeout(180)
CHAT = [{"role": "user", "content": "Say something long."}]
# gpt-4o-mini in LiteLLM's map: input 0.15, cached input 0.075, output 0.60 USD per 1M tokens
INPUT_E12, CACHED_E12, OUTPUT_E12 = 150_000, 75_000, 600_000


async def rows_of(db, table, account_id):
    async with db.connect() as conn:
        return (await conn.execute(sa.select(table).where(table.c.account_id == account_id).order_by(table.c.id))).all()


def user_price(prompt: int, completion: int, cached: int = 0) -> int:
    cost_e12 = (prompt - cached) * INPUT_E12 + cached * CACHED_E12 + completion * OUTPUT_E12
    return math.ceil(cost_e12 * 2 / 1_000_000)


async def test_twenty_choices_that_do_not_fit_are_refused_before_the_provider(db, make_customer, upstream):
    upstream.set_mode(fill=True)
    c = await make_customer(2_000)  # 2 credits
    with pytest.raises(openai.APIStatusError) as err:
        c.client.chat.completions.create(model="gpt-4o-mini", messages=CHAT, n=20, max_tokens=200)
    assert err.value.status_code == 402 and "x 20 choices" in err.value.message
    assert upstream.stats()["total"] == 0
    bal = await ledger.get_balance(db, c.account.id)
    assert (bal.balance_micros, bal.held_micros) == (2_000, 0)


@pytest.mark.parametrize("stream", [False, True])
async def test_a_flexible_hold_gives_each_of_n_choices_a_budget_that_fits(db, make_customer, upstream, stream):
    upstream.set_mode(fill=True)
    c = await make_customer(2_000)
    kwargs = {"stream": True, "stream_options": {"include_usage": True}} if stream else {}
    result = c.client.chat.completions.create(model="gpt-4o-mini", messages=CHAT, n=20, **kwargs)
    if stream:
        chunks = list(result)
        assert {ch.choices[0].index for ch in chunks if ch.choices} == set(range(20))
    else:
        assert len(result.choices) == 20 and all(ch.finish_reason == "length" for ch in result.choices)
    sent = upstream.last_request()["body"]
    assert sent["n"] == 20 and sent["max_tokens"] >= 1
    [row] = await rows_of(db, llm_usage, c.account.id)
    [hold] = await rows_of(db, credit_holds, c.account.id)
    assert row.completion_tokens == 20 * sent["max_tokens"]
    assert row.user_price_micros == user_price(row.prompt_tokens, row.completion_tokens)
    assert row.uncollected_micros == 0 and row.user_price_micros <= hold.amount_micros <= 2_000
    bal = await ledger.get_balance(db, c.account.id)
    assert bal.balance_micros == 2_000 - row.user_price_micros >= 0 and bal.held_micros == 0
    await assert_books_balance(db)


@pytest.mark.parametrize("stream", [False, True])
async def test_a_provider_that_counts_more_prompt_than_held_is_charged_the_hold_and_the_rest_recorded(
    db, make_customer, upstream, stream
):
    upstream.set_mode(fill=True, prompt_extra_tokens=50_000)  # the provider's tokenizer counts far more
    c = await make_customer(1_000_000)
    kwargs = {"stream": True} if stream else {}
    result = c.client.chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=CHAT, n=2, max_tokens=10, **kwargs
    )
    if stream:
        list(result.parse())
    [row] = await rows_of(db, llm_usage, c.account.id)
    [hold] = await rows_of(db, credit_holds, c.account.id)
    assert row.prompt_tokens > 50_000 and row.user_price_micros == user_price(row.prompt_tokens, 20)
    assert row.user_price_micros - row.uncollected_micros == hold.amount_micros  # charged exactly the hold
    assert row.uncollected_micros > 0
    bal = await ledger.get_balance(db, c.account.id)
    assert bal.balance_micros == 1_000_000 - hold.amount_micros
    if not stream:
        assert result.headers["x-gateway-credits-charged"] == str(hold.amount_micros / 1000).rstrip("0").rstrip(".")
    report = await reconcile(db, Settings())
    assert next(u for u in report.uncollected if u.request_id == row.request_id).uncollected_micros == (
        row.uncollected_micros
    )
    assert not [m for m in report.mismatches if m.account_id == c.account.id]
    await assert_books_balance(db)


async def test_a_small_balance_cannot_go_negative_however_the_provider_counts(db, make_customer, upstream):
    upstream.set_mode(fill=True, prompt_extra_tokens=200_000)
    c = await make_customer(500)
    c.client.chat.completions.create(model="gpt-4o-mini", messages=CHAT, n=3)
    bal = await ledger.get_balance(db, c.account.id)
    assert bal.balance_micros >= 0 and bal.held_micros == 0
    [row] = await rows_of(db, llm_usage, c.account.id)
    assert row.uncollected_micros > 0 and row.user_price_micros - row.uncollected_micros == 500 - bal.balance_micros
    await assert_books_balance(db)


@pytest.mark.parametrize("stream", [False, True])
async def test_cached_and_reasoning_tokens_are_priced_as_the_model_map_says(db, make_customer, upstream, stream):
    upstream.set_mode(cached_tokens=3, reasoning_tokens=7, words=5)
    c = await make_customer()
    kwargs = {"stream": True, "stream_options": {"include_usage": True}} if stream else {}
    result = c.client.chat.completions.create(model="gpt-4o-mini", messages=CHAT, max_tokens=100, **kwargs)
    usage = list(result)[-1].usage if stream else result.usage
    assert usage.prompt_tokens_details.cached_tokens == 3 and usage.completion_tokens_details.reasoning_tokens == 7
    [row] = await rows_of(db, llm_usage, c.account.id)
    assert row.completion_tokens == 12  # 7 reasoning + 5 visible, billed as output
    assert row.user_price_micros == user_price(row.prompt_tokens, 12, cached=3)
    await assert_books_balance(db)


async def test_tools_images_and_schemas_are_inside_the_hold(db, make_customer, upstream):
    upstream.set_mode(fill=True)
    c = await make_customer()
    tools = [
        {
            "type": "function",
            "function": {
                "name": f"tool_{i}",
                "description": "look things up " * 40,
                "parameters": {"type": "object", "properties": {"q": {"type": "string"}}},
            },
        }
        for i in range(3)
    ]
    image = {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}
    messages = [{"role": "user", "content": [{"type": "text", "text": "describe"}, image, image]}]
    c.client.chat.completions.create(
        model="gpt-4o-mini",
        messages=messages,
        tools=tools,
        max_tokens=30,
        n=2,
        response_format={"type": "json_schema", "json_schema": {"name": "answer", "schema": {"type": "object"}}},
    )
    [row] = await rows_of(db, llm_usage, c.account.id)
    [hold] = await rows_of(db, credit_holds, c.account.id)
    assert row.prompt_tokens > 2 * 765 and row.completion_tokens == 60
    assert row.uncollected_micros == 0 and row.user_price_micros <= hold.amount_micros
