"""Ledger service on PostgreSQL (one-statement path) and SQLite (portable path, the embedded default): grants,
holds, settles, releases, replays, races, and the rule that a settle never takes more than its hold."""

from __future__ import annotations

import asyncio
from datetime import UTC

import pytest
import sqlalchemy as sa

from gateway import ledger
from gateway.accounts.wallets import get_or_create_account
from gateway.db.schema import credit_ledger, llm_usage
from tests.conftest import new_request_id, random_wallet
from tests.integration.ledger.both_backends import both_backends_db  # noqa: F401 - fixture `db`: both backends
from tests.ledger_checks import assert_books_balance


def usage_for(account, request_id, price, cost=None, **kw):
    return ledger.Usage(
        request_id=request_id,
        account_id=account.id,
        key_id=None,
        model="demo",
        prompt_tokens=10,
        completion_tokens=5,
        provider_cost_micros=cost if cost is not None else price // 2,
        user_price_micros=price,
        markup="2.0",
        **kw,
    )


async def test_grant_is_idempotent_on_reference(db, account):
    first = await ledger.post_entry(db, account.id, 5_000, "admin_grant", "grant-1")
    again = await ledger.post_entry(db, account.id, 5_000, "admin_grant", "grant-1")
    assert not first.replayed and again.replayed and again.id == first.id
    assert (await ledger.get_balance(db, account.id)).balance_micros == 5_000
    await assert_books_balance(db)


@pytest.mark.parametrize("other_wallet, amount", [(True, 5_000), (False, 7_000)])
async def test_a_reference_reused_for_another_account_or_amount_is_refused(db, account, other_wallet, amount):
    """An idempotency key replayed with other parameters is an error (as Stripe answers it), never the first
    write's result: else a grant to another wallet would report success while that wallet got nothing."""
    reference = new_request_id()
    first = await ledger.post_entry(db, account.id, 5_000, "admin_grant", reference)
    other = await get_or_create_account(db, random_wallet()) if other_wallet else account
    with pytest.raises(ledger.ReferenceReused) as refused:
        await ledger.post_entry(db, other.id, amount, "admin_grant", reference)
    assert refused.value.existing.id == first.id and refused.value.existing.account_id == account.id
    assert reference in str(refused.value)
    assert (await ledger.get_balance(db, other.id)).balance_micros == (0 if other_wallet else 5_000)
    await assert_books_balance(db)


async def test_a_concurrent_reuse_of_a_reference_is_refused_too(db, account):
    """The race path (the unique index answers, not the first read) checks the parameters as well."""
    reference = new_request_id()
    other = await get_or_create_account(db, random_wallet())
    results = await asyncio.gather(
        *[ledger.post_entry(db, (account, other)[i % 2].id, 1_000, "admin_grant", reference) for i in range(10)],
        return_exceptions=True,
    )
    refused = [r for r in results if isinstance(r, ledger.ReferenceReused)]
    written = [r for r in results if isinstance(r, ledger.LedgerEntry)]
    assert len(refused) == 5 and len(written) == 5 and len({w.id for w in written}) == 1, results
    await assert_books_balance(db)


async def test_an_adjustment_never_debits_more_than_is_available(db, account, book):
    await ledger.post_entry(db, account.id, 1_000, "admin_grant", new_request_id())
    await book.hold(account.id, new_request_id(), 400)
    with pytest.raises(ledger.InsufficientCredit) as refused:
        await ledger.adjust(db, account.id, -601, "adjustment", "too-much")  # 600 is available beside the hold
    assert (refused.value.balance_micros, refused.value.held_micros) == (1_000, 400)
    taken = await ledger.adjust(db, account.id, -600, "adjustment", "all-of-it")
    assert taken.balance_after_micros == 400
    with pytest.raises(ValueError):
        await ledger.adjust(db, account.id, -1, "refund", "a-negative-refund")
    with pytest.raises(ValueError):
        await ledger.adjust(db, account.id, 1, "admin_grant", "not-a-correction")
    assert (await ledger.get_balance(db, account.id)).balance_micros == 400
    await assert_books_balance(db)


async def test_concurrent_identical_grants_credit_once(db, account):
    results = await asyncio.gather(
        *[ledger.post_entry(db, account.id, 1_000, "onchain_payment", "8453:0xabc:0") for _ in range(20)]
    )
    assert len({r.id for r in results}) == 1
    assert (await ledger.get_balance(db, account.id)).balance_micros == 1_000
    await assert_books_balance(db)


