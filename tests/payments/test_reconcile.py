"""Reconcile on a database of the test's own: clean books pass; a tampered ledger row, a hold past its
TTL and a credited payment gone from the chain each fail, naming the account; the CLI's exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime, timedelta, timezone

import sqlalchemy as sa

from gateway import ledger
from gateway.accounts import get_or_create_account
from gateway.payments import confirm_payment
from gateway.reconcile import reconcile
from gateway.watcher import Watcher
from tests.chain.anvil import REPO_ROOT
from tests.payments.conftest import MIN_CONFIRMATIONS, USDC, new_funded_wallet, pay


async def books_with_two_payments(db, rpc, chain, settings, dao):
    """Account A credited by a confirm (and holding 1 USDC), account B by the watcher."""
    (a_wallet, b_wallet) = new_funded_wallet(chain), new_funded_wallet(chain)
    a = await get_or_create_account(db, a_wallet.address)
    b = await get_or_create_account(db, b_wallet.address)
    tx = pay(chain, a_wallet, dao, 5 * USDC)
    pay(chain, b_wallet, dao, 3 * USDC)
    chain.mine(MIN_CONFIRMATIONS)
    await confirm_payment(db, rpc, settings, a.id, a_wallet.address, tx)
    await Watcher(db, rpc, settings, show_progress=False).run_once()
    await ledger.hold(db, a.id, "req-1", USDC, ttl_seconds=60)
    return a, b


def reconcile_cli(pg_url: str, settings) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "GATEWAY_DATABASE_URL")}
    env |= {"GATEWAY_DATABASE_URL": pg_url, "CHAIN_RPC_URL": settings.chain_rpc_url, "CHAIN_ID": str(settings.chain_id)}
    program = "import typer; from gateway.commands.payments import reconcile; typer.run(reconcile)"
    return subprocess.run(
        [sys.executable, "-c", program, "--json"], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=60
    )


async def test_clean_books_pass_and_a_tampered_ledger_row_names_its_account(own_db, own_pg_url, rpc, chain, settings, dao):
    a, b = await books_with_two_payments(own_db, rpc, chain, settings, dao)

    clean = await reconcile(own_db, settings, rpc)
    assert clean.ok and clean.chain_checked, clean.mismatches
    assert (clean.accounts, clean.credited_payments) == (2, 2)

    async with own_db.begin() as conn:  # tamper, in this test's own database only
        await conn.execute(sa.text("ALTER TABLE credit_ledger DISABLE TRIGGER credit_ledger_append_only"))
        await conn.execute(
            sa.text("UPDATE credit_ledger SET amount_micros = amount_micros + 1 WHERE account_id = :a"), {"a": b.id}
        )
        await conn.execute(sa.text("ALTER TABLE credit_ledger ENABLE TRIGGER credit_ledger_append_only"))

    tampered = await reconcile(own_db, settings, rpc)
    assert not tampered.ok
    assert {(m.check, m.account_id) for m in tampered.mismatches} == {("balance", b.id), ("payment", b.id)}
    cli = reconcile_cli(own_pg_url, settings)  # the command: one JSON document, exit status 1
    assert cli.returncode == 1, cli.stderr
    assert json.loads(cli.stdout) == tampered.as_dict()


async def test_expired_hold_and_payment_gone_from_chain_are_reported(own_db, rpc, chain, settings, dao):
    before_payments = chain.snapshot()
    a, b = await books_with_two_payments(own_db, rpc, chain, settings, dao)

    later = await reconcile(own_db, settings, now=datetime.now(timezone.utc) + timedelta(minutes=5))
    assert [(m.check, m.account_id) for m in later.mismatches] == [("hold", a.id)]
    assert not later.chain_checked

    chain.revert(before_payments)  # both transfers vanish without the watcher noticing
    gone = await reconcile(own_db, settings, rpc)
    assert sorted((m.check, m.account_id) for m in gone.mismatches) == [("chain", a.id), ("chain", b.id)]
    assert all("is not on chain" in m.detail for m in gone.mismatches)
