"""The real LiteLLM proxy, our hooks, PostgreSQL and Redis, driven with the unchanged OpenAI SDK."""

from __future__ import annotations

import asyncio
import time

import httpx
import openai
import pytest
import sqlalchemy as sa

from gateway import ledger
from gateway.accounts.keys import revoke_key
from gateway.cache.ttl import key_cache_for
from gateway.core.money import micros_to_credits
from gateway.db.schema import credit_holds, credit_ledger, llm_usage
from gateway.jobs.reconcile import reconcile
from gateway.ledger.spool import Spool
from tests.e2e.conftest import REDIS_URL
from tests.ledger_checks import assert_books_balance

pytestmark = pytest.mark.timeout(180)
CHAT = [{"role": "user", "content": "Say something short."}]


async def usage_rows(db, account_id: int) -> list:
    async with db.connect() as conn:
        return (
            await conn.execute(
                sa.select(llm_usage).where(llm_usage.c.account_id == account_id).order_by(llm_usage.c.id)
            )
        ).all()


async def holds_of(db, account_id: int) -> list:
    async with db.connect() as conn:
        return (await conn.execute(sa.select(credit_holds).where(credit_holds.c.account_id == account_id))).all()


async def leave_after(resp, events: int) -> None:
    """Read `events` SSE data lines of a streamed response, then stop reading (the caller leaves)."""
    seen = 0
    async for line in resp.aiter_lines():
        seen += line.startswith("data:")
        if seen >= events:
            return


async def closed_hold(db, account_id: int):
    """The account's one hold, once the proxy has closed it (it notices a client leaving asynchronously)."""
    for _ in range(100):
        holds = await holds_of(db, account_id)
        if holds and holds[0].status != "pending":
            break
        await asyncio.sleep(0.1)
    [hold] = await holds_of(db, account_id)
    assert hold.status in {"posted", "voided"}
    return hold


