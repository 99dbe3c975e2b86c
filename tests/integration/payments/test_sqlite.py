"""Top-ups on the embedded SQLite default: the same flows (confirm, watcher, race, claim, reconcile), and
token amounts beyond 64 bits kept exactly."""

from __future__ import annotations

import asyncio

import sqlalchemy as sa

from gateway import ledger
from gateway.accounts.wallets import get_or_create_account
from gateway.db.engine import get_engine
from gateway.db.migrate import upgrade
from gateway.db.payments_schema import payments
from gateway.jobs.reconcile import reconcile
from gateway.jobs.watcher import Watcher
from gateway.payments.service import claim_unclaimed, confirm_payment
from tests.integration.payments.conftest import MIN_CONFIRMATIONS, USDC, new_funded_wallet, pay


async def test_topups_on_sqlite(tmp_path, rpc, chain, settings, dao):
    url = f"sqlite+aiosqlite:///{tmp_path / 'gateway.db'}"
    upgrade(url)
    db = get_engine(url)
    try:
        known, stranger = new_funded_wallet(chain), new_funded_wallet(chain, usdc_units=2**70 + 10 * USDC)
        account = await get_or_create_account(db, known.address)
        tx = pay(chain, known, dao, 5 * USDC)
        assert (await confirm_payment(db, rpc, settings, account.id, known.address, tx)).status == "pending"
        unclaimed = pay(chain, stranger, dao, 3 * USDC)
        huge = pay(chain, stranger, dao, 2**70)
        chain.mine(MIN_CONFIRMATIONS)

        first, _, again = await asyncio.gather(
            confirm_payment(db, rpc, settings, account.id, known.address, tx),
            Watcher(db, rpc, settings).run_once(),
            confirm_payment(db, rpc, settings, account.id, known.address, tx),
        )
        assert (first.status, again.status, first.credited_micros) == ("credited", "credited", 5 * USDC)
        assert (await ledger.get_balance(db, account.id)).balance_micros == 5 * USDC

        async with db.connect() as conn:
            rows = {r.tx_hash: r for r in (await conn.execute(sa.select(payments))).all()}
        assert (rows[unclaimed].status, rows[unclaimed].account_id) == ("unclaimed", None)
        assert (rows[huge].status, rows[huge].raw_amount) == ("rejected", 2**70)

        late = await get_or_create_account(db, stranger.address)
        assert [p.micros_credited for p in await claim_unclaimed(db, late.id, stranger.address)] == [3 * USDC]
        report = await reconcile(db, settings, rpc)
        assert report.ok and report.credited_payments == 2, report.mismatches
    finally:
        await db.dispose()
