"""The ledger's own PostgreSQL connections (gateway.ledger.pg_connections): a connection is lent again only
after a statement that completed or that the server refused; one cut on the wire or cancelled mid-statement
is closed, and the next statement runs on a fresh one; disposing the engine closes them."""

from __future__ import annotations

import asyncio

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from devtools.forwarder import TcpForwarder
from gateway import ledger
from gateway.db.engine import get_engine
from tests.conftest import new_request_id
from tests.ledger_checks import assert_books_balance


def _idle(book) -> list:
    return list(book.backend.connections()._idle)


async def test_a_connection_is_reused_after_success_and_after_a_refused_statement(db, account, book):
    await ledger.post_entry(db, account.id, 10_000, "admin_grant", new_request_id())
    rid = new_request_id()
    await book.hold(account.id, rid, 1_000)
    before = _idle(book)
    await book.hold(account.id, rid, 1_000)  # a replay: the server refuses the duplicate row
    assert _idle(book) == before  # the same connections, none closed
    assert all(not conn.is_closed() for conn in before)
    bal = await ledger.get_balance(db, account.id)
    assert bal.held_micros == 1_000  # held once
    await book.release(rid)


async def test_a_cancelled_statement_closes_its_connection(db, account, book):
    await ledger.post_entry(db, account.id, 10_000, "admin_grant", new_request_id())
    pool = book.backend.connections()
    await book.hold(account.id, new_request_id(), 100)  # at least one idle connection now
    lent = pool._idle[-1]  # the next to be lent (LIFO)

    async def slow_statement() -> None:
        async with pool.lend() as conn:
            assert conn is lent
            await conn.fetchrow("SELECT pg_sleep(5)")

    task = asyncio.create_task(slow_statement())
    await asyncio.sleep(0.2)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert lent.is_closed()
    assert lent not in pool._idle
    rid = new_request_id()
    held = await book.hold(account.id, rid, 100)  # the pool opens or lends another
    assert held.amount_micros == 100
    await assert_books_balance(db)


async def _open_connections(book, count: int) -> None:
    """Have the ledger's pool hold `count` idle connections (each lent at once, so each a connection of its own)."""
    pool = book.backend.connections()
    lent = asyncio.Event()
    started = 0

    async def borrow() -> None:
        nonlocal started
        async with pool.lend() as conn:
            await conn.fetchrow("SELECT 1")
            started += 1
            if started == count:
                lent.set()
            await lent.wait()

    await asyncio.gather(*[borrow() for _ in range(count)])


async def test_a_connection_cut_on_the_wire_is_replaced_and_the_statement_sent_again(pg_url, account):
    url = make_url(pg_url)
    with TcpForwarder(url.host or "127.0.0.1", url.port or 5432) as fwd:
        db = get_engine(url.set(host="127.0.0.1", port=int(fwd.netloc.rsplit(":", 1)[1])).render_as_string(False))
        book = ledger.open_ledger(db)  # disposing the engine closes its connections
        try:
            await ledger.post_entry(db, account.id, 10_000, "admin_grant", new_request_id())
            await _open_connections(book, 3)
            stale = _idle(book)
            assert len(stale) == 3
            fwd.cut()  # every open connection is reset ...
            fwd.restore()  # ... and the server is back: only the pooled connections are dead, every one of them
            rid = new_request_id()
            held = await book.hold(account.id, rid, 100)
            assert held.amount_micros == 100
            assert all(conn.is_closed() for conn in stale)
            assert not set(stale) & set(_idle(book))
            fwd.cut()  # now the server is gone: the statement fails as the database being unreachable
            with pytest.raises(sa.exc.OperationalError):
                await book.hold(account.id, new_request_id(), 100)
            fwd.restore()
            await book.release(rid)
            idle = _idle(book)
            await db.dispose()
            assert idle and all(conn.is_closed() for conn in idle)
        finally:
            await db.dispose()
    await assert_books_balance(get_engine(pg_url))
