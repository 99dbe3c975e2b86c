"""Reconcile on a database of the test's own: clean books pass; a tampered ledger row, a hold past its
TTL, a credited payment gone from the chain, a negative balance, a hold expired without a settle and a
call debited other than price - uncollected each fail, naming the account; uncollected amounts are listed
as operator loss without failing; the CLI's exit codes and JSON document."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from gateway import ledger
from gateway.accounts.wallets import get_or_create_account
from gateway.config import REPO_ROOT
from gateway.db.schema import llm_usage
from gateway.jobs.reconcile import reconcile
from gateway.jobs.watcher import Watcher
from gateway.payments.service import confirm_payment
from tests.conftest import ledger_on, new_request_id, random_wallet
from tests.integration.payments.conftest import MIN_CONFIRMATIONS, USDC, new_funded_wallet, pay


async def books_with_two_payments(db, rpc, chain, settings, dao):
    """Account A credited by a confirm (and holding 1 USDC), account B by the watcher."""
    (a_wallet, b_wallet) = new_funded_wallet(chain), new_funded_wallet(chain)
    a = await get_or_create_account(db, a_wallet.address)
    b = await get_or_create_account(db, b_wallet.address)
    tx = pay(chain, a_wallet, dao, 5 * USDC)
    pay(chain, b_wallet, dao, 3 * USDC)
    chain.mine(MIN_CONFIRMATIONS)
    await confirm_payment(db, rpc, settings, a.id, a_wallet.address, tx)
    await Watcher(db, rpc, settings).run_once()
    async with ledger_on(db) as book:
        await book.hold(a.id, "req-1", USDC, ttl_seconds=60)
    return a, b


async def settled_call(db, account_id: int, price: int, uncollected: int = 0, request_id: str | None = None) -> str:
    """A settled call as the books record one: its llm_usage row (whole price, and the part of it that went
    uncollected) and its ledger debit of the rest. Returns its request id."""
    request_id = request_id or new_request_id()
    async with db.begin() as conn:
        await ledger.post_entry_in(conn, account_id, -(price - uncollected), "llm_usage", request_id)
        await conn.execute(
            sa.insert(llm_usage).values(
                request_id=request_id,
                account_id=account_id,
                model="test-model",
                prompt_tokens=10,
                completion_tokens=20,
                total_tokens=30,
                provider_cost_micros=price // 2,
                user_price_micros=price,
                markup="2.0",
                uncollected_micros=uncollected,
            )
        )
    return request_id


async def funded_account(db, micros: int):
    account = await get_or_create_account(db, random_wallet())
    await ledger.post_entry(db, account.id, micros, "admin_grant", f"grant-{account.id}")
    return account


def reconcile_cli(pg_url: str, settings, json_out: bool = True) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "GATEWAY_DATABASE_URL")}
    env |= {"GATEWAY_DATABASE_URL": pg_url, "CHAIN_RPC_URL": settings.chain_rpc_url, "CHAIN_ID": str(settings.chain_id)}
    env |= {"COLUMNS": "250"}  # rich: one table row per line
    args = ["--json"] if json_out else []
    return subprocess.run(
        [sys.executable, "-m", "gateway", "reconcile", *args],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


async def test_clean_books_pass_and_a_tampered_ledger_row_names_its_account(
    own_db, own_pg_url, rpc, chain, settings, dao
):
    _a, b = await books_with_two_payments(own_db, rpc, chain, settings, dao)

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

    later = await reconcile(own_db, settings, now=datetime.now(UTC) + timedelta(minutes=5))
    assert [(m.check, m.account_id) for m in later.mismatches] == [("hold", a.id)]
    assert not later.chain_checked

    chain.revert(before_payments)  # both transfers vanish without the watcher noticing
    gone = await reconcile(own_db, settings, rpc)
    assert sorted((m.check, m.account_id) for m in gone.mismatches) == [("chain", a.id), ("chain", b.id)]
    assert all("is not on chain" in m.detail for m in gone.mismatches)


async def test_negative_balance_and_holds_expired_without_a_settle_fail(own_db, own_pg_url, settings, rpc):
    negative = await funded_account(own_db, 1_000)
    await ledger.post_entry(own_db, negative.id, -1_500, "adjustment", "overdrawn")  # the ledger agrees: -500
    lost = await funded_account(own_db, 10_000)
    async with ledger_on(own_db) as book:
        await book.hold(lost.id, "req-lost", 400, ttl_seconds=60)
        await book.hold(lost.id, "req-late", 300, ttl_seconds=60)
        await book.hold(lost.id, "req-open", 200, ttl_seconds=3600)  # pending, within its TTL: fine
        swept = await book.expire_stale_holds(now=datetime.now(UTC) + timedelta(minutes=5))
    assert sorted(swept) == ["req-late", "req-lost"]
    await settled_call(own_db, lost.id, 300, request_id="req-late")  # its settle came after the sweep: not lost

    report = await reconcile(own_db, settings, rpc)
    assert [(m.check, m.account_id) for m in report.mismatches] == [
        ("negative_balance", negative.id),
        ("expired_hold", lost.id),
    ]
    assert report.mismatches[0].detail == "balance -500 micros is below zero"
    assert report.mismatches[1].detail.startswith("hold req-lost (400 micros) expired without a settle: TTL ended 20")
    assert ", released 20" in report.mismatches[1].detail

    cli = reconcile_cli(own_pg_url, settings)
    assert cli.returncode == 1, cli.stderr
    assert json.loads(cli.stdout) == report.as_dict()
    assert report.as_dict()["ok"] is False and report.as_dict()["uncollected"]["total_micros"] == 0


async def test_uncollected_calls_are_operator_loss_and_do_not_fail(own_db, own_pg_url, settings, rpc):
    a, b = await funded_account(own_db, 10_000), await funded_account(own_db, 10_000)
    a_big = await settled_call(own_db, a.id, 1_000, uncollected=300)
    await settled_call(own_db, a.id, 500)
    b_all = await settled_call(own_db, b.id, 700, uncollected=700)  # nothing was held, nothing debited
    a_small = await settled_call(own_db, a.id, 200, uncollected=50)

    report = await reconcile(own_db, settings, rpc)
    assert report.ok, report.mismatches
    cli = reconcile_cli(own_pg_url, settings)
    assert cli.returncode == 0, cli.stderr
    document = json.loads(cli.stdout)
    assert document == report.as_dict()
    assert document["ok"] is True and document["mismatches"] == []
    uncollected = document["uncollected"]
    assert uncollected["total_micros"] == 1_050
    assert uncollected["accounts"] == [
        {"account_id": b.id, "calls": 1, "uncollected_micros": 700},
        {"account_id": a.id, "calls": 2, "uncollected_micros": 350},
    ]
    assert [
        (c["request_id"], c["account_id"], c["user_price_micros"], c["uncollected_micros"])
        for c in uncollected["calls"]
    ] == [
        (a_big, a.id, 1_000, 300),
        (b_all, b.id, 700, 700),
        (a_small, a.id, 200, 50),
    ]
    assert all(datetime.fromisoformat(c["settled_at"]).tzinfo for c in uncollected["calls"])

    human = reconcile_cli(own_pg_url, settings, json_out=False)
    assert human.returncode == 0, human.stderr
    assert "books agree" in human.stdout and "operator loss" in human.stdout and "1050 micros" in human.stdout
    assert a_big in human.stdout and b_all in human.stdout


async def test_a_call_must_be_debited_its_price_minus_what_went_uncollected(own_db, settings):
    a, b = await funded_account(own_db, 10_000), await funded_account(own_db, 10_000)
    request_id = await settled_call(own_db, a.id, 1_000, uncollected=300)  # debited 700
    assert (await reconcile(own_db, settings)).ok
    await ledger.post_entry(own_db, b.id, -80, "llm_usage", "no-such-call")

    async with own_db.begin() as conn:  # tamper: the row now says less went uncollected than was debited
        await conn.execute(
            sa.update(llm_usage).where(llm_usage.c.request_id == request_id).values(uncollected_micros=200)
        )

    report = await reconcile(own_db, settings)
    assert [(m.check, m.account_id) for m in report.mismatches] == [("usage", a.id), ("usage", b.id)]
    assert report.mismatches[0].detail == (
        f"call {request_id} (price 1000, uncollected 200 micros) is debited 700 micros to account {a.id}"
    )
    assert report.mismatches[1].detail == "ledger debit no-such-call (-80 micros) has no recorded call"
    assert report.uncollected_micros == 200
