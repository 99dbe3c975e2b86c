"""An operator's freeze on the real proxy: the account's next call (after the key cache TTL at most) is 403
`account_frozen` before any hold or upstream call; a top-up-like credit still lands; unfreezing lets calls
through again."""

from __future__ import annotations

import asyncio
import time

import openai
import pytest
import sqlalchemy as sa

from gateway import ledger
from gateway.cache.ttl import key_cache_for
from gateway.config import Settings
from gateway.db.schema import credit_holds
from gateway.ops import actions
from tests.e2e.conftest import REDIS_URL

pytestmark = pytest.mark.timeout(180)
CHAT = [{"role": "user", "content": "Say something short."}]
OPERATOR = "0x" + "0f" * 20


async def _holds(db, account_id: int) -> int:
    async with db.connect() as conn:
        query = sa.select(sa.func.count()).where(credit_holds.c.account_id == account_id)
        return (await conn.execute(query)).scalar_one()


async def test_a_frozen_accounts_calls_are_403_before_any_hold(db, make_customer, upstream):
    c = await make_customer()
    cache = key_cache_for(Settings(redis_url=REDIS_URL))
    c.client.chat.completions.create(model="gpt-4o-mini", messages=CHAT, max_tokens=5)  # cached: not frozen
    calls_before, holds_before = upstream.calls("chat/completions"), await _holds(db, c.account.id)
    balance = (await ledger.get_balance(db, c.account.id)).balance_micros

    await actions.freeze(db, cache, OPERATOR, c.account.id, True, "e2e freeze", f"e2e-freeze-{c.account.id}")
    deadline = time.monotonic() + Settings().key_cache_ttl_seconds + 1  # a worker's own copy lives at most 1 s
    while True:
        try:
            c.client.chat.completions.create(model="gpt-4o-mini", messages=CHAT, max_tokens=5)
        except openai.PermissionDeniedError as exc:
            refused = exc
            break
        assert time.monotonic() < deadline, "calls still admitted after the key cache TTL"
        calls_before, holds_before = upstream.calls("chat/completions"), await _holds(db, c.account.id)
        balance = (await ledger.get_balance(db, c.account.id)).balance_micros
        await asyncio.sleep(0.2)
    assert refused.body["code"] == "account_frozen"
    assert (upstream.calls("chat/completions"), await _holds(db, c.account.id)) == (calls_before, holds_before)
    await ledger.post_entry(db, c.account.id, 7, "onchain_payment", f"e2e-frozen-topup-{c.account.id}")
    assert (await ledger.get_balance(db, c.account.id)).balance_micros == balance + 7

    await actions.freeze(db, cache, OPERATOR, c.account.id, False, "e2e thaw", f"e2e-thaw-{c.account.id}")
    deadline = time.monotonic() + Settings().key_cache_ttl_seconds + 1  # another worker's copy may linger 1 s
    while True:
        try:
            c.client.chat.completions.create(model="gpt-4o-mini", messages=CHAT, max_tokens=5)
            break
        except openai.PermissionDeniedError:
            assert time.monotonic() < deadline, "still frozen after the key cache TTL"
            await asyncio.sleep(0.2)
    assert upstream.calls("chat/completions") == calls_before + 1
