"""Permanent refusals (issue 23, point 1): a write the database refuses for itself (a data or programming error,
not an outage) is never spooled, never retried, and never in the way of the writes behind it; it is logged
with its request id, counted, set aside in the spool and listed by `gateway reconcile`.

The refusal is real: a trigger installed in the test database refuses the writes of the model `poison-model`
(a data error, SQLSTATE 22023, on PostgreSQL; an integer overflow, SQLite's OperationalError of a plain
SQLITE_ERROR, on SQLite). Run on both backends.
"""

from __future__ import annotations

import sqlite3
from decimal import Decimal
from types import SimpleNamespace

import pytest
import sqlalchemy as sa
from litellm.proxy._types import UserAPIKeyAuth

from gateway import ledger
from gateway.cache.ttl import TTLCache
from gateway.config import Settings
from gateway.core.money import TokenPrices
from gateway.db.schema import credit_holds, llm_usage
from gateway.jobs.reconcile import reconcile
from gateway.ledger.spool import Spool
from gateway.observability import metrics
from gateway.proxy import billing, call_metrics, callbacks, planning
from gateway.proxy.errors import GatewayError
from gateway.proxy.inflight import tagged
from gateway.proxy.runtime import replace_runtime
from gateway.runtime import Runtime
from tests.conftest import new_request_id
from tests.integration.ledger.both_backends import both_backends_db  # noqa: F401 - fixture `db`: both backends
from tests.ledger_checks import assert_books_balance

POISON = "poison-model"  # its llm_usage rows and its holds' expiry are refused
POISON_HOLD = "poison-hold"  # its holds are refused
PG_TRIGGERS = [
    "CREATE OR REPLACE FUNCTION poison_refuse() RETURNS trigger LANGUAGE plpgsql AS "
    "$$ BEGIN RAISE EXCEPTION 'poisoned write' USING ERRCODE = '22023'; END $$",
    f"CREATE TRIGGER poison_usage BEFORE INSERT ON llm_usage FOR EACH ROW WHEN (NEW.model = '{POISON}') "
    "EXECUTE FUNCTION poison_refuse()",
    f"CREATE TRIGGER poison_hold BEFORE INSERT ON credit_holds FOR EACH ROW WHEN (NEW.model = '{POISON_HOLD}') "
    "EXECUTE FUNCTION poison_refuse()",
    "CREATE TRIGGER poison_expiry BEFORE UPDATE ON credit_holds FOR EACH ROW "
    f"WHEN (NEW.model = '{POISON}' AND NEW.status = 'expired') EXECUTE FUNCTION poison_refuse()",
]
PG_DROP = [
    "DROP TRIGGER IF EXISTS poison_usage ON llm_usage",
    "DROP TRIGGER IF EXISTS poison_hold ON credit_holds",
    "DROP TRIGGER IF EXISTS poison_expiry ON credit_holds",
    "DROP FUNCTION IF EXISTS poison_refuse()",
]
SQLITE_TRIGGERS = [
    f"CREATE TRIGGER poison_usage BEFORE INSERT ON llm_usage WHEN NEW.model = '{POISON}' "
    "BEGIN SELECT abs(-9223372036854775807 - 1); END",
    f"CREATE TRIGGER poison_hold BEFORE INSERT ON credit_holds WHEN NEW.model = '{POISON_HOLD}' "
    "BEGIN SELECT abs(-9223372036854775807 - 1); END",
    "CREATE TRIGGER poison_expiry BEFORE UPDATE ON credit_holds "
    f"WHEN NEW.model = '{POISON}' AND NEW.status = 'expired' BEGIN SELECT abs(-9223372036854775807 - 1); END",
]
SQLITE_DROP = [
    "DROP TRIGGER IF EXISTS poison_usage",
    "DROP TRIGGER IF EXISTS poison_hold",
    "DROP TRIGGER IF EXISTS poison_expiry",
]


@pytest.fixture
async def poisoned(db):
    postgres = db.dialect.name == "postgresql"
    async with db.begin() as conn:
        for statement in PG_TRIGGERS if postgres else SQLITE_TRIGGERS:
            await conn.execute(sa.text(statement))
    yield db
    async with db.begin() as conn:
        for statement in PG_DROP if postgres else SQLITE_DROP:
            await conn.execute(sa.text(statement))


def usage(account_id: int, request_id: str, model: str = "gpt-4o-mini", price: int = 700) -> ledger.Usage:
    return ledger.Usage(
        request_id=request_id,
        account_id=account_id,
        key_id=None,
        model=model,
        prompt_tokens=12,
        completion_tokens=8,
        provider_cost_micros=price // 2,
        user_price_micros=price,
        markup="2.0",
        streamed=False,
    )


def refusals(op: str) -> float:
    return metrics.LEDGER_REFUSALS.labels(op)._value.get()


def pending_in_spool(spool: Spool) -> int:
    with sqlite3.connect(spool.path) as conn:
        return conn.execute("SELECT count(*) FROM spooled WHERE failed = 0").fetchone()[0]


async def usage_rows(db, request_ids: list[str]) -> list[str]:
    async with db.connect() as conn:
        rows = await conn.execute(sa.select(llm_usage.c.request_id).where(llm_usage.c.request_id.in_(request_ids)))
        return sorted(rows.scalars())


async def refused_in_reconcile(db, spool_dir) -> list[str]:
    report = await reconcile(db, Settings(spool_dir=spool_dir))
    return [m.detail for m in report.mismatches if m.check.startswith("refused_")]


