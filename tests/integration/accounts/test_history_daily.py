"""Spend per UTC day and model (gateway.history_daily) on PostgreSQL and SQLite: exact sums across a UTC
day boundary, a day without calls present as zeros, other accounts and days outside the window left out,
uncollected amounts not counted as charged, and one SQL statement per window."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta

import pytest
import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from devtools.pg import migrated_database
from gateway.accounts.history_daily import Spend, daily_usage
from gateway.accounts.wallets import get_or_create_account
from gateway.db.migrate import upgrade
from gateway.db.schema import llm_usage
from tests.conftest import random_wallet

TODAY = date(2026, 3, 10)
UTC = UTC


def at(day: date, hh: int, mm: int = 0, ss: int = 0, us: int = 0) -> datetime:
    return datetime(day.year, day.month, day.day, hh, mm, ss, us, tzinfo=UTC)


async def _call(db: AsyncEngine, account_id: int, model: str, when: datetime, prompt: int, completion: int,
                price: int, uncollected: int = 0) -> None:  # fmt: skip
    async with db.begin() as conn:
        await conn.execute(sa.insert(llm_usage).values(
            request_id=f"daily-{uuid.uuid4()}", account_id=account_id, model=model, prompt_tokens=prompt,
            completion_tokens=completion, total_tokens=prompt + completion, provider_cost_micros=price // 2,
            user_price_micros=price, markup="2.0", uncollected_micros=uncollected, created_at=when,
        ))  # fmt: skip


async def _seed(db: AsyncEngine) -> int:
    me = (await get_or_create_account(db, random_wallet())).id
    stranger = (await get_or_create_account(db, random_wallet())).id
    d1, d2, d3 = TODAY - timedelta(days=2), TODAY - timedelta(days=1), TODAY
    await _call(db, me, "gpt-4o-mini", at(d1, 23, 59, 59, 999_999), 10, 20, 1_001)  # last instant of d1 ...
    await _call(db, me, "gpt-4o-mini", at(d2, 0, 0, 0), 1, 2, 3)  # ... first instant of d2
    await _call(db, me, "claude", at(d1, 12), 100, 200, 50_000, uncollected=7)
    await _call(db, me, "gpt-4o-mini", at(d1, 1), 5, 5, 999)
    # d2 has gpt-4o-mini only; nothing at all the day before d1 (inside a 4-day window): zeros
    await _call(db, me, "claude", at(d3, 23, 0), 3, 4, 10)
    await _call(db, me, "claude", at(TODAY - timedelta(days=4), 12), 1, 1, 123_456)  # before a 4-day window
    await _call(db, me, "claude", at(TODAY + timedelta(days=1), 0, 0, 1), 1, 1, 654_321)  # after it
    await _call(db, stranger, "gpt-4o-mini", at(d2, 12), 9, 9, 777_777)  # someone else's
    return me


def _count_statements(db: AsyncEngine) -> list[str]:
    seen: list[str] = []
    event.listen(db.sync_engine, "before_cursor_execute", lambda _c, _cur, statement, *_: seen.append(statement))
    return seen


async def _check(db: AsyncEngine) -> None:
    me = await _seed(db)
    statements = _count_statements(db)
    usage = await daily_usage(db, me, days=4, today=TODAY)
    assert len(statements) == 1 and "GROUP BY" in statements[0].upper()
    assert [d.day for d in usage.days] == [TODAY - timedelta(days=n) for n in (3, 2, 1, 0)]
    empty, d1, d2, d3 = usage.days
    assert empty.total == Spend() and empty.by_model == {}
    assert d1.by_model == {"claude": Spend(1, 100, 200, 49_993), "gpt-4o-mini": Spend(2, 15, 25, 2_000)}
    assert list(d1.by_model) == ["claude", "gpt-4o-mini"]  # dearest first
    assert d1.total == Spend(3, 115, 225, 51_993)
    assert d2.by_model == {"gpt-4o-mini": Spend(1, 1, 2, 3)}
    assert d3.by_model == {"claude": Spend(1, 3, 4, 10)}
    assert usage.by_model == {"claude": Spend(2, 103, 204, 50_003), "gpt-4o-mini": Spend(3, 16, 27, 2_003)}
    assert usage.total == Spend(5, 119, 231, 52_006)
    assert (usage.first_day, usage.last_day) == (TODAY - timedelta(days=3), TODAY)


@pytest.fixture
def private_pg_url() -> Iterator[str]:
    """A database of this test's own: its calls have no ledger rows, and the run's shared books must balance."""
    with migrated_database() as url:
        yield url


async def test_daily_sums_on_postgresql_whatever_the_session_time_zone(private_pg_url: str) -> None:
    # a session 14 hours ahead of UTC: days must still be UTC days
    engine = create_async_engine(private_pg_url, connect_args={"server_settings": {"timezone": "Pacific/Kiritimati"}})
    try:
        await _check(engine)
    finally:
        await engine.dispose()


async def test_daily_sums_on_sqlite(tmp_path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'gateway.db'}"
    upgrade(url)
    engine = create_async_engine(url)
    try:
        await _check(engine)
    finally:
        await engine.dispose()


async def test_a_new_account_has_a_window_of_zeros(db: AsyncEngine) -> None:
    account = await get_or_create_account(db, random_wallet())
    usage = await daily_usage(db, account.id, days=30)
    assert len(usage.days) == 30 and usage.total == Spend() and usage.by_model == {}
    assert usage.last_day == datetime.now(UTC).date()


@pytest.mark.parametrize("days", [0, -1, 367])
async def test_the_window_is_bounded(db: AsyncEngine, days: int) -> None:
    with pytest.raises(ValueError):
        await daily_usage(db, 1, days=days)
