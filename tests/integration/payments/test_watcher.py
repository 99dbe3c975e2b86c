"""The chain watcher against a real anvil and PostgreSQL: credits without a confirm, resumes after being
killed (in-process mid-range, and a SIGKILLed subprocess), unclaimed transfers and claims, and reorgs
before and after the confirmation depth."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time

import pytest
import sqlalchemy as sa

from gateway import ledger
from gateway.accounts.wallets import get_or_create_account
from gateway.cli.payments import progress_bar
from gateway.config import REPO_ROOT
from gateway.db.payments_schema import chain_cursor, payments
from gateway.failures import ChainUnavailable
from gateway.jobs import watcher as watcher_module
from gateway.jobs.watcher import Watcher
from gateway.payments.chain import ChainRPC
from gateway.payments.service import claim_unclaimed, confirm_payment, list_payments
from tests.integration.payments.conftest import MIN_CONFIRMATIONS, USDC, ledger_rows, new_funded_wallet, pay
from tests.ledger_checks import assert_books_balance


async def payment_statuses(db, dao: str) -> dict[str, str]:
    async with db.connect() as conn:
        rows = (
            await conn.execute(
                sa.select(payments.c.tx_hash, payments.c.status).where(payments.c.to_address == dao.lower())
            )
        ).all()
    return {r.tx_hash: r.status for r in rows}


async def cursor_block(db, watcher: Watcher) -> int | None:
    async with db.connect() as conn:
        return (
            await conn.execute(sa.select(chain_cursor.c.last_block).where(chain_cursor.c.name == watcher.name))
        ).scalar()


async def funded_accounts(db, chain, n: int):
    wallets = [new_funded_wallet(chain) for _ in range(n)]
    return wallets, [await get_or_create_account(db, w.address) for w in wallets]


async def test_watcher_credits_without_a_confirm_call(db, rpc, chain, settings, dao, payer, payer_account):
    watcher = Watcher(db, rpc, settings, progress=progress_bar)  # also runs the progress-bar path
    tx = pay(chain, payer, dao, 3 * USDC)
    chain.mine(MIN_CONFIRMATIONS - 2)
    assert (await watcher.run_once()).payments == {}  # one confirmation short: not yet scanned

    chain.mine(1)
    report = await watcher.run_once()
    assert report.payments == {"credited": 1}
    assert await watcher.run_once() == watcher_module.ScanReport(scanned_to=None)  # nothing new
    assert [e.amount_micros for e in await ledger_rows(db, payer_account.id)] == [3 * USDC]
    again = await confirm_payment(db, rpc, settings, payer_account.id, payer.address, tx)
    assert (again.status, again.credited_micros) == ("credited", 3 * USDC)
    assert len(await ledger_rows(db, payer_account.id)) == 1
    await assert_books_balance(db)


async def test_watcher_cancelled_mid_range_resumes_without_double_credit(db, rpc, chain, settings, dao, monkeypatch):
    wallets, accounts = await funded_accounts(db, chain, 3)
    chain.set_automine(False)
    txs = [pay(chain, w, dao, (i + 2) * USDC) for i, w in enumerate(wallets)]
    chain.mine(1)  # all three transfers in one block, so one range
    chain.set_automine(True)
    chain.mine(MIN_CONFIRMATIONS)

    accepted, stalled = [], asyncio.Event()
    real_accept = watcher_module.accept_transfer

    async def accept_then_stall(*args, **kwargs):
        if accepted:
            stalled.set()
            await asyncio.Event().wait()  # "killed" here: one transfer credited, the cursor not moved
        accepted.append(await real_accept(*args, **kwargs))
        return accepted[-1]

    monkeypatch.setattr(watcher_module, "accept_transfer", accept_then_stall)
    first = Watcher(db, rpc, settings)
    task = asyncio.create_task(first.run_once())
    await asyncio.wait_for(stalled.wait(), 10)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert [p.status for p in accepted] == ["credited"]
    assert await cursor_block(db, first) < chain.w3.eth.block_number - MIN_CONFIRMATIONS

    monkeypatch.setattr(watcher_module, "accept_transfer", real_accept)
    assert (await Watcher(db, rpc, settings).run_once()).payments == {"credited": 3}
    for account, amount in zip(accounts, (2, 3, 4), strict=True):
        assert [e.amount_micros for e in await ledger_rows(db, account.id)] == [amount * USDC]
    assert set((await payment_statuses(db, dao)).values()) == {"credited"} and len(txs) == 3
    await assert_books_balance(db)


async def test_watcher_process_killed_mid_scan_then_restarted(db, pg_url, rpc, chain, settings, dao):
    wallets, accounts = await funded_accounts(db, chain, 4)
    for w in wallets:  # transfers spread over ~120 blocks, scanned one block per range
        pay(chain, w, dao, 2 * USDC)
        chain.mine(30)
    chain.mine(MIN_CONFIRMATIONS)
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "GATEWAY_DATABASE_URL")}
    env |= {
        "GATEWAY_DATABASE_URL": pg_url,
        "CHAIN_ID": str(settings.chain_id),
        "CHAIN_RPC_URL": settings.chain_rpc_url,
        "USDC_ADDRESS": settings.usdc_address,
        "DAO_WALLET_ADDRESS": dao,
        "MIN_CONFIRMATIONS": str(MIN_CONFIRMATIONS),
        "MIN_TOPUP_USD": "1",
        "MAX_TOPUP_USD": "100",
        "WATCHER_BATCH_BLOCKS": "1",
        "WATCHER_START_BLOCK": str(settings.watcher_start_block),
    }
    probe = Watcher(db, rpc, settings, progress=progress_bar)  # its catch-up run below draws the progress bar
    proc = subprocess.Popen(  # noqa: ASYNC220 - returns at once; the test kills this process mid-scan
        [sys.executable, "-m", "gateway", "watch", "--once"],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 30
        while ((await cursor_block(db, probe)) or 0) < settings.watcher_start_block + 45:  # past the 2nd transfer
            assert proc.poll() is None, proc.stderr.read().decode()
            assert time.monotonic() < deadline
            await asyncio.sleep(0.002)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
    killed_at = await cursor_block(db, probe)
    assert killed_at < chain.w3.eth.block_number - MIN_CONFIRMATIONS + 1

    assert (await probe.run_once()).scanned_to == chain.w3.eth.block_number - MIN_CONFIRMATIONS + 1
    for account in accounts:
        assert [e.amount_micros for e in await ledger_rows(db, account.id)] == [2 * USDC]
    await assert_books_balance(db)


async def test_unknown_wallet_kept_unclaimed_then_credited_on_claim(db, rpc, chain, settings, dao, payer):
    watcher = Watcher(db, rpc, settings)
    tx = pay(chain, payer, dao, 9 * USDC)
    chain.mine(MIN_CONFIRMATIONS)
    assert (await watcher.run_once()).payments == {"unclaimed": 1}
    assert await payment_statuses(db, dao) == {tx: "unclaimed"}

    account = await get_or_create_account(db, payer.address)  # first sign-in
    claimed = await claim_unclaimed(db, account.id, payer.address.lower())
    assert [(p.status, p.micros_credited, p.account_id) for p in claimed] == [("credited", 9 * USDC, account.id)]
    assert await claim_unclaimed(db, account.id, payer.address) == []
    assert (await watcher.run_once()).payments == {}
    assert [e.amount_micros for e in await ledger_rows(db, account.id)] == [9 * USDC]
    assert [p.status for p in await list_payments(db, account.id, head=None)] == ["credited"]
    await assert_books_balance(db)


async def test_watcher_claims_for_a_sender_who_signed_in_without_a_claim(db, rpc, chain, settings, dao, payer):
    watcher = Watcher(db, rpc, settings)
    pay(chain, payer, dao, 4 * USDC)
    chain.mine(MIN_CONFIRMATIONS)
    await watcher.run_once()
    account = await get_or_create_account(db, payer.address)  # the sign-in raced the record: no claim call

    assert (await watcher.run_once()).payments == {"credited": 1}
    assert (await ledger.get_balance(db, account.id)).balance_micros == 4 * USDC


async def test_reorg_before_the_confirmation_depth_credits_nothing(db, rpc, chain, settings, dao, payer, payer_account):
    watcher = Watcher(db, rpc, settings)
    tx = pay(chain, payer, dao, 6 * USDC)
    assert (await confirm_payment(db, rpc, settings, payer_account.id, payer.address, tx)).status == "pending"

    chain.reorg(1)  # the transfer's block is replaced; the transfer is gone
    chain.mine(MIN_CONFIRMATIONS + 2)
    report = await watcher.run_once()

    assert report.payments == {"reorged": 1}
    assert await payment_statuses(db, dao) == {tx: "reorged"}
    assert await ledger_rows(db, payer_account.id) == []
    await assert_books_balance(db)


async def test_credited_payment_reorged_out_is_reversed(db, rpc, chain, settings, dao, payer, payer_account, caplog):
    watcher = Watcher(db, rpc, settings)
    kept_wallet = new_funded_wallet(chain)
    kept_account = await get_or_create_account(db, kept_wallet.address)
    pay(chain, kept_wallet, dao, 2 * USDC)  # stays on chain below the fork
    chain.mine(2)
    tx = pay(chain, payer, dao, 8 * USDC)
    chain.mine(MIN_CONFIRMATIONS)
    assert (await watcher.run_once()).payments == {"credited": 2}

    chain.reorg(MIN_CONFIRMATIONS + 1)  # deeper than the confirmation depth: replaces the payment's block
    chain.mine(1)
    report = await watcher.run_once()

    assert report.payments == {"reorged": 1} and report.rewound_to is not None
    assert [
        (e.amount_micros, e.reason, e.reference.split(":")[0]) for e in await ledger_rows(db, payer_account.id)
    ] == [
        (8 * USDC, "onchain_payment", "8453"),
        (-8 * USDC, "adjustment", "reorg"),
    ]
    assert (await ledger.get_balance(db, payer_account.id)).balance_micros == 0
    assert (await ledger.get_balance(db, kept_account.id)).balance_micros == 2 * USDC
    assert (await payment_statuses(db, dao))[tx] == "reorged"
    assert any("REORG REVERSAL" in r.message and r.levelname == "ERROR" for r in caplog.records)
    assert (await watcher.run_once()).payments == {}  # stable afterwards
    await assert_books_balance(db)


async def test_transfer_reincluded_after_a_reorg_is_credited_once(db, rpc, chain, settings, dao, payer, payer_account):
    watcher = Watcher(db, rpc, settings)
    usdc = chain.usdc
    signed = payer.sign_transaction(
        {
            "to": usdc.address,
            "data": usdc.functions.transfer(dao, 6 * USDC)._encode_transaction_data(),
            "gas": 100_000,
            "nonce": chain.w3.eth.get_transaction_count(payer.address),
            "chainId": chain.chain_id,
            "maxFeePerGas": 10**10,
            "maxPriorityFeePerGas": 10**9,
        }
    )
    chain.w3.eth.send_raw_transaction(signed.raw_transaction)
    tx = "0x" + signed.hash.hex()
    assert (await confirm_payment(db, rpc, settings, payer_account.id, payer.address, tx)).status == "pending"
    chain.reorg(1)
    chain.mine(MIN_CONFIRMATIONS + 1)
    assert (await watcher.run_once()).payments == {"reorged": 1}

    chain.reorg(1, [("0x" + signed.raw_transaction.hex(), 0)])  # the same transfer, in a new block
    chain.mine(MIN_CONFIRMATIONS)
    assert (await watcher.run_once()).payments == {"credited": 1}
    assert await payment_statuses(db, dao) == {tx: "credited"}
    assert [e.amount_micros for e in await ledger_rows(db, payer_account.id)] == [6 * USDC]
    await assert_books_balance(db)


class LaggingReplica(ChainRPC):
    """An RPC that has the blocks but answers no logs and no receipts (a load-balanced replica behind)."""

    async def transfers_to(self, *args):
        return []

    async def receipt(self, tx_hash):
        return None


async def test_a_lagging_rpc_replica_cannot_reverse_a_credit(db, rpc, chain, settings, dao, payer, payer_account):
    tx = pay(chain, payer, dao, 5 * USDC)
    chain.mine(MIN_CONFIRMATIONS)
    assert (await confirm_payment(db, rpc, settings, payer_account.id, payer.address, tx)).status == "credited"

    async with LaggingReplica(chain.url) as lagging:
        with pytest.raises(ChainUnavailable, match="has block"):
            await Watcher(db, lagging, settings).run_once()

    assert await payment_statuses(db, dao) == {tx: "credited"}
    assert (await ledger.get_balance(db, payer_account.id)).balance_micros == 5 * USDC
    assert (await Watcher(db, rpc, settings).run_once()).scanned_to is not None
    assert len(await ledger_rows(db, payer_account.id)) == 1