async def test_a_poison_entry_is_set_aside_and_the_entries_behind_it_are_applied(poisoned, account, tmp_path, book):
    db = poisoned
    await ledger.post_entry(db, account.id, 1_000_000, "admin_grant", new_request_id())
    poison, *good = [new_request_id() for _ in range(4)]
    await book.hold(account.id, poison, 1_000, model=POISON)
    for rid in good:
        await book.hold(account.id, rid, 1_000)
    spool = Spool(tmp_path)
    await spool.put_settle(usage(account.id, poison, POISON))  # first in line
    for rid in good:
        await spool.put_settle(usage(account.id, rid))
    before = refusals("settle")

    assert await spool.replay(book) == 3
    assert await usage_rows(db, [poison, *good]) == sorted(good)  # each good settle billed once
    assert pending_in_spool(spool) == 0 and await spool.replay(book) == 0  # the poison is never retried
    (entry,) = spool.refused()
    assert (entry.request_id, entry.kind, entry.account_id) == (poison, "settle", account.id)
    assert entry.reason.split(":")[0] in ("DBAPIError", "OperationalError")  # the database's refusal, named
    assert refusals("settle") == before + 1
    (detail,) = [d for d in await refused_in_reconcile(db, tmp_path) if poison in d]
    assert "settle of" in detail and entry.reason in detail
    await assert_books_balance(db)


@pytest.fixture
def live_runtime(db, book, tmp_path, monkeypatch):
    """The proxy's callbacks on the test database, with the poison models priced."""
    rt = Runtime(Settings(spool_dir=tmp_path), db, book, None, TTLCache(2), Spool(tmp_path))
    previous = replace_runtime(rt)
    prices = TokenPrices(Decimal("1e-7"), Decimal("1e-6"), 1000)
    for module in (billing, planning):
        monkeypatch.setattr(module, "prices_for", lambda model: prices)
    monkeypatch.setattr(call_metrics, "model_label", lambda model: "other")
    yield rt
    replace_runtime(previous)


def chat(model: str) -> dict:
    return {"model": model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 10}


async def test_a_settle_refused_on_the_request_path_is_a_500_never_spooled(poisoned, account, live_runtime):
    db, rt = poisoned, live_runtime
    await ledger.post_entry(db, account.id, 1_000_000, "admin_grant", new_request_id())
    who = UserAPIKeyAuth(token="t", metadata={"gateway_account_id": account.id, "gateway_key_id": None})
    hooks = callbacks.BillingCallbacks()
    data = await hooks.async_pre_call_hook(who, None, chat(POISON), "acompletion")
    request_id = tagged(data).request_id
    response = SimpleNamespace(usage=SimpleNamespace(prompt_tokens=5, completion_tokens=7), _hidden_params={})
    before = refusals("settle")

    with pytest.raises(GatewayError) as err:
        await hooks.async_post_call_success_hook(data, who, response)

    assert err.value.code == "500" and request_id in err.value.message  # ours, naming the request
    assert "poison" not in err.value.message  # the driver's words stay in our log
    assert pending_in_spool(rt.spool) == 0  # never spooled: a replay would only fail again
    (entry,) = rt.spool.refused()
    assert (entry.request_id, entry.kind, entry.account_id) == (request_id, "settle", account.id)
    assert entry.payload["model"] == POISON and entry.payload["completion_tokens"] == 7
    assert refusals("settle") == before + 1
    assert hooks.billing.inflight.get(data) is None  # closed: the backstop does not try it again
    assert any(request_id in d for d in await refused_in_reconcile(db, rt.spool.path.parent))
    await assert_books_balance(db)


async def test_a_hold_refused_permanently_is_a_500_and_spools_nothing(poisoned, account, live_runtime):
    db, rt = poisoned, live_runtime
    await ledger.post_entry(db, account.id, 1_000_000, "admin_grant", new_request_id())
    who = UserAPIKeyAuth(token="t", metadata={"gateway_account_id": account.id, "gateway_key_id": None})
    before = refusals("hold")
    with pytest.raises(GatewayError) as err:
        await callbacks.BillingCallbacks().async_pre_call_hook(who, None, chat(POISON_HOLD), "acompletion")
    assert err.value.code == "500" and "request id" in err.value.message  # not "billing unavailable" (503)
    assert not rt.spool.path.exists() or pending_in_spool(rt.spool) == 0  # no release spooled for it
    assert refusals("hold") == before + 1
    await assert_books_balance(db)


async def test_a_hold_whose_expiry_is_refused_never_stops_the_sweep(poisoned, account, book):
    db = poisoned
    await ledger.post_entry(db, account.id, 1_000_000, "admin_grant", new_request_id())
    poison, *good = [new_request_id() for _ in range(3)]
    await book.hold(account.id, poison, 1_000, ttl_seconds=0, model=POISON)  # the oldest: swept first
    for rid in good:
        await book.hold(account.id, rid, 1_000, ttl_seconds=0)
    before = refusals("expire")

    expired = await book.expire_stale_holds()

    assert set(good) <= set(expired) and poison not in expired
    async with db.connect() as conn:
        status = (
            await conn.execute(sa.select(credit_holds.c.status).where(credit_holds.c.request_id == poison))
        ).scalar_one()
    assert status == "pending"
    assert refusals("expire") == before + 1
    await assert_books_balance(db)