async def test_bad_writes_change_nothing(db, account):
    with pytest.raises(ValueError):
        await ledger.post_entry(db, account.id, 1, "gift", "x")
    with pytest.raises(TypeError):
        await ledger.post_entry(db, account.id, 1.5, "admin_grant", "x")  # type: ignore[arg-type] - a float on purpose
    with pytest.raises(ledger.UnknownAccount):
        await ledger.post_entry(db, 10**12, 1, "admin_grant", "nobody")
    with pytest.raises(ValueError):
        await ledger.post_entry(db, account.id, ledger.MAX_ENTRY_MICROS + 1, "admin_grant", "too-much")
    assert (await ledger.get_balance(db, account.id)).balance_micros == 0


async def test_hold_settle_charges_actual_price_and_closes_hold(db, account, book):
    await ledger.post_entry(db, account.id, 10_000, "admin_grant", new_request_id())
    rid = new_request_id()
    hold = await book.hold(account.id, rid, 4_000)
    assert (hold.amount_micros, hold.held_micros) == (4_000, 4_000)
    done = await book.settle(usage_for(account, rid, 1_500))
    assert (done.user_price_micros, done.balance_after_micros, done.replayed) == (1_500, 8_500, False)
    bal = await ledger.get_balance(db, account.id)
    assert (bal.balance_micros, bal.held_micros) == (8_500, 0)
    replay = await book.settle(usage_for(account, rid, 1_500))
    assert replay.replayed and replay.balance_after_micros == 8_500
    assert (await ledger.get_balance(db, account.id)).balance_micros == 8_500
    await assert_books_balance(db)


async def test_concurrent_settles_of_one_request_charge_once(db, account, book):
    await ledger.post_entry(db, account.id, 10_000, "admin_grant", new_request_id())
    rid = new_request_id()
    await book.hold(account.id, rid, 2_000)
    results = await asyncio.gather(*[book.settle(usage_for(account, rid, 1_000)) for _ in range(10)])
    assert sum(not r.replayed for r in results) == 1
    async with db.connect() as conn:
        n = (await conn.execute(sa.select(sa.func.count()).where(llm_usage.c.request_id == rid))).scalar_one()
    assert n == 1
    assert (await ledger.get_balance(db, account.id)).balance_micros == 9_000
    await assert_books_balance(db)


async def usage_row(db, rid):
    async with db.connect() as conn:
        return (await conn.execute(sa.select(llm_usage).where(llm_usage.c.request_id == rid))).one()


async def test_price_above_hold_charges_the_hold_and_records_the_rest_as_uncollected(db, account, book):
    await ledger.post_entry(db, account.id, 10_000, "admin_grant", new_request_id())
    rid = new_request_id()
    await book.hold(account.id, rid, 100)
    done = await book.settle(usage_for(account, rid, 300))
    assert (done.charged_micros, done.uncollected_micros, done.balance_after_micros) == (100, 200, 9_900)
    row = await usage_row(db, rid)
    assert (row.user_price_micros, row.uncollected_micros) == (300, 200)
    replay = await book.settle(usage_for(account, rid, 300))
    assert replay.replayed and (replay.charged_micros, replay.uncollected_micros) == (100, 200)
    await assert_books_balance(db)


async def test_a_settle_never_takes_the_balance_below_zero_even_without_a_hold(db, account, book):
    await ledger.post_entry(db, account.id, 1_000, "admin_grant", new_request_id())
    other = new_request_id()
    await book.hold(account.id, other, 700)  # another call in flight keeps 700 for itself
    rid = new_request_id()
    await book.hold(account.id, rid, 300, ttl_seconds=1)
    from datetime import datetime, timedelta

    assert rid in await book.expire_stale_holds(now=datetime.now(UTC) + timedelta(seconds=5))
    done = await book.settle(usage_for(account, rid, 5_000, cost=10))  # late, and far above its hold
    assert (done.charged_micros, done.uncollected_micros) == (300, 4_700)  # what the other hold leaves
    await book.settle(usage_for(account, other, 900, cost=10))  # its own price above its hold
    bal = await ledger.get_balance(db, account.id)
    assert (bal.balance_micros, bal.held_micros) == (0, 0)
    assert (await usage_row(db, other)).uncollected_micros == 200
    await assert_books_balance(db)


async def test_a_negative_adjustment_under_a_hold_caps_the_settle_at_what_is_left(db, account, book):
    await ledger.post_entry(db, account.id, 1_000, "admin_grant", new_request_id())
    rid = new_request_id()
    await book.hold(account.id, rid, 800)
    await ledger.post_entry(db, account.id, -900, "adjustment", new_request_id())  # e.g. a reorged top-up
    done = await book.settle(usage_for(account, rid, 600, cost=10))
    assert (done.charged_micros, done.uncollected_micros, done.balance_after_micros) == (100, 500, 0)
    await assert_books_balance(db)


