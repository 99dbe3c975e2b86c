"""confirm_payment against a real anvil chain and PostgreSQL: pending -> credited once, replays, races,
and every way a transaction is refused (with the ledger untouched)."""

from __future__ import annotations

import asyncio
import secrets

import pytest
import sqlalchemy as sa

from gateway import ledger
from gateway.accounts.wallets import get_or_create_account
from gateway.db.payments_schema import payments
from gateway.failures import ChainUnavailable
from gateway.jobs.watcher import Watcher
from gateway.payments.chain import ChainRPC
from gateway.payments.service import (
    Forbidden,
    NotConfigured,
    NotFound,
    Rejected,
    confirm_payment,
    list_payments,
)
from tests.integration.payments.conftest import (
    MIN_CONFIRMATIONS,
    USDC,
    ledger_count,
    ledger_rows,
    make_settings,
    new_funded_wallet,
    pay,
    random_address,
)
from tests.ledger_checks import assert_books_balance


async def payment_rows(db, tx_hash: str) -> list[sa.Row]:
    async with db.connect() as conn:
        return (await conn.execute(sa.select(payments).where(payments.c.tx_hash == tx_hash))).all()


async def test_pending_until_confirmed_then_credited_exactly_once(db, rpc, chain, settings, dao, payer, payer_account):
    tx = pay(chain, payer, dao, 12_345_678)

    first = await confirm_payment(db, rpc, settings, payer_account.id, payer.address, tx)
    assert (first.status, first.confirmations, first.required_confirmations) == ("pending", 1, MIN_CONFIRMATIONS)
    assert first.credited_micros == 0
    (row,) = await payment_rows(db, tx)
    assert (row.status, row.account_id, row.raw_amount, row.micros_credited) == (
        "pending",
        payer_account.id,
        12_345_678,
        None,
    )
    assert await ledger_rows(db, payer_account.id) == []

    chain.mine(MIN_CONFIRMATIONS - 1)
    credited = await confirm_payment(db, rpc, settings, payer_account.id, payer.address, tx.upper().replace("0X", "0x"))
    again = await confirm_payment(db, rpc, settings, payer_account.id, payer.address, tx)

    assert (credited.status, credited.confirmations, credited.credited_micros) == (
        "credited",
        MIN_CONFIRMATIONS,
        12_345_678,
    )
    assert (again.status, again.credited_micros, again.payments) == (
        credited.status,
        credited.credited_micros,
        credited.payments,
    )
    (entry,) = await ledger_rows(db, payer_account.id)
    assert (entry.amount_micros, entry.reason, entry.reference) == (
        12_345_678,
        "onchain_payment",
        f"8453:{tx}:{row.log_index}",
    )
    assert (await ledger.get_balance(db, payer_account.id)).balance_micros == 12_345_678
    (listed,) = await list_payments(db, payer_account.id, head=chain.w3.eth.block_number)
    assert (listed.status, listed.confirmations, listed.micros_credited) == ("credited", MIN_CONFIRMATIONS, 12_345_678)
    await assert_books_balance(db)


async def test_confirms_racing_the_watcher_credit_once(db, rpc, chain, settings, dao, payer, payer_account):
    tx = pay(chain, payer, dao, 7 * USDC)
    chain.mine(MIN_CONFIRMATIONS)
    watcher = Watcher(db, rpc, settings)

    results = await asyncio.gather(
        confirm_payment(db, rpc, settings, payer_account.id, payer.address, tx),
        watcher.run_once(),
        confirm_payment(db, rpc, settings, payer_account.id, payer.address, tx),
    )

    assert [results[0].status, results[2].status] == ["credited", "credited"]
    assert [e.amount_micros for e in await ledger_rows(db, payer_account.id)] == [7 * USDC]
    assert (await ledger.get_balance(db, payer_account.id)).balance_micros == 7 * USDC
    await assert_books_balance(db)


async def test_someone_elses_transfer_is_forbidden(db, rpc, chain, settings, dao, payer, payer_account):
    thief = await get_or_create_account(db, "0x" + secrets.token_hex(20))
    tx = pay(chain, payer, dao, 5 * USDC)
    chain.mine(MIN_CONFIRMATIONS)
    before = await ledger_count(db)

    with pytest.raises(Forbidden):
        await confirm_payment(db, rpc, settings, thief.id, thief.wallet_address, tx)

    assert await ledger_count(db) == before
    assert await payment_rows(db, tx) == []
    await assert_books_balance(db)


