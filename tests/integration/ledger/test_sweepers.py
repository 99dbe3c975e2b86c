"""Two hold sweepers at once never double-release or fight (issue 12): the expiry of a hold is a conditional
write, so each stale hold is expired by exactly one sweeper, on PostgreSQL and on SQLite.

Sweepers race twice over: as concurrent tasks on separate pooled connections of one process (forced to
overlap: every task reads the same stale list before any releases), and as two `gateway sweep --once`
processes started together.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import tempfile
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway import ledger
from gateway.accounts.wallets import get_or_create_account
from gateway.config import Settings
from gateway.db.engine import get_engine
from gateway.db.migrate import upgrade
from gateway.db.schema import credit_holds, credit_ledger, llm_usage
from gateway.jobs.reconcile import reconcile
from tests.conftest import ledger_on, new_request_id, random_wallet
from tests.ledger_checks import assert_books_balance

HOLDS = 60
SWEEPERS = 4


@pytest.fixture(params=["postgresql", "sqlite"])
def db_url(request, tmp_path) -> str:
    if request.param == "postgresql":
        return request.getfixturevalue("pg_url")
    url = f"sqlite+aiosqlite:///{tmp_path / 'gateway.db'}"
    upgrade(url)
    return url


async def stale_holds(db: AsyncEngine, count: int) -> tuple[list[int], set[str]]:
    """`count` pending holds over three funded accounts, their TTL ended an hour ago."""
    accounts = [await get_or_create_account(db, random_wallet()) for _ in range(3)]
    for acct in accounts:
        await ledger.post_entry(db, acct.id, 1_000_000, "admin_grant", new_request_id())
    rids = set()
    async with ledger_on(db) as book:
        for i in range(count):
            rid = new_request_id()
            await book.hold(accounts[i % 3].id, rid, 1_000 + i)
            rids.add(rid)
    async with db.begin() as conn:
        await conn.execute(
            sa.update(credit_holds)
            .where(credit_holds.c.request_id.in_(rids))
            .values(expires_at=datetime.now(UTC) - timedelta(hours=1))
        )
    return [a.id for a in accounts], rids


async def effects(db: AsyncEngine, account_ids: list[int]) -> tuple[int, int, list[tuple[int, int]]]:
    """Ledger rows, usage rows, and (balance, held) of the accounts."""
    async with db.connect() as conn:
        rows = (await conn.execute(sa.select(sa.func.count()).select_from(credit_ledger))).scalar_one()
        calls = (await conn.execute(sa.select(sa.func.count()).select_from(llm_usage))).scalar_one()
    balances = [await ledger.get_balance(db, a) for a in account_ids]
    return rows, calls, [(b.balance_micros, b.held_micros) for b in balances]


async def assert_expired_once_and_books_agree(db: AsyncEngine, rids: set[str], account_ids: list[int], before) -> None:
    async with db.connect() as conn:
        statuses = dict(
            (
                await conn.execute(
                    sa.select(credit_holds.c.request_id, credit_holds.c.status).where(
                        credit_holds.c.request_id.in_(rids)
                    )
                )
            ).all()
        )
    assert set(statuses.values()) == {"expired"}
    rows, calls, balances = await effects(db, account_ids)
    assert (rows, calls) == before[:2]  # an expiry moves no money: no ledger row, no usage row
    assert balances == [(1_000_000, 0)] * 3  # every hold's amount went back exactly once
    await assert_books_balance(db)
    report = await reconcile(db, Settings())
    ours = [m for m in report.mismatches if m.account_id in account_ids]
    assert {m.check for m in ours} == {"expired_hold"}  # lost settles, each reported once; balances agree
    assert sorted(m.detail.split()[1] for m in ours) == sorted(rids)


async def test_concurrent_sweepers_expire_each_hold_exactly_once(db_url):
    db = get_engine(db_url)
    account_ids, rids = await stale_holds(db, HOLDS)
    before = await effects(db, account_ids)
    async with ledger_on(db) as book:
        results = await asyncio.gather(*[book.expire_stale_holds() for _ in range(SWEEPERS)])
        expired = [rid for result in results for rid in result if rid in rids]
        assert sorted(expired) == sorted(rids)  # every hold once: none twice, none missed
        await assert_expired_once_and_books_agree(db, rids, account_ids, before)
        assert [
            r
            for result in await asyncio.gather(*[book.expire_stale_holds() for _ in range(2)])
            for r in result
            if r in rids
        ] == []  # a later sweep finds nothing left


def start_sweep(db_url: str, home: str) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL", "GATEWAY_REDIS_URL"}}
    env |= {"GATEWAY_DATABASE_URL": db_url, "GATEWAY_HOME": home, "HOLD_SWEEP_GRACE_SECONDS": "0"}
    return subprocess.Popen(
        [sys.executable, "-m", "gateway", "sweep", "--once", "--json"],
        env=env,
        cwd=tempfile.gettempdir(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


async def test_two_sweep_processes_at_once_expire_each_hold_exactly_once(db_url, tmp_path):
    db = get_engine(db_url)
    account_ids, rids = await stale_holds(db, 200)
    before = await effects(db, account_ids)
    procs = [start_sweep(db_url, str(tmp_path)) for _ in range(2)]
    outputs = [p.communicate(timeout=120) for p in procs]
    for proc, (_, stderr) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, stderr
    expired = [rid for stdout, _ in outputs for rid in json.loads(stdout)["expired"] if rid in rids]
    assert sorted(expired) == sorted(rids)
    await assert_expired_once_and_books_agree(db, rids, account_ids, before)
