"""Calls through the real proxy for end-to-end fault and load tests, and what must hold after them."""

from __future__ import annotations

import asyncio

import httpx
import openai
import sqlalchemy as sa

from devtools.proxy_process import ProxyProcess
from gateway import ledger
from gateway.accounts.keys import create_key
from gateway.accounts.wallets import get_or_create_account
from gateway.config import Settings
from gateway.db.schema import credit_holds, llm_usage
from gateway.jobs.reconcile import reconcile
from tests.conftest import random_wallet
from tests.ledger_checks import assert_books_balance

CHAT = [{"role": "user", "content": "hello"}]
INTERNAL_WORDS = ("SELECT", "WITH known", "asyncpg", "sqlalchemy", "Traceback", "redis", "Redis", "127.0.0.1")


async def funded_client(db, proxy: ProxyProcess, micros: int = 50_000_000):
    account = await get_or_create_account(db, random_wallet())
    await ledger.post_entry(db, account.id, micros, "admin_grant", f"outage-{account.id}")
    key = await create_key(db, account.id, "outage")
    client = openai.AsyncOpenAI(base_url=proxy.base_url, api_key=key.raw_key, max_retries=0, timeout=60)
    return account, client


async def call(client, streamed: bool) -> str:
    """One call; 'ok', or the HTTP status of a refusal (its body checked for internal text)."""
    try:
        if streamed:
            stream = await client.chat.completions.create(
                model="gpt-4o-mini", messages=CHAT, max_tokens=20, stream=True
            )
            text = "".join([ch.choices[0].delta.content or "" async for ch in stream if ch.choices])
            assert text, "a stream that ended without content"
        else:
            await client.chat.completions.create(model="gpt-4o-mini", messages=CHAT, max_tokens=20)
        return "ok"
    except openai.APIStatusError as exc:
        body = exc.response.text
        assert not any(word in body for word in INTERNAL_WORDS), body
        return str(exc.status_code)


async def burst(base_urls: list[str], key: str, calls: int) -> list[str]:
    """`calls` concurrent calls with one key, every fourth streamed, spread over the proxies at `base_urls` in
    runs of four (so each proxy gets plain and streamed calls); their outcomes in order (see `call`)."""
    limits = httpx.Limits(max_connections=calls + 100, max_keepalive_connections=calls + 100)
    async with httpx.AsyncClient(limits=limits, timeout=120) as http:
        clients = [openai.AsyncOpenAI(base_url=u, api_key=key, max_retries=0, http_client=http) for u in base_urls]
        return await asyncio.gather(*[call(clients[i // 4 % len(clients)], streamed=i % 4 == 0) for i in range(calls)])


async def usage_count(db, account_id: int) -> int:
    async with db.connect() as conn:
        return (
            await conn.execute(
                sa.select(sa.func.count()).select_from(llm_usage).where(llm_usage.c.account_id == account_id)
            )
        ).scalar_one()


async def assert_every_served_call_billed_once(db, account_id: int, upstream) -> None:
    assert await usage_count(db, account_id) == upstream.calls("/v1/chat/completions")
    async with db.connect() as conn:
        statuses = (
            (await conn.execute(sa.select(credit_holds.c.status).where(credit_holds.c.account_id == account_id)))
            .scalars()
            .all()
        )
    assert "expired" not in statuses and "pending" not in statuses
    bal = await ledger.get_balance(db, account_id)
    assert bal.held_micros == 0 and bal.balance_micros >= 0
    report = await reconcile(db, Settings())
    assert not [m for m in report.mismatches if m.account_id == account_id]
    await assert_books_balance(db)
