"""Issue 28 through the real proxy, with a provider fake that sends every header OpenAI and Anthropic send and
counts prompts with the real tokenizer: a prompt shaped against a sampling counter is refused before the
provider is called, a dear prompt is held for all it bills, a mixed embeddings input is refused, and no provider
header, provider error text or margin reaches a client."""

from __future__ import annotations

import httpx
import openai
import pytest
import sqlalchemy as sa

from gateway import ledger
from gateway.db.schema import llm_usage
from gateway.proxy.exposure import COST_HEADERS, allowed
from tests.ledger_checks import assert_books_balance

pytestmark = pytest.mark.timeout(240)
DEAR = "\U00020000\U00020001\U00020002\U00020003"  # several o200k tokens per character
PROVIDER_MARKS = ("org-fakeoperator", "proj_fakeoperator", "req_fake", "149999000", "29999000", "fake-operator")


def assert_nothing_of_the_provider(headers: httpx.Headers, body: str = "") -> None:
    assert all(allowed(name.encode()) or name.encode() in COST_HEADERS for name in headers), sorted(headers)
    seen = str(dict(headers)) + body
    assert not [mark for mark in PROVIDER_MARKS if mark in seen], seen[:500]


async def test_a_prompt_shaped_against_sampling_is_refused_before_the_provider(db, make_customer, upstream):
    c = await make_customer(5_000_000)
    length, window, stride = 4_250_000, 250_000, 266_666
    chars = [" "] * length
    for k in range(15):  # dear text in the gaps between LiteLLM's 16 sampled windows
        for i in range(k * stride + window, (k + 1) * stride):
            chars[i] = DEAR[i % 4]
    with pytest.raises(openai.BadRequestError) as refused:
        c.client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "".join(chars)}], max_tokens=1
        )
    assert refused.value.code == "context_length_exceeded" and "128000" in refused.value.message
    assert upstream.stats()["total"] == 0
    bal = await ledger.get_balance(db, c.account.id)
    assert (bal.balance_micros, bal.held_micros) == (5_000_000, 0)


async def test_a_dear_prompt_is_held_for_everything_the_provider_bills(db, make_customer, upstream):
    c = await make_customer(5_000_000)
    prompt = DEAR * 6_000 + " the rest is cheap" * 2_000  # ~100k tokens billed, well inside gpt-4o-mini's 128k
    c.client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": prompt}], max_tokens=1)
    async with db.connect() as conn:
        [row] = (await conn.execute(sa.select(llm_usage).where(llm_usage.c.account_id == c.account.id))).all()
    assert row.prompt_tokens > 60_000 and row.uncollected_micros == 0
    await assert_books_balance(db)


async def test_embeddings_input_mixing_token_ids_and_text_is_refused(db, make_customer, upstream):
    c = await make_customer()
    with pytest.raises(openai.BadRequestError) as refused:
        c.client.embeddings.create(model="text-embedding-3-small", input=[[1], "x" * 30_000])
    assert refused.value.param == "input"
    assert upstream.stats()["total"] == 0


@pytest.mark.parametrize("stream", [False, True])
async def test_no_provider_header_reaches_the_client(make_customer, stream):
    c = await make_customer()
    kwargs = {"stream": True} if stream else {}
    with c.client.chat.completions.with_streaming_response.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], max_tokens=5, **kwargs
    ) as raw:
        body = raw.read().decode()
        assert raw.status_code == 200 and raw.headers["x-gateway-request-id"]
        assert_nothing_of_the_provider(raw.headers, body)


async def test_an_upstream_429_is_told_in_our_words_with_the_request_id(db, make_customer, upstream):
    c = await make_customer()
    upstream.set_mode(fail_always=True, fail_status=429)
    with pytest.raises(openai.RateLimitError) as refused:
        c.client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], max_tokens=5
        )
    raw = refused.value.response
    assert raw.status_code == 429
    error = raw.json()["error"]
    assert error["code"] == "upstream_rate_limited" and raw.headers["x-gateway-request-id"] in error["message"]
    assert_nothing_of_the_provider(raw.headers, raw.text)
    bal = await ledger.get_balance(db, c.account.id)
    assert bal.held_micros == 0


def test_metrics_are_closed_on_the_client_port_without_a_token(proxy):
    answer = httpx.get(proxy.base_url.removesuffix("/v1") + "/metrics", timeout=30)
    assert answer.status_code == 401 and "gateway_" not in answer.text
