"""The proxy's answers about a key and its calls (real proxy, 2 workers): GET /v1/key (and /api/v1/key) shows
the key's limit, use and the account's available credits as the ledger has them; every billed response (plain
and streamed) carries x-gateway-request-id, and GET /api/v1/generation?id= finds that call with exactly the
figures of its llm_usage row for the key that made it, and 404 for any other key."""

from __future__ import annotations

import httpx
import sqlalchemy as sa

from gateway import ledger
from gateway.accounts.keys import create_key, set_limit
from gateway.db.schema import llm_usage
from tests.e2e.calls import CHAT


def proxy_get(proxy, path: str, raw_key: str, **params: str) -> httpx.Response:
    base = f"http://127.0.0.1:{proxy.settings.proxy_port}"
    return httpx.get(f"{base}{path}", params=params, headers={"Authorization": f"Bearer {raw_key}"}, timeout=30)


async def test_the_key_sees_its_limit_use_and_the_accounts_credits(db, proxy, make_customer):
    customer = await make_customer(2_000_000)
    await set_limit(db, customer.key.info.id, 500_000, "monthly")
    before = proxy_get(proxy, "/v1/key", customer.key.raw_key).json()["data"]
    assert (before["label"], before["limit"], before["usage"], before["limit_remaining"]) == ("e2e", 500.0, 0.0, 500.0)
    assert (before["limit_reset"], before["account_available_micros"]) == ("monthly", 2_000_000)
    assert before["resets_at"].endswith("-01T00:00:00+00:00")
    customer.client.chat.completions.create(model="gpt-4o-mini", messages=CHAT, max_tokens=20)
    after = proxy_get(proxy, "/api/v1/key", customer.key.raw_key).json()["data"]
    balance = await ledger.get_balance(db, customer.account.id)
    async with db.connect() as conn:
        charged = (
            await conn.execute(
                sa.select(llm_usage.c.user_price_micros).where(llm_usage.c.key_id == customer.key.info.id)
            )
        ).scalar_one()
    assert (after["usage_micros"], after["limit_remaining_micros"]) == (charged, 500_000 - charged)
    assert after["account_available_micros"] == balance.available_micros == 2_000_000 - charged
    assert proxy_get(proxy, "/v1/key", "sk-cg-" + "x" * 43).status_code == 401


async def test_a_call_is_found_by_the_id_its_response_carried(db, proxy, make_customer):
    customer = await make_customer()
    plain = customer.client.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=CHAT, max_tokens=20)
    streamed = customer.client.chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=CHAT, max_tokens=20, stream=True
    )
    list(streamed.parse())  # read the stream to its end: it is settled before it ends
    for raw, is_stream in ((plain, False), (streamed, True)):
        request_id = raw.headers["x-gateway-request-id"]
        found = proxy_get(proxy, "/api/v1/generation", customer.key.raw_key, id=request_id)
        assert found.status_code == 200, found.text
        call = found.json()["data"]
        async with db.connect() as conn:
            row = (await conn.execute(sa.select(llm_usage).where(llm_usage.c.request_id == request_id))).one()
        assert call["id"] == request_id and call["status"] == "settled" and call["streamed"] is is_stream
        assert (call["model"], call["tokens_prompt"], call["tokens_completion"]) == (
            row.model, row.prompt_tokens, row.completion_tokens
        )  # fmt: skip
        assert call["charged_micros"] == row.user_price_micros - row.uncollected_micros
        assert "provider_cost_micros" not in call

    sibling = await create_key(db, customer.account.id, "sibling")
    stranger = await make_customer()
    request_id = plain.headers["x-gateway-request-id"]
    for other in (sibling.raw_key, stranger.key.raw_key):
        missing = proxy_get(proxy, "/api/v1/generation", other, id=request_id)
        assert missing.status_code == 404 and missing.json()["error"]["code"] == "generation_not_found"
    assert proxy_get(proxy, "/api/v1/generation", customer.key.raw_key).status_code == 400
    assert proxy_get(proxy, "/api/v1/generation", customer.key.raw_key, id=request_id, x="1").status_code == 400
