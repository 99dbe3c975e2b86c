"""Per-key credit limits in the ledger, on PostgreSQL (one statement) and SQLite (portable): the limit is
decided in the hold's own conditional write, a settle and a release give back to the period the hold counted
in, and a period rolls over on a clock the test controls."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from gateway import ledger
from gateway.accounts import keys
from gateway.accounts.keys import create_key, get_key, list_keys, set_limit
from gateway.accounts.wallets import get_or_create_account
from gateway.db.schema import credit_holds, llm_usage, virtual_keys
from tests.conftest import new_request_id, random_wallet
from tests.integration.ledger.both_backends import both_backends_db  # noqa: F401 - fixture `db`: both backends
from tests.ledger_checks import assert_books_balance

NOW = datetime(2026, 12, 31, 23, 0, tzinfo=UTC)  # one hour before a daily, and a monthly, reset


def usage(account_id: int, key_id: int, rid: str, price: int) -> ledger.Usage:
    return ledger.Usage(rid, account_id, key_id, "demo", 10, 5, price // 2, price, "2.0")


async def funded(db, account, micros: int = 1_000_000) -> None:
    await ledger.post_entry(db, account.id, micros, "admin_grant", new_request_id())


async def assert_key_use_matches_holds(db, key_id: int, now: datetime = NOW) -> None:
    """The key's period use == its pending holds + the charges of its settled calls, in the current period."""
    limit = await ledger.get_key_limit(db, key_id, now)
    async with db.connect() as conn:
        rows = (
            await conn.execute(
                sa.select(credit_holds.c.status, credit_holds.c.amount_micros, credit_holds.c.key_period_start,
                          (llm_usage.c.user_price_micros - llm_usage.c.uncollected_micros).label("charged"))
                .outerjoin(llm_usage, llm_usage.c.request_id == credit_holds.c.request_id)
                .where(credit_holds.c.key_id == key_id)
            )
        ).all()  # fmt: skip
    from gateway.core.limits import period_start
    from gateway.db.schema import as_utc

    start = period_start(limit.reset, now)
    counted = [r for r in rows if r.key_period_start is not None and as_utc(r.key_period_start) == start]
    expected = sum(r.amount_micros if r.status == "pending" else (r.charged or 0) for r in counted)
    assert limit.used_micros == expected


async def test_concurrent_holds_on_one_key_never_pass_its_limit(db, account, book):
    await funded(db, account)
    key = (await create_key(db, account.id, "capped", limit_micros=10_000, reset="monthly")).info
    other = (await create_key(db, account.id, "free")).info

    async def try_hold(key_id: int) -> bool:
        try:
            await book.hold(account.id, new_request_id(), 1_000, key_id=key_id, now=NOW)
            return True
        except ledger.KeyLimitExceeded:
            return False

    results = await asyncio.gather(*[try_hold(key.id) for _ in range(100)])
    assert sum(results) == 10
    limit = await ledger.get_key_limit(db, key.id, NOW)
    assert (limit.used_micros, limit.remaining_micros) == (10_000, 0)
    assert limit.resets_at == datetime(2027, 1, 1, tzinfo=UTC)
    assert all(await asyncio.gather(*[try_hold(other.id) for _ in range(20)]))  # the account's other key
    bal = await ledger.get_balance(db, account.id)
    assert bal.held_micros == 30_000
    await assert_key_use_matches_holds(db, key.id)


async def test_the_refusal_names_limit_use_and_reset(db, account, book):
    await funded(db, account)
    key = (await create_key(db, account.id, limit_micros=1_500, reset="daily")).info
    await book.hold(account.id, new_request_id(), 1_000, key_id=key.id, now=NOW)
    with pytest.raises(ledger.KeyLimitExceeded) as refused:
        await book.hold(account.id, new_request_id(), 1_000, key_id=key.id, now=NOW)
    assert (refused.value.limit.limit_micros, refused.value.limit.used_micros) == (1_500, 1_000)
    text = str(refused.value)
    assert "1.5 credits per day" in text and "1 credits are used" in text and "2027-01-01T00:00:00+00:00" in text
    assert (await ledger.get_balance(db, account.id)).held_micros == 1_000  # the refusal changed nothing


async def test_the_account_short_is_insufficient_credit_and_counts_nothing_on_the_key(db, account, book):
    await funded(db, account, 500)
    key = (await create_key(db, account.id, limit_micros=10_000, reset="none")).info
    with pytest.raises(ledger.InsufficientCredit):
        await book.hold(account.id, new_request_id(), 1_000, key_id=key.id, now=NOW)
    assert (await ledger.get_key_limit(db, key.id, NOW)).used_micros == 0


async def test_settle_gives_back_the_rest_of_the_hold_and_release_all_of_it(db, account, book):
    await funded(db, account)
    key = (await create_key(db, account.id, limit_micros=5_000, reset="monthly")).info
    settled, released = new_request_id(), new_request_id()
    await book.hold(account.id, settled, 2_000, key_id=key.id, now=NOW)
    await book.hold(account.id, released, 2_000, key_id=key.id, now=NOW)
    await book.settle(usage(account.id, key.id, settled, 700))
    await book.settle(usage(account.id, key.id, settled, 700))  # a replay gives back nothing more
    await book.release(released)
    await book.release(released)
    assert (await ledger.get_key_limit(db, key.id, NOW)).used_micros == 700
    await assert_key_use_matches_holds(db, key.id)
    await assert_books_balance(db)