def _wrong_receiver(chain, payer, dao):
    return pay(chain, payer, random_address(), 5 * USDC)


def _wrong_token(chain, payer, dao):
    other = chain.deploy("TestUSDC")
    chain.usdc_mint(payer.address, 5 * USDC, token=other)
    return pay(chain, payer, dao, 5 * USDC, token=other)


def _reverted(chain, payer, dao):
    return "0x" + chain.usdc_transfer_reverting(payer.key, dao, 5 * USDC).hex()


def _too_small(chain, payer, dao):
    return pay(chain, payer, dao, USDC - 1)


def _too_large(chain, payer, dao):
    return pay(chain, payer, dao, 100 * USDC + 1)


def _beyond_64_bits(chain, payer, dao):
    chain.usdc_mint(payer.address, 2**70)
    return pay(chain, payer, dao, 2**70)


@pytest.mark.parametrize(
    "send, reason, recorded",
    [
        (_wrong_receiver, "the USDC transfer is not to the DAO wallet", False),
        (_wrong_token, "the transfer to the DAO wallet is not in USDC", False),
        (_reverted, "the transaction reverted", False),
        (_too_small, "amount 0.999999 USDC is outside the top-up bounds [1, 100] USDC", True),
        (_too_large, "amount 100.000001 USDC is outside the top-up bounds [1, 100] USDC", True),
        (_beyond_64_bits, "amount 1180591620717411.303424 USDC is outside the top-up bounds [1, 100] USDC", True),
    ],
)
async def test_unacceptable_transfers_are_rejected(
    db, rpc, chain, settings, dao, payer, payer_account, send, reason, recorded
):
    tx = send(chain, payer, dao)
    chain.mine(MIN_CONFIRMATIONS)
    before = await ledger_count(db)

    for _ in range(2):  # a repeated confirm gives the same answer
        with pytest.raises(Rejected) as refused:
            await confirm_payment(db, rpc, settings, payer_account.id, payer.address, tx)
        assert refused.value.reason == reason

    rows = await payment_rows(db, tx)
    assert [(r.status, r.reason, r.micros_credited) for r in rows] == ([("rejected", reason, None)] if recorded else [])
    assert await ledger_count(db) == before
    await assert_books_balance(db)


async def test_unknown_transaction_is_not_found(db, rpc, settings, payer, payer_account):
    before = await ledger_count(db)
    with pytest.raises(NotFound):
        await confirm_payment(db, rpc, settings, payer_account.id, payer.address, "0x" + secrets.token_hex(32))
    with pytest.raises(Rejected, match="not a transaction hash"):
        await confirm_payment(db, rpc, settings, payer_account.id, payer.address, "0x1234")
    assert await ledger_count(db) == before


async def test_chain_down_or_wrong_or_unconfigured_writes_nothing(db, chain, settings, dao, payer, payer_account):
    tx = pay(chain, payer, dao, 5 * USDC)
    chain.mine(MIN_CONFIRMATIONS)
    before = await ledger_count(db)

    async with ChainRPC("http://127.0.0.1:9", timeout=2) as down:  # discard port: nothing listens
        with pytest.raises(ChainUnavailable):
            await confirm_payment(db, down, settings, payer_account.id, payer.address, tx)
    async with ChainRPC(chain.url) as rpc:
        with pytest.raises(ChainUnavailable, match="serves chain id 8453, but CHAIN_ID is 1"):
            await confirm_payment(db, rpc, make_settings(chain, dao, chain_id=1), payer_account.id, payer.address, tx)
        for unconfigured in (make_settings(chain, dao, chain_rpc_url=None), make_settings(chain, None)):
            with pytest.raises(NotConfigured, match="payments are not configured"):
                await confirm_payment(db, rpc, unconfigured, payer_account.id, payer.address, tx)

    assert await payment_rows(db, tx) == []
    assert await ledger_count(db) == before
    await assert_books_balance(db)


async def test_exact_amount_credited_at_the_bounds(db, rpc, chain, settings, dao):
    for amount in (USDC, 100 * USDC):
        wallet = new_funded_wallet(chain)
        owner = await get_or_create_account(db, wallet.address)
        tx = pay(chain, wallet, dao, amount)
        chain.mine(MIN_CONFIRMATIONS)
        result = await confirm_payment(db, rpc, settings, owner.id, wallet.address, tx)
        assert (result.status, result.credited_micros) == ("credited", amount)
        assert (await ledger.get_balance(db, owner.id)).balance_micros == amount
