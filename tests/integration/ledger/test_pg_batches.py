"""Group commit on PostgreSQL (gateway.ledger.pg_batches): concurrent holds and settles of one process share
round trips and commits, and every one of them gets the answer it would get alone."""

from __future__ import annotations

import asyncio

import pytest

from gateway import ledger
from gateway.ledger import postgres
from tests.conftest import new_request_id
from tests.integration.ledger.test_ledger import usage_for
from tests.ledger_checks import assert_books_balance


@pytest.fixture
def sends(monkeypatch) -> list[int]:
    """The size of every batch sent to PostgreSQL meanwhile (the test's own ledger batches through the spy)."""
    sizes: list[int] = []
    real = postgres.OneStatement._send

    async def counting(self, sql, arg_sets):
        sizes.append(len(arg_sets))
        return await real(self, sql, arg_sets)

    monkeypatch.setattr(postgres.OneStatement, "_send", counting)
    return sizes


async def test_concurrent_holds_share_batches_and_never_reserve_more_than_the_balance(db, account, sends, book):
    await ledger.post_entry(db, account.id, 25_000, "admin_grant", new_request_id())
    rids = [new_request_id() for _ in range(40)]
    results = await asyncio.gather(*[book.hold(account.id, rid, 1_000) for rid in rids], return_exceptions=True)
    held = [r for r in results if isinstance(r, ledger.Hold)]
    refused = [r for r in results if isinstance(r, ledger.InsufficientCredit)]
    assert (len(held), len(refused)) == (25, 15)
    assert sum(sends) == 40 and len(sends) < 40 and max(sends) > 1  # shared batches, each statement sent once
    bal = await ledger.get_balance(db, account.id)
    assert (bal.balance_micros, bal.held_micros) == (25_000, 25_000)
    settled = await asyncio.gather(*[book.settle(usage_for(account, h.request_id, 400)) for h in held])
    assert all(not s.replayed for s in settled)
    bal = await ledger.get_balance(db, account.id)
    assert (bal.balance_micros, bal.held_micros) == (25_000 - 25 * 400, 0)
    await assert_books_balance(db)


async def test_a_refused_statement_gets_its_own_answer_and_the_rest_of_its_batch_theirs(db, account, sends, book):
    await ledger.post_entry(db, account.id, 10_000, "admin_grant", new_request_id())
    replayed = new_request_id()
    await book.hold(account.id, replayed, 100)
    sends.clear()
    lead, first, second = new_request_id(), new_request_id(), new_request_id()
    results = await asyncio.gather(
        book.hold(account.id, lead, 50),  # an idle batcher sends it at once: the next three wait for it
        book.hold(account.id, first, 200),
        book.hold(account.id, replayed, 100),  # a duplicate row: the batch rolls back ...
        book.hold(account.id, second, 300),
    )
    assert sends == [1, 3, 1, 1, 1]  # ... and each statement is sent again on its own
    assert [h.request_id for h in results] == [lead, first, replayed, second]
    assert [h.amount_micros for h in results] == [50, 200, 100, 300]
    bal = await ledger.get_balance(db, account.id)
    assert bal.held_micros == 650  # the replay held nothing more
    for rid in (lead, first, replayed, second):
        assert await book.release(rid) is True
    await assert_books_balance(db)


async def test_a_settle_batch_charges_each_call_against_the_balance_the_ones_before_it_left(db, account, sends, book):
    await ledger.post_entry(db, account.id, 1_000, "admin_grant", new_request_id())
    rids = [new_request_id() for _ in range(4)]
    for rid in rids:
        await book.hold(account.id, rid, 250)
    sends.clear()
    # each call's price is above its hold: a settle never takes more than its own hold, even in a batch
    settled = await asyncio.gather(*[book.settle(usage_for(account, rid, 400)) for rid in rids])
    assert sends and sum(sends) == 4 and max(sends) > 1
    assert [s.uncollected_micros for s in settled] == [150] * 4
    bal = await ledger.get_balance(db, account.id)
    assert (bal.balance_micros, bal.held_micros) == (0, 0)
    await assert_books_balance(db)