async def test_chat_is_held_priced_settled_and_headers_show_only_the_user_price(db, make_customer, upstream):
    c = await make_customer(1_000_000)
    raw = c.client.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=CHAT, max_tokens=50)
    resp = raw.parse()
    assert resp.choices[0].message.content and resp.usage.completion_tokens == 8
    [row] = await usage_rows(db, c.account.id)  # committed before the response reached us
    assert row.model == "gpt-4o-mini" and row.streamed is False and row.cost_source == "litellm" and row.route == "chat"
    assert (row.prompt_tokens, row.completion_tokens) == (resp.usage.prompt_tokens, resp.usage.completion_tokens)
    # gpt-4o-mini list price: $0.15 / $0.60 per 1M tokens; user price = ceil(cost * 2.0 * 1e6)
    cost_e12 = row.prompt_tokens * 150_000 + row.completion_tokens * 600_000  # USD * 1e12
    assert row.provider_cost_micros == -(-cost_e12 // 1_000_000)
    assert row.user_price_micros == -(-cost_e12 * 2 // 1_000_000)
    assert row.user_price_micros >= row.provider_cost_micros > 0
    bal = await ledger.get_balance(db, c.account.id)
    assert (bal.balance_micros, bal.held_micros) == (1_000_000 - row.user_price_micros, 0)
    h = raw.headers
    assert h["x-gateway-credits-charged"] == micros_to_credits(row.user_price_micros)
    for leak in (
        "x-litellm-model-api-base",
        "x-litellm-key-spend",
        "x-litellm-response-cost-original",
        "x-litellm-response-cost-input",
        "x-litellm-response-cost-output",
    ):
        assert h.get(leak, "") == "", leak
    assert "127.0.0.1" not in str(dict(h)) and upstream.base_url not in str(dict(h))
    await assert_books_balance(db)


async def test_response_cost_header_is_the_user_price(db, make_customer):
    c = await make_customer()
    raw = c.client.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=CHAT, max_tokens=20)
    [row] = await usage_rows(db, c.account.id)
    from decimal import Decimal

    assert Decimal(raw.headers["x-litellm-response-cost"]) * 1_000_000 == row.user_price_micros


async def test_stream_with_usage_settles_before_the_stream_ends_and_reports_the_user_price(db, make_customer):
    c = await make_customer()
    chunks = list(
        c.client.chat.completions.create(
            model="gpt-4o-mini", messages=CHAT, max_tokens=30, stream=True, stream_options={"include_usage": True}
        )
    )
    rows = await usage_rows(db, c.account.id)  # read right after [DONE]: the settle was awaited before it
    assert len(rows) == 1 and rows[0].streamed is True
    text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
    assert len(text.split()) == rows[0].completion_tokens == 8
    final = chunks[-1]
    assert final.usage is not None and final.usage.completion_tokens == 8
    assert round(final.usage.model_extra["cost"] * 1_000_000) == rows[0].user_price_micros
    assert (await ledger.get_balance(db, c.account.id)).held_micros == 0


async def test_stream_without_usage_request_gets_no_usage_chunk_but_is_billed(db, make_customer, upstream):
    c = await make_customer()
    chunks = list(c.client.chat.completions.create(model="gpt-4o-mini", messages=CHAT, max_tokens=30, stream=True))
    assert chunks and all(ch.choices for ch in chunks) and all(ch.usage is None for ch in chunks)
    sent = upstream.last_request("chat/completions")["body"]
    assert sent["stream_options"] == {"include_usage": True}  # we asked the provider for usage
    [row] = await usage_rows(db, c.account.id)
    assert row.completion_tokens == 8 and row.user_price_micros > 0


async def test_no_max_tokens_gets_what_the_account_can_afford(db, make_customer, upstream):
    c = await make_customer(100)  # 0.1 credit: a few dozen output tokens of gpt-4o-mini at 2x
    c.client.chat.completions.create(model="gpt-4o-mini", messages=CHAT)
    sent = upstream.last_request("chat/completions")["body"]
    granted = sent.get("max_tokens") or sent.get("max_completion_tokens")
    assert 0 < granted < 16_384
    bal = await ledger.get_balance(db, c.account.id)
    assert bal.balance_micros >= 0 and bal.held_micros == 0


async def test_embeddings_are_billed(db, make_customer):
    c = await make_customer()
    resp = c.client.embeddings.create(model="text-embedding-3-small", input=["hello world", "second text"])
    assert len(resp.data) == 2
    [row] = await usage_rows(db, c.account.id)
    assert row.prompt_tokens > 0 and row.completion_tokens == 0 and row.user_price_micros >= 1
    await assert_books_balance(db)


async def test_unknown_malformed_and_admin_keys_get_401_in_openai_shape(proxy, upstream):
    for key in ("sk-cg-" + "x" * 43, "not-a-key", proxy.master_key):
        client = openai.OpenAI(base_url=proxy.base_url, api_key=key, max_retries=0)
        with pytest.raises(openai.AuthenticationError) as err:
            client.chat.completions.create(model="gpt-4o-mini", messages=CHAT)
        assert err.value.status_code == 401 and err.value.body["code"] in {"invalid_api_key", "admin_key_not_billable"}
    assert upstream.calls("chat/completions") == 0


async def test_revoked_key_stops_working_within_five_seconds_on_every_worker(db, make_customer):
    c = await make_customer()
    for _ in range(4):  # warm both workers' caches
        c.client.chat.completions.create(model="gpt-4o-mini", messages=CHAT, max_tokens=5)
    from gateway.config import Settings

    await revoke_key(db, c.key.info.id, key_cache_for(Settings(redis_url=REDIS_URL)))
    revoked_at = time.monotonic()
    await asyncio.sleep(5)
    for _ in range(6):
        with pytest.raises(openai.AuthenticationError):
            c.client.chat.completions.create(model="gpt-4o-mini", messages=CHAT, max_tokens=5)
    assert time.monotonic() - revoked_at < 30


async def test_broke_account_gets_402_before_the_upstream_is_called(db, make_customer, upstream):
    c = await make_customer(0)
    with pytest.raises(openai.APIStatusError) as err:
        c.client.chat.completions.create(model="gpt-4o-mini", messages=CHAT, max_tokens=100)
    assert err.value.status_code == 402
    body = err.value.body
    assert body["code"] == "insufficient_credits" and body["type"] == "insufficient_quota"
    assert "balance 0 credits" in body["message"] and "never fit" in body["message"]
    with pytest.raises(openai.APIStatusError) as err:
        c.client.chat.completions.create(model="gpt-4o-mini", messages=CHAT, stream=True)
    assert err.value.status_code == 402
    assert upstream.calls("chat/completions") == 0
    assert await holds_of(db, c.account.id) == []


async def test_unpriced_model_is_refused_before_the_upstream_is_called(make_customer, upstream):
    c = await make_customer()
    with pytest.raises(openai.BadRequestError) as err:
        c.client.chat.completions.create(model="unpriced", messages=CHAT, max_tokens=5)
    assert err.value.body["code"] == "model_not_priced"
    assert upstream.calls("chat/completions") == 0


async def test_upstream_500_releases_the_hold_and_charges_nothing(db, make_customer, upstream):
    c = await make_customer(50_000)
    upstream.set_mode(fail_always=True)
    with pytest.raises(openai.InternalServerError):
        c.client.chat.completions.create(model="gpt-4o-mini", messages=CHAT, max_tokens=100)
    with pytest.raises(openai.InternalServerError):
        list(c.client.chat.completions.create(model="gpt-4o-mini", messages=CHAT, max_tokens=100, stream=True))
    upstream.set_mode(fail_always=False)
    bal = await ledger.get_balance(db, c.account.id)
    assert (bal.balance_micros, bal.held_micros) == (50_000, 0)
    assert {h.status for h in await holds_of(db, c.account.id)} == {"voided"}
    assert await usage_rows(db, c.account.id) == []


async def test_a_call_the_provider_serves_on_a_retry_is_billed(db, make_customer, upstream):
    """LiteLLM's router retries a provider error (num_retries defaults to 2) within the same request: the call
    is still open, and when a retry is served it is billed (found by bench.chaos, seed 1: the failed
    attempt's background failure event released the hold, and the served retry went unbilled)."""
    c = await make_customer()
    upstream.set_mode(fail_next=1)
    c.client.chat.completions.create(model="gpt-4o-mini", messages=CHAT, max_tokens=10)
    upstream.set_mode(fail_next=1)
    assert list(c.client.chat.completions.create(model="gpt-4o-mini", messages=CHAT, max_tokens=10, stream=True))
    assert upstream.calls("chat/completions") == 4  # each served on its second attempt
    assert len(await usage_rows(db, c.account.id)) == 2
    assert {h.status for h in await holds_of(db, c.account.id)} == {"posted"}
    bal = await ledger.get_balance(db, c.account.id)
    assert bal.held_micros == 0 and bal.balance_micros < 1_000_000


async def test_a_settle_the_database_refuses_is_our_500_with_the_request_id_and_never_spooled(
    db, make_customer, upstream, proxy
):
    """A permanent refusal (here a trigger refusing this account's usage rows: a data error) is not an outage:
    the client gets our 500 naming the request, nothing is spooled, the refusal is set aside in the spool for
    `gateway reconcile` (issue 23)."""
    c = await make_customer()
    function, trigger = f"refuse_{c.account.id}", f"refuse_usage_{c.account.id}"
    async with db.begin() as conn:
        await conn.execute(
            sa.text(
                f"CREATE FUNCTION {function}() RETURNS trigger LANGUAGE plpgsql AS "
                "$$ BEGIN RAISE EXCEPTION 'refused by a test trigger' USING ERRCODE = '22023'; END $$"
            )
        )
        await conn.execute(
            sa.text(
                f"CREATE TRIGGER {trigger} BEFORE INSERT ON llm_usage FOR EACH ROW "
                f"WHEN (NEW.account_id = {c.account.id}) EXECUTE FUNCTION {function}()"
            )
        )
    try:
        with pytest.raises(openai.InternalServerError) as err:
            c.client.chat.completions.create(model="gpt-4o-mini", messages=CHAT, max_tokens=10)
    finally:
        async with db.begin() as conn:
            await conn.execute(sa.text(f"DROP TRIGGER {trigger} ON llm_usage"))
            await conn.execute(sa.text(f"DROP FUNCTION {function}()"))
    (hold,) = await holds_of(db, c.account.id)
    assert err.value.status_code == 500 and hold.request_id in err.value.message
    assert "refused by a test trigger" not in err.value.message  # the database's words stay in our log
    assert hold.status == "pending"  # the sweeper expires it; reconcile names the refused settle meanwhile
    spool = Spool(proxy.settings.effective_spool_dir)
    assert [(e.request_id, e.kind, e.account_id) for e in spool.refused()] == [
        (hold.request_id, "settle", c.account.id)
    ]
    report = await reconcile(db, proxy.settings)
    assert [m.check for m in report.mismatches if hold.request_id in m.detail] == ["refused_settle"]


async def test_client_leaving_mid_stream_pays_for_what_was_produced(db, make_customer, upstream, proxy):
    c = await make_customer()
    upstream.set_mode(words=40, chunk_delay=0.05)
    async with (
        httpx.AsyncClient(timeout=30) as http,
        http.stream(
            "POST",
            f"{proxy.base_url}/chat/completions",
            headers={"Authorization": f"Bearer {c.key.raw_key}"},
            json={"model": "gpt-4o-mini", "messages": CHAT, "max_tokens": 100, "stream": True},
        ) as resp,
    ):
        await leave_after(resp, 5)
    upstream.set_mode(words=8, chunk_delay=0.0)
    hold = await closed_hold(db, c.account.id)
    rows = await usage_rows(db, c.account.id)
    if hold.status == "posted":
        assert len(rows) == 1 and 0 < rows[0].completion_tokens < 40
    assert (await ledger.get_balance(db, c.account.id)).held_micros == 0
    await assert_books_balance(db)


async def test_50_concurrent_calls_on_an_account_that_affords_10_never_overspend(db, make_customer, upstream):
    c = await make_customer(0)
    probe = await make_customer()
    probe.client.chat.completions.create(model="gpt-4o-mini", messages=CHAT, max_tokens=1000)
    [probe_hold] = await holds_of(db, probe.account.id)
    await ledger.post_entry(db, c.account.id, probe_hold.amount_micros * 10, "admin_grant", f"ten-{c.account.id}")
    upstream.set_mode(latency=1.0)  # keep the calls in flight together

    async def call():
        try:
            await c.async_client.chat.completions.create(model="gpt-4o-mini", messages=CHAT, max_tokens=1000)
            return "ok"
        except openai.APIStatusError as exc:
            return exc.status_code

    outcomes = await asyncio.gather(*[call() for _ in range(50)])
    upstream.set_mode(latency=0.0)
    # Ten worst cases fit at once; more only once a settled call has returned its unused hold.
    ok = outcomes.count("ok")
    assert ok >= 10 and ok + outcomes.count(402) == 50
    rows = await usage_rows(db, c.account.id)
    bal = await ledger.get_balance(db, c.account.id)
    assert bal.balance_micros == probe_hold.amount_micros * 10 - sum(r.user_price_micros for r in rows) >= 0
    assert bal.held_micros == 0 and len(rows) == ok
    await assert_books_balance(db)


async def test_every_usage_row_prices_at_or_above_provider_cost(db):
    async with db.connect() as conn:
        bad = (
            await conn.execute(
                sa.select(sa.func.count()).where(llm_usage.c.user_price_micros < llm_usage.c.provider_cost_micros)
            )
        ).scalar_one()
        total = (await conn.execute(sa.select(sa.func.count()).select_from(llm_usage))).scalar_one()
        ledger_rows = (
            await conn.execute(sa.select(sa.func.count()).where(credit_ledger.c.reason == "llm_usage"))
        ).scalar_one()
    assert bad == 0 and total == ledger_rows