async def test_a_flexible_hold_reserves_what_the_key_limit_leaves(db, account, book):
    await funded(db, account)
    key = (await create_key(db, account.id, limit_micros=3_000, reset="none")).info
    first = await book.hold(account.id, new_request_id(), 5_000, min_micros=100, key_id=key.id, now=NOW)
    assert first.amount_micros == 3_000
    with pytest.raises(ledger.KeyLimitExceeded):
        await book.hold(account.id, new_request_id(), 5_000, min_micros=100, key_id=key.id, now=NOW)
    await assert_key_use_matches_holds(db, key.id)


async def test_a_period_rolls_over_and_late_closes_leave_the_new_period_alone(db, account, book):
    await funded(db, account)
    key = (await create_key(db, account.id, limit_micros=2_000, reset="daily")).info
    old = new_request_id()
    await book.hold(account.id, old, 2_000, key_id=key.id, now=NOW)
    with pytest.raises(ledger.KeyLimitExceeded):
        await book.hold(account.id, new_request_id(), 1, key_id=key.id, now=NOW + timedelta(minutes=59))
    tomorrow = NOW + timedelta(hours=1)  # 2027-01-01 00:00 UTC
    assert (await ledger.get_key_limit(db, key.id, tomorrow)).used_micros == 0
    new = new_request_id()
    await book.hold(account.id, new, 1_500, key_id=key.id, now=tomorrow)
    await book.settle(usage(account.id, key.id, old, 400))  # yesterday's call ends today
    limit = await ledger.get_key_limit(db, key.id, tomorrow)
    assert (limit.used_micros, limit.resets_at) == (1_500, datetime(2027, 1, 2, tzinfo=UTC))
    await assert_key_use_matches_holds(db, key.id, tomorrow)
    await assert_books_balance(db)


async def test_set_limit_changes_and_removes_the_limit_and_keeps_the_use(db, account, book):
    await funded(db, account)
    key = (await create_key(db, account.id)).info
    await book.hold(account.id, new_request_id(), 1_000, key_id=key.id, now=NOW)
    assert (await get_key(db, key.id, NOW)).limit.used_micros == 1_000  # shown without a limit too
    capped = await set_limit(db, key.id, 1_000, "none", account_id=account.id)
    assert capped is not None and capped.limit.limit_micros == 1_000
    with pytest.raises(ledger.KeyLimitExceeded):
        await book.hold(account.id, new_request_id(), 1, key_id=key.id, now=NOW)
    assert await set_limit(db, key.id, None, "none", account_id=account.id + 1) is None  # not that account's key
    await set_limit(db, key.id, None, "none")
    await book.hold(account.id, new_request_id(), 1, key_id=key.id, now=NOW)
    with pytest.raises(ValueError):
        await set_limit(db, key.id, -1, "none")
    with pytest.raises(ValueError):
        await set_limit(db, key.id, 1, "hourly")


async def key_row_version(db, key_id: int) -> tuple:
    """What changes whenever the key's row is written: on PostgreSQL its `xmin` (every UPDATE makes a new row
    version, even one that leaves the values as they were), on SQLite the row itself."""
    async with db.connect() as conn:
        if db.dialect.name == "postgresql":
            query = sa.text("SELECT xmin::text AS version, * FROM virtual_keys WHERE id = :id")
            return tuple((await conn.execute(query, {"id": key_id})).one())
        return tuple((await conn.execute(sa.select(virtual_keys).where(virtual_keys.c.id == key_id))).one())


async def test_an_unlimited_keys_holds_settles_and_releases_leave_its_row_unwritten(db, account, book):
    await funded(db, account)
    key = (await create_key(db, account.id, "free")).info
    before = await key_row_version(db, key.id)
    settled, released = new_request_id(), new_request_id()
    await book.hold(account.id, settled, 2_000, key_id=key.id, now=NOW)
    await book.hold(account.id, released, 2_000, key_id=key.id, now=NOW)
    await book.hold(account.id, new_request_id(), 50_000, min_micros=100, key_id=key.id, now=NOW)  # flexible
    await book.settle(usage(account.id, key.id, settled, 700))
    await book.release(released)
    assert await key_row_version(db, key.id) == before
    async with db.connect() as conn:
        counted_in = (await conn.execute(sa.select(credit_holds.c.key_period_start).where(
            credit_holds.c.key_id == key.id))).scalars().all()  # fmt: skip
    assert counted_in == [None, None, None]
    await assert_books_balance(db)


async def test_a_hold_on_another_accounts_unlimited_key_is_refused(db, account, book):
    await funded(db, account)
    stranger = await get_or_create_account(db, random_wallet())
    key = (await create_key(db, stranger.id, "theirs")).info
    with pytest.raises(ledger.KeyLimitExceeded):
        await book.hold(account.id, new_request_id(), 1_000, key_id=key.id, now=NOW)
    assert (await ledger.get_balance(db, account.id)).held_micros == 0


