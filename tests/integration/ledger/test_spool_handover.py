"""Spool handover between replicas (issue 12, point 5): in docker-compose.yml every proxy replica of a host
mounts the same `spool` volume at SPOOL_DIR, so what a killed replica spooled is applied by whichever
replica runs next, its replacement or a sibling, and by several at once without applying anything twice.

Here the replicas are plain processes sharing one spool folder: one spools settles (the database is
unreachable to it) and is killed with SIGKILL before it can replay them; then two others start together
and replay the same journal into PostgreSQL. Each call must be billed exactly once.
"""

from __future__ import annotations

import dataclasses
import json
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import sqlalchemy as sa

from gateway import ledger
from gateway.db.schema import credit_holds, llm_usage
from tests.conftest import new_request_id
from tests.ledger_checks import assert_books_balance

CALLS = 40
PRICE = 700

KILLED_REPLICA = textwrap.dedent("""
    import asyncio, json, os, signal, sys
    from pathlib import Path
    from gateway import ledger
    from gateway.ledger.spool import Spool

    async def main():
        spool = Spool(Path(sys.argv[1]))
        for usage in json.loads(sys.stdin.read()):
            await spool.put_settle(ledger.Usage(**usage))  # what a replica does when the database is down
    asyncio.run(main())
    os.kill(os.getpid(), signal.SIGKILL)  # killed before its background replay could run
""")

REPLACEMENT_REPLICA = textwrap.dedent("""
    import asyncio, sys
    from pathlib import Path
    from gateway.db.engine import dispose_all, get_engine
    from gateway.ledger import open_ledger
    from gateway.ledger.spool import Spool

    async def main():
        try:  # what a replica runs at start (disposing the engine closes the ledger's connections)
            print(await Spool(Path(sys.argv[1])).replay(open_ledger(get_engine(sys.argv[2]))))
        finally:
            await dispose_all()
    asyncio.run(main())
""")


def spool_and_die(spool_dir: Path, usages: list[dict]) -> None:
    """One replica spools the settles, then is killed with SIGKILL."""
    killed = subprocess.run(
        [sys.executable, "-c", KILLED_REPLICA, str(spool_dir)],
        input=json.dumps(usages),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr


def replay_at_once(spool_dir: Path, db_url: str, replicas: int) -> list[int]:
    """`replicas` processes start together on the spool folder; how many entries each applied."""
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", REPLACEMENT_REPLICA, str(spool_dir), db_url],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(replicas)
    ]
    outputs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0] * replicas, [err for _, err in outputs]
    return [int(out) for out, _ in outputs]


def usage_for(account_id: int, request_id: str) -> dict:
    return dataclasses.asdict(
        ledger.Usage(
            request_id=request_id,
            account_id=account_id,
            key_id=None,
            model="gpt-4o-mini",
            prompt_tokens=12,
            completion_tokens=8,
            provider_cost_micros=PRICE // 2,
            user_price_micros=PRICE,
            markup="2.0",
            streamed=True,
        )
    )


async def test_a_killed_replicas_spool_is_applied_once_by_the_replicas_sharing_it(db, pg_url, account, tmp_path, book):
    await ledger.post_entry(db, account.id, 1_000_000, "admin_grant", new_request_id())
    rids = [new_request_id() for _ in range(CALLS)]
    for rid in rids:
        await book.hold(account.id, rid, 1_000)
    spool_dir = tmp_path / "spool-volume"

    spool_and_die(spool_dir, [usage_for(account.id, rid) for rid in rids])
    assert (await ledger.get_balance(db, account.id)).held_micros == CALLS * 1_000  # nothing applied yet

    applied = replay_at_once(spool_dir, pg_url, replicas=2)
    assert sum(applied) >= CALLS  # between them they applied all (a settle both picked up is replayed as a no-op)

    async with db.connect() as conn:
        rows = (
            (await conn.execute(sa.select(llm_usage.c.request_id).where(llm_usage.c.account_id == account.id)))
            .scalars()
            .all()
        )
        statuses = set(
            (
                await conn.execute(sa.select(credit_holds.c.status).where(credit_holds.c.account_id == account.id))
            ).scalars()
        )
    assert sorted(rows) == sorted(rids)  # each call billed exactly once
    assert statuses == {"posted"}
    bal = await ledger.get_balance(db, account.id)
    assert (bal.balance_micros, bal.held_micros) == (1_000_000 - CALLS * PRICE, 0)
    await assert_books_balance(db)
    assert replay_at_once(spool_dir, pg_url, replicas=1) == [0]  # empty now: a later replica finds nothing
