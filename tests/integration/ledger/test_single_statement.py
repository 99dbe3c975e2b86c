"""The PostgreSQL path of the ledger: hold, settle and release are one autocommit statement each, with the
same outcomes as the portable transaction (tests/integration/ledger/test_ledger.py covers the rules on this
same path)."""

from __future__ import annotations

import asyncio
import contextlib

import pytest
import sqlalchemy as sa

from gateway import ledger
from gateway.accounts.wallets import Account
from gateway.db.schema import credit_holds
from tests.conftest import new_request_id
from tests.integration.ledger.test_ledger import usage_for
from tests.ledger_checks import assert_books_balance


@contextlib.contextmanager
def statements(db, book):
    """The first word of every statement sent to PostgreSQL meanwhile (BEGIN and COMMIT included), on the
    connections of SQLAlchemy's pool and of the ledger's own (gateway.ledger.pg_connections)."""
    seen: list[str] = []

    def log(query) -> None:
        seen.append(query.query.split()[0].upper())

    def on_checkout(dbapi_conn, record, proxy) -> None:
        record.driver_connection.add_query_logger(log)

    def on_checkin(dbapi_conn, record) -> None:
        record.driver_connection.remove_query_logger(log)

    pool = book.backend.connections()
    lend = pool.lend

    @contextlib.asynccontextmanager
    async def logged_lend():
        async with lend() as conn:
            conn.add_query_logger(log)
            try:
                yield conn
            finally:
                await asyncio.sleep(0)  # asyncpg calls its query loggers soon after the statement, not during it
                conn.remove_query_logger(log)

    sa.event.listen(db.sync_engine.pool, "checkout", on_checkout)
    sa.event.listen(db.sync_engine.pool, "checkin", on_checkin)
    pool.lend = logged_lend
    try:
        yield seen
    finally:
        del pool.lend
        sa.event.remove(db.sync_engine.pool, "checkout", on_checkout)
        sa.event.remove(db.sync_engine.pool, "checkin", on_checkin)


async def test_hold_settle_release_are_one_statement_each(db, account, book):
    await ledger.post_entry(db, account.id, 10_000, "admin_grant", new_request_id())
    rid, other = new_request_id(), new_request_id()
    with statements(db, book) as seen:
        await book.hold(account.id, rid, 4_000)
    assert seen == ["WITH"]  # one statement: no BEGIN, no COMMIT
    with statements(db, book) as seen:
        await book.settle(usage_for(account, rid, 1_500))
    assert seen == ["WITH"]
    with statements(db, book) as seen:
        await book.hold(account.id, other, 1_000, min_micros=10)  # flexible, and it fits in full
        assert await book.release(other) is True
    assert seen == ["WITH", "WITH"]
    bal = await ledger.get_balance(db, account.id)
    assert (bal.balance_micros, bal.held_micros) == (8_500, 0)
    await assert_books_balance(db)


async def test_settle_for_an_unknown_account_writes_nothing(db, account, book):
    await ledger.post_entry(db, account.id, 10_000, "admin_grant", new_request_id())
    rid = new_request_id()
    await book.hold(account.id, rid, 3_000)
    stranger = Account(10**12, 10**12, "0x" + "00" * 20)
    with pytest.raises(ledger.UnknownAccount):
        await book.settle(usage_for(stranger, rid, 1_000))
    async with db.connect() as conn:
        status = (
            await conn.execute(sa.select(credit_holds.c.status).where(credit_holds.c.request_id == rid))
        ).scalar_one()
    assert status == "pending"  # the hold was not closed by the refused settle
    bal = await ledger.get_balance(db, account.id)
    assert (bal.balance_micros, bal.held_micros) == (10_000, 3_000)
    await assert_books_balance(db)


async def test_a_replayed_settle_returns_the_first_charge_whatever_it_says(db, account, book):
    await ledger.post_entry(db, account.id, 10_000, "admin_grant", new_request_id())
    rid = new_request_id()
    await book.hold(account.id, rid, 2_000)
    first = await book.settle(usage_for(account, rid, 1_500))
    again = await book.settle(usage_for(account, rid, 9_000))
    assert again.replayed and (again.user_price_micros, again.balance_after_micros) == (
        1_500,
        first.balance_after_micros,
    )
    assert (await ledger.get_balance(db, account.id)).balance_micros == 8_500
    await assert_books_balance(db)


async def test_flexible_hold_on_a_short_account_falls_back_and_takes_what_is_left(db, account, book):
    await ledger.post_entry(db, account.id, 900, "admin_grant", new_request_id())
    await book.hold(account.id, new_request_id(), 400)
    h = await book.hold(account.id, new_request_id(), 1_000, min_micros=100)
    assert (h.amount_micros, h.held_micros) == (500, 900)
    with pytest.raises(ledger.InsufficientCredit) as err:
        await book.hold(account.id, new_request_id(), 50)
    assert (err.value.balance_micros, err.value.held_micros, err.value.requested_micros) == (900, 900, 50)
    await assert_books_balance(db)


async def test_a_hold_cancelled_while_waiting_on_a_locked_account_leaves_the_pool_usable(db, account, book):
    await ledger.post_entry(db, account.id, 10_000, "admin_grant", new_request_id())
    async with db.connect() as blocker:  # another transaction holds the account's row lock
        await blocker.execute(sa.text("SELECT 1 FROM billing_accounts WHERE id = :id FOR UPDATE"), {"id": account.id})
        waiting = asyncio.create_task(book.hold(account.id, new_request_id(), 100))
        await asyncio.sleep(0.3)
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        await blocker.rollback()
    held = await asyncio.gather(*[book.hold(account.id, new_request_id(), 10) for _ in range(20)])
    assert len(held) == 20
    await assert_books_balance(db)