async def test_an_unlimited_keys_shown_use_is_its_charges_and_pending_holds(db, account, book):
    await funded(db, account)
    key = (await create_key(db, account.id, "free")).info
    other = (await create_key(db, account.id, "other")).info
    settled, pending, released = new_request_id(), new_request_id(), new_request_id()
    await book.hold(account.id, settled, 2_000, key_id=key.id)
    await book.hold(account.id, pending, 1_500, key_id=key.id)
    await book.hold(account.id, released, 3_000, key_id=key.id)
    await book.hold(account.id, new_request_id(), 400, key_id=other.id)
    await book.settle(usage(account.id, key.id, settled, 700))
    await book.release(released)
    assert (await get_key(db, key.id)).limit.used_micros == 700 + 1_500
    shown = {k.id: k.limit.used_micros for k in await list_keys(db, account.id)}
    assert (shown[key.id], shown[other.id]) == (2_200, 400)


async def test_an_unlimited_daily_keys_shown_use_leaves_out_earlier_days(db, account, book):
    await funded(db, account)
    key = (await create_key(db, account.id, "free", reset="daily")).info
    yesterday, today = new_request_id(), new_request_id()
    for rid, price in ((yesterday, 300), (today, 500)):
        await book.hold(account.id, rid, 1_000, key_id=key.id)
        await book.settle(usage(account.id, key.id, rid, price))
    async with db.begin() as conn:
        await conn.execute(sa.update(llm_usage).where(llm_usage.c.request_id == yesterday).values(
            created_at=datetime.now(UTC) - timedelta(days=1, hours=1)))  # fmt: skip
    info = await get_key(db, key.id)
    assert (info.limit.limit_micros, info.limit.used_micros) == (None, 500)
    assert [k.limit.used_micros for k in await list_keys(db, account.id) if k.id == key.id] == [500]


async def test_a_limit_set_mid_period_counts_earlier_spend_and_holds_in_flight(db, account, book):
    await funded(db, account)
    key = (await create_key(db, account.id, "free")).info
    settled, pending, released = new_request_id(), new_request_id(), new_request_id()
    await book.hold(account.id, settled, 2_000, key_id=key.id)
    await book.hold(account.id, pending, 1_500, key_id=key.id)
    await book.hold(account.id, released, 3_000, key_id=key.id)
    await book.settle(usage(account.id, key.id, settled, 700))
    await book.release(released)

    capped = await set_limit(db, key.id, 5_000, "none", account_id=account.id)
    assert capped is not None and (capped.limit.limit_micros, capped.limit.used_micros) == (5_000, 2_200)
    assert (await ledger.get_key_limit(db, key.id)).used_micros == 2_200
    with pytest.raises(ledger.KeyLimitExceeded):
        await book.hold(account.id, new_request_id(), 2_801, key_id=key.id)
    last = new_request_id()
    await book.hold(account.id, last, 2_800, key_id=key.id)
    await book.release(last)
    await book.settle(usage(account.id, key.id, pending, 400))  # held before the limit, settled after
    assert (await ledger.get_key_limit(db, key.id)).used_micros == 700 + 400
    assert (await get_key(db, key.id)).limit.used_micros == 1_100
    await assert_books_balance(db)


WAITING_ON_LOCKS = sa.text(
    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
)


async def test_a_settle_and_a_release_waiting_on_set_limit_move_the_count_it_started(db, account, book, monkeypatch):
    """A settle and a release whose statements start while set_limit's transaction is open (after it marked
    their holds as counted) wait for its commit, and then move the new count as any counted hold's would."""
    if db.dialect.name != "postgresql":
        pytest.skip("SQLite runs one writer at a time: nothing runs inside set_limit's transaction")
    await funded(db, account)
    key = (await create_key(db, account.id, "free")).info
    settled, released = new_request_id(), new_request_id()
    await book.hold(account.id, settled, 2_000, key_id=key.id)
    await book.hold(account.id, released, 3_000, key_id=key.id)
    closes: list[asyncio.Task] = []
    show = keys._shown

    async def shown_once_the_closes_wait(conn, rows, now):  # the last step of set_limit's transaction
        closes.append(asyncio.create_task(book.settle(usage(account.id, key.id, settled, 700))))
        closes.append(asyncio.create_task(book.release(released)))
        for _ in range(200):
            async with db.connect() as probe:
                waiting = await probe.scalar(WAITING_ON_LOCKS)
            if waiting == 2:
                break
            await asyncio.sleep(0.01)
        assert waiting == 2 and not any(close.done() for close in closes)
        return await show(conn, rows, now)

    monkeypatch.setattr(keys, "_shown", shown_once_the_closes_wait)
    capped = await set_limit(db, key.id, 10_000, "none")
    assert capped is not None and capped.limit.used_micros == 5_000  # both holds counted
    await asyncio.gather(*closes)
    assert (await ledger.get_key_limit(db, key.id)).used_micros == 700
    await assert_books_balance(db)
