"""Per-key credit limits through the real proxy (2 workers, PostgreSQL): 100 concurrent calls on a key whose
limit covers 10 never charge it more than its limit, the refused calls are 402 key_limit_exceeded, the account's
other key is unaffected, and the next period (the key's period moved back a day: a clock that moved on) starts
from zero."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import httpx
import openai
import pytest
import sqlalchemy as sa

from gateway.accounts.keys import create_key, set_limit
from gateway.db.schema import credit_holds, llm_usage, virtual_keys
from tests.e2e.calls import CHAT, assert_every_served_call_billed_once, funded_client

pytestmark = pytest.mark.timeout(300)


async def one_call(client: openai.AsyncOpenAI) -> str:
    try:
        await client.chat.completions.create(model="gpt-4o-mini", messages=CHAT, max_tokens=20)
        return "ok"
    except openai.APIStatusError as exc:
        body = exc.response.json()["error"]
        assert exc.status_code == 402 and body["code"] == "key_limit_exceeded", (exc.status_code, body)
        assert "credit limit is" in body["message"] and "resets at" in body["message"]
        return body["code"]


async def hammer(base_url: str, raw_key: str, calls: int) -> list[str]:
    limits = httpx.Limits(max_connections=calls + 10, max_keepalive_connections=calls + 10)
    async with httpx.AsyncClient(limits=limits, timeout=120) as http:
        client = openai.AsyncOpenAI(base_url=base_url, api_key=raw_key, max_retries=0, http_client=http)
        return await asyncio.gather(*[one_call(client) for _ in range(calls)])


async def charged_and_held(db, key_id: int) -> tuple[int, int]:
    async with db.connect() as conn:
        collected = llm_usage.c.user_price_micros - llm_usage.c.uncollected_micros
        charged = (
            await conn.execute(
                sa.select(sa.func.coalesce(sa.func.sum(collected), 0)).where(llm_usage.c.key_id == key_id)
            )
        ).scalar_one()
        hold = (await conn.execute(sa.select(sa.func.max(credit_holds.c.amount_micros)).where(
            credit_holds.c.key_id == key_id))).scalar_one()  # fmt: skip
    return int(charged), int(hold or 0)


async def test_100_concurrent_calls_never_charge_a_key_past_its_limit(db, proxy, upstream):
    account, _ = await funded_client(db, proxy)
    capped = await create_key(db, account.id, "capped")
    other = await create_key(db, account.id, "other")
    probe = openai.AsyncOpenAI(base_url=proxy.base_url, api_key=other.raw_key, max_retries=0, timeout=60)
    assert await one_call(probe) == "ok"
    _, hold = await charged_and_held(db, other.info.id)  # what one such call holds
    limit = 10 * hold
    await set_limit(db, capped.info.id, limit, "daily")

    outcomes = await asyncio.to_thread(asyncio.run, hammer(proxy.base_url, capped.raw_key, 100))
    served = outcomes.count("ok")
    charged, _ = await charged_and_held(db, capped.info.id)
    assert 10 <= served < 100 and outcomes.count("key_limit_exceeded") == 100 - served
    assert charged <= limit, (charged, limit)
    async with db.connect() as conn:
        used = (await conn.execute(sa.select(virtual_keys.c.period_used_micros).where(
            virtual_keys.c.id == capped.info.id))).scalar_one()  # fmt: skip
    assert used == charged  # every hold closed: the period use is exactly what was charged
    assert await asyncio.gather(*[one_call(probe) for _ in range(20)]) == ["ok"] * 20  # the other key
    await assert_every_served_call_billed_once(db, account.id, upstream)

    # The clock moves on: the key's counted period is yesterday's, so today starts from zero.
    async with db.begin() as conn:
        await conn.execute(
            sa.update(virtual_keys).where(virtual_keys.c.id == capped.info.id)
            .values(period_start=virtual_keys.c.period_start - timedelta(days=1))
        )  # fmt: skip
    client = openai.AsyncOpenAI(base_url=proxy.base_url, api_key=capped.raw_key, max_retries=0, timeout=60)
    assert await asyncio.gather(*[one_call(client) for _ in range(10)]) == ["ok"] * 10
    async with db.connect() as conn:
        used = (await conn.execute(sa.select(virtual_keys.c.period_used_micros).where(
            virtual_keys.c.id == capped.info.id))).scalar_one()  # fmt: skip
    assert used == (await charged_and_held(db, capped.info.id))[0] - charged  # only today's calls count