async def test_release_voids_hold_and_charges_nothing(db, account, book):
    await ledger.post_entry(db, account.id, 1_000, "admin_grant", new_request_id())
    rid = new_request_id()
    await book.hold(account.id, rid, 1_000)
    with pytest.raises(ledger.InsufficientCredit):
        await book.hold(account.id, new_request_id(), 1)
    assert await book.release(rid) is True
    assert await book.release(rid) is False
    bal = await ledger.get_balance(db, account.id)
    assert (bal.balance_micros, bal.held_micros) == (1_000, 0)
    await assert_books_balance(db)


async def test_insufficient_hold_reports_the_balance_and_changes_nothing(db, account, book):
    await ledger.post_entry(db, account.id, 500, "admin_grant", new_request_id())
    await book.hold(account.id, new_request_id(), 200)
    with pytest.raises(ledger.InsufficientCredit) as err:
        await book.hold(account.id, new_request_id(), 301)
    assert (err.value.balance_micros, err.value.held_micros, err.value.requested_micros) == (500, 200, 301)
    assert (await ledger.get_balance(db, account.id)).held_micros == 200


async def test_flexible_hold_takes_what_is_available_down_to_the_floor(db, account, book):
    await ledger.post_entry(db, account.id, 700, "admin_grant", new_request_id())
    h = await book.hold(account.id, new_request_id(), 1_000, min_micros=100)
    assert h.amount_micros == 700
    with pytest.raises(ledger.InsufficientCredit):
        await book.hold(account.id, new_request_id(), 1_000, min_micros=1)
    await assert_books_balance(db)


async def test_hold_replay_returns_the_first_hold(db, account, book):
    await ledger.post_entry(db, account.id, 1_000, "admin_grant", new_request_id())
    rid = new_request_id()
    first = await book.hold(account.id, rid, 300)
    again = await book.hold(account.id, rid, 300)
    assert again.amount_micros == first.amount_micros
    assert (await ledger.get_balance(db, account.id)).held_micros == 300


async def test_200_concurrent_holds_on_an_account_that_affords_100(db, account, book):
    await ledger.post_entry(db, account.id, 100 * 1_000, "admin_grant", new_request_id())

    async def try_hold():
        try:
            await book.hold(account.id, new_request_id(), 1_000)
            return True
        except ledger.InsufficientCredit:
            return False

    outcomes = await asyncio.gather(*[try_hold() for _ in range(200)])
    assert sum(outcomes) == 100
    bal = await ledger.get_balance(db, account.id)
    assert bal.held_micros == 100_000 and bal.available_micros == 0
    await assert_books_balance(db)


async def test_concurrent_hold_settle_cycles_never_overspend(db, account, book):
    await ledger.post_entry(db, account.id, 10_000, "admin_grant", new_request_id())

    async def call():
        rid = new_request_id()
        try:
            await book.hold(account.id, rid, 1_000)
        except ledger.InsufficientCredit:
            return 0
        await book.settle(usage_for(account, rid, 900))
        return 900

    charged = sum(await asyncio.gather(*[call() for _ in range(60)]))
    bal = await ledger.get_balance(db, account.id)
    assert bal.balance_micros == 10_000 - charged >= 0
    await assert_books_balance(db)


async def test_expired_holds_are_released(db, account, book):
    await ledger.post_entry(db, account.id, 1_000, "admin_grant", new_request_id())
    rid = new_request_id()
    await book.hold(account.id, rid, 600, ttl_seconds=1)
    from datetime import datetime, timedelta

    expired = await book.expire_stale_holds(now=datetime.now(UTC) + timedelta(seconds=5))
    assert rid in expired
    assert (await ledger.get_balance(db, account.id)).held_micros == 0
    # a late settle (the call did happen) still charges, exactly once
    done = await book.settle(usage_for(account, rid, 500))
    assert done.balance_after_micros == 500
    await assert_books_balance(db)


async def test_ledger_is_append_only(db, account):
    await ledger.post_entry(db, account.id, 1_000, "admin_grant", new_request_id())
    with pytest.raises(sa.exc.DBAPIError):
        async with db.begin() as conn:
            await conn.execute(
                sa.update(credit_ledger).values(amount_micros=1).where(credit_ledger.c.account_id == account.id)
            )
    with pytest.raises(sa.exc.DBAPIError):
        async with db.begin() as conn:
            await conn.execute(sa.delete(credit_ledger).where(credit_ledger.c.account_id == account.id))
