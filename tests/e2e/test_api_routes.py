"""OpenAI Responses, Anthropic Messages and text completions through the real proxy, driven by the unchanged
openai and anthropic SDKs, on PostgreSQL: each call is held before the provider is called, settled before its
last byte at the list price, refused with 402 when the account cannot cover it, and served within what the
account affords when the client sets no output bound."""

from __future__ import annotations

import anthropic
import httpx
import openai
import pytest

from gateway import ledger
from gateway.core.money import micros_to_credits
from tests.e2e.test_proxy_billing import closed_hold, holds_of, leave_after, usage_rows
from tests.ledger_checks import assert_books_balance

pytestmark = pytest.mark.timeout(240)
HI = [{"role": "user", "content": "Say something short."}]
# list prices (USD per 1M tokens, LiteLLM's map) and the markup of the test proxy
RATES = {"gpt-4o-mini": (0.15, 0.60), "claude-haiku-4-5": (1.0, 5.0), "gpt-3.5-turbo-instruct": (1.5, 2.0)}
MARKUP = 2


def list_price_micros(model: str, prompt: int, completion: int) -> int:
    """The price list's user price of a call: ceil((p x in + c x out) x markup), in micros."""
    rate_in, rate_out = (round(r * 1_000_000) for r in RATES[model])  # USD per 1M tokens x 1e6 = USD*1e12/token
    return -(-(prompt * rate_in + completion * rate_out) * MARKUP // 1_000_000)


def provider_calls(upstream) -> int:
    """Calls that reached the provider fake (LiteLLM lists its models once at start-up: not a call)."""
    return sum(n for path, n in upstream.calls().items() if path != "/v1/models")


def anthropic_client(proxy, key: str, bearer: bool = False) -> anthropic.Anthropic:
    root = proxy.base_url.removesuffix("/v1")
    if bearer:  # Claude Code with ANTHROPIC_AUTH_TOKEN
        return anthropic.Anthropic(base_url=root, auth_token=key, max_retries=0, timeout=60)
    return anthropic.Anthropic(base_url=root, api_key=key, max_retries=0, timeout=60)  # x-api-key


async def assert_settled_at_list_price(db, account_id: int, start_micros: int, calls: int, route: str) -> list:
    rows = await usage_rows(db, account_id)
    assert len(rows) == calls
    for row in rows:
        assert row.cost_source == "litellm" and row.route == route
        assert row.user_price_micros == list_price_micros(row.model, row.prompt_tokens, row.completion_tokens)
    bal = await ledger.get_balance(db, account_id)
    assert (bal.balance_micros, bal.held_micros) == (start_micros - sum(r.user_price_micros for r in rows), 0)
    assert all(h.status == "posted" for h in await holds_of(db, account_id))
    await assert_books_balance(db)
    return rows


async def test_messages_with_x_api_key_and_bearer_plain_and_streamed(db, make_customer, upstream, proxy):
    c = await make_customer()
    for bearer in (False, True):
        client = anthropic_client(proxy, c.key.raw_key, bearer)
        raw = client.messages.with_raw_response.create(model="claude-haiku-4-5", max_tokens=50, messages=HI)
        message = raw.parse()
        assert message.content[0].text and message.usage.output_tokens == 8
        row = (await usage_rows(db, c.account.id))[-1]  # settled before the response reached us
        assert raw.headers["x-gateway-request-id"] == row.request_id
        assert raw.headers["x-gateway-credits-charged"] == micros_to_credits(row.user_price_micros)
        assert (row.prompt_tokens, row.completion_tokens) == (message.usage.input_tokens, 8)
    with anthropic_client(proxy, c.key.raw_key).messages.stream(
        model="claude-haiku-4-5", max_tokens=50, messages=HI, thinking={"type": "enabled", "budget_tokens": 20}
    ) as stream:
        final = stream.get_final_message()
    assert final.usage.output_tokens == 20 + 8  # thinking is billed as output
    rows = await assert_settled_at_list_price(db, c.account.id, 1_000_000, 3, "messages")
    assert rows[-1].streamed and rows[-1].completion_tokens == 28


async def test_messages_errors_are_anthropic_shaped(proxy, make_customer, upstream):
    c = await make_customer()
    client = anthropic_client(proxy, c.key.raw_key)
    with pytest.raises(anthropic.AuthenticationError) as bad_key:
        anthropic_client(proxy, "sk-cg-unknown").messages.create(model="claude-haiku-4-5", max_tokens=5, messages=HI)
    with pytest.raises(anthropic.BadRequestError) as wrong_model:
        client.messages.create(model="text-embedding-3-small", max_tokens=5, messages=HI)
    with pytest.raises(anthropic.BadRequestError) as tool:
        client.messages.create(
            model="claude-haiku-4-5",
            max_tokens=5,
            messages=HI,
            tools=[{"type": "web_search_20250305", "name": "web_search"}],
        )
    for refused, kind in ((bad_key, "authentication_error"), (wrong_model, "invalid_request_error"), (tool, None)):
        body = refused.value.response.json()
        assert body["type"] == "error" and set(body["error"]) == {"type", "message"}
        assert kind is None or body["error"]["type"] == kind
    assert "'text-embedding-3-small' does not serve /v1/messages" in wrong_model.value.response.text
    assert provider_calls(upstream) == 0
    upstream.set_mode(fail_always=True)  # a provider error reaches the client in Anthropic's shape, in our words
    try:
        with pytest.raises(anthropic.APIStatusError) as failed:
            client.messages.create(model="claude-haiku-4-5", max_tokens=5, messages=HI)
    finally:
        upstream.set_mode(fail_always=False)
    body = failed.value.response.json()
    assert body["type"] == "error" and set(body["error"]) == {"type", "message"}
    assert "fake upstream" not in failed.value.response.text


async def test_responses_plain_streamed_and_incomplete(db, make_customer, upstream):
    c = await make_customer()
    raw = c.client.responses.with_raw_response.create(model="gpt-4o-mini", input="hi", max_output_tokens=50)
    response = raw.parse()
    assert response.output_text and response.status == "completed"
    assert raw.headers["x-gateway-credits-charged"] == micros_to_credits(
        (await usage_rows(db, c.account.id))[-1].user_price_micros
    )
    events = list(c.client.responses.create(model="gpt-4o-mini", input="hi", max_output_tokens=50, stream=True))
    assert events[-1].type == "response.completed"
    upstream.set_mode(fill=True, reasoning_tokens=6)  # the output limit cuts the answer: response.incomplete
    events = list(c.client.responses.create(model="gpt-4o-mini", input="hi", max_output_tokens=16, stream=True))
    assert events[-1].type == "response.incomplete" and events[-1].response.usage.output_tokens == 16
    rows = await assert_settled_at_list_price(db, c.account.id, 1_000_000, 3, "responses")
    assert [r.streamed for r in rows] == [False, True, True] and rows[-1].completion_tokens == 16


async def test_completions_plain_with_n_and_best_of_and_streamed_without_usage_asked(db, make_customer, upstream):
    c = await make_customer()
    reply = c.client.completions.create(model="gpt-3.5-turbo-instruct", prompt=["a", "b"], n=2, best_of=3, max_tokens=5)
    assert len(reply.choices) == 4 and reply.usage.completion_tokens == 2 * 3 * 5  # best_of answers are billed
    chunks = list(c.client.completions.create(model="gpt-4o-mini", prompt="hi", max_tokens=5, stream=True))
    assert "".join(ch.choices[0].text or "" for ch in chunks if ch.choices).strip()
    assert all(ch.usage is None for ch in chunks)  # the gateway asked for usage; the client did not
    assert upstream.last_request("/v1/chat/completions")["body"]["stream_options"] == {"include_usage": True}
    chunks = list(c.client.completions.create(model="gpt-3.5-turbo-instruct", prompt="hi", stream=True))
    assert upstream.last_request("/v1/completions")["body"]["max_tokens"] == 16  # the API's default, sent
    rows = await assert_settled_at_list_price(db, c.account.id, 1_000_000, 3, "completions")
    assert rows[0].completion_tokens == 30 and rows[1].completion_tokens == 5 and rows[2].completion_tokens == 8


async def test_a_2_credit_account_is_refused_before_the_provider_and_served_within_its_means(
    db, make_customer, upstream, proxy
):
    c = await make_customer(2_000)  # 2 credits
    with pytest.raises(openai.APIStatusError) as responses_refused:
        c.client.responses.create(model="gpt-4o-mini", input="hi", max_output_tokens=100_000)
    with pytest.raises(openai.APIStatusError) as completions_refused:
        c.client.completions.create(model="gpt-3.5-turbo-instruct", prompt="hi", max_tokens=100_000)
    with pytest.raises(anthropic.APIStatusError) as messages_refused:
        anthropic_client(proxy, c.key.raw_key).messages.create(
            model="claude-haiku-4-5", max_tokens=100_000, messages=HI
        )
    assert {e.value.status_code for e in (responses_refused, completions_refused, messages_refused)} == {402}
    assert messages_refused.value.response.json()["error"]["type"] == "billing_error"
    assert provider_calls(upstream) == 0  # refused before the provider was called
    upstream.set_mode(fill=True)  # the provider spends the whole output budget it is given
    response = c.client.responses.create(model="gpt-4o-mini", input="hi")  # no output bound
    given = upstream.last_request("/v1/responses")["body"]["max_output_tokens"]
    assert given >= 16 and response.usage.output_tokens == given
    [row] = await usage_rows(db, c.account.id)
    bal = await ledger.get_balance(db, c.account.id)
    assert 0 < row.user_price_micros <= 2_000 and bal.balance_micros == 2_000 - row.user_price_micros >= 0
    assert bal.held_micros == 0
    await assert_books_balance(db)


@pytest.mark.parametrize(
    ("path", "body", "auth"),
    [
        ("/v1/messages", {"model": "claude-haiku-4-5", "max_tokens": 200, "messages": HI, "stream": True}, "x-api-key"),
        ("/v1/responses", {"model": "gpt-4o-mini", "input": "hi", "max_output_tokens": 200, "stream": True}, "bearer"),
        ("/v1/completions", {"model": "gpt-4o-mini", "prompt": "hi", "max_tokens": 200, "stream": True}, "bearer"),
    ],
)
async def test_a_stream_the_client_cuts_is_charged_for_what_it_produced(
    db, make_customer, upstream, proxy, path, body, auth
):
    c = await make_customer()
    upstream.set_mode(words=60, chunk_delay=0.05)
    root = proxy.base_url.removesuffix("/v1")
    headers = {"x-api-key": c.key.raw_key} if auth == "x-api-key" else {"Authorization": f"Bearer {c.key.raw_key}"}
    async with (
        httpx.AsyncClient(timeout=30) as http,
        http.stream("POST", root + path, headers=headers, json=body) as resp,
    ):
        assert resp.status_code == 200
        await leave_after(resp, 8)
    hold = await closed_hold(db, c.account.id)
    if hold.status == "posted":
        [row] = await usage_rows(db, c.account.id)
        assert 0 < row.completion_tokens < 60 and row.user_price_micros <= hold.amount_micros
    assert (await ledger.get_balance(db, c.account.id)).held_micros == 0
    await assert_books_balance(db)


async def test_the_model_list_says_which_routes_each_model_serves(make_customer, upstream):
    c = await make_customer()
    models = {m.id: m.model_extra["routes"] for m in c.client.models.list()}
    chat_like = ["/v1/chat/completions", "/v1/responses", "/v1/messages", "/v1/completions"]
    assert models["gpt-4o-mini"] == models["claude-haiku-4-5"] == chat_like
    assert models["gpt-3.5-turbo-instruct"] == ["/v1/completions"]
    assert models["text-embedding-3-small"] == ["/v1/embeddings"]
    with pytest.raises(openai.BadRequestError) as refused:
        c.client.responses.create(model="gpt-3.5-turbo-instruct", input="hi", max_output_tokens=20)
    assert "'gpt-3.5-turbo-instruct' does not serve /v1/responses" in refused.value.message
    assert provider_calls(upstream) == 0
