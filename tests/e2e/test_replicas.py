"""The production shape's two process faults (issue 12), on real processes, PostgreSQL and Redis:

- two proxy processes (1 LiteLLM worker each, see `replicas`) on one database: 200 concurrent calls from one
  account that can afford 40 charge at most 40, never take the balance below zero, refuse the rest with 402;
- a LiteLLM worker SIGKILLed while streams are in flight: its calls' holds stay pending until the sweeper
  expires them (nothing is charged for them), the other worker's streams are billed within their holds, and
  reconcile reports exactly the killed calls as lost settles (its `expired_hold` check: a hold expired
  without a settle is a call the provider may have billed us for, so reconcile names it by design).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import openai
import pytest
import sqlalchemy as sa

from devtools.fake_upstream import DEFAULT_MODE, FakeUpstream, prompt_tokens_for_chat
from devtools.proxy_process import ProxyProcess
from gateway import ledger
from gateway.accounts.keys import create_key
from gateway.config import Settings
from gateway.db.schema import credit_holds, llm_usage
from gateway.jobs.reconcile import reconcile
from gateway.ledger.types import HoldStatus
from gateway.proxy.pricing import count_prompt_tokens
from tests.e2e.calls import CHAT, assert_every_served_call_billed_once, burst, call, funded_client, usage_count
from tests.e2e.conftest import start_proxy
from tests.e2e.test_outages import wait_until
from tests.ledger_checks import assert_books_balance

pytestmark = pytest.mark.timeout(180)

MODEL = "gpt-4o-mini"
MAX_TOKENS = 20  # what tests.e2e.calls.call asks for


@pytest.fixture
def replicas(pg_url: str, upstream: FakeUpstream, tmp_path: Path):
    """Two proxy processes of one LiteLLM worker each on one PostgreSQL database and Redis. One worker each:
    every worker's pool may open 20 connections in a burst, and this machine's PostgreSQL (max_connections
    100, shared by every test run on it) refused connections ("too many clients") with 2 x 2 workers, which
    the proxies answered with 503 (fail closed, nothing charged) — docs/operations.md sizes this."""
    procs = []
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        procs.append(start_proxy(pg_url, upstream, tmp_path / name, workers=1))
    yield procs
    for proc in procs:
        proc.stop()


def bill_exactly_the_hold(upstream: FakeUpstream) -> None:
    """Make the provider bill what the hold reserves: every output token of max_tokens (`fill`) and the prompt
    the hold counts (its bound is above the provider's count by framing: add the difference). Then each
    charged call takes its whole hold, and an account funded for N holds can be charged for N calls at most
    (with a cheaper provider, released hold remainders would fund more calls, and "at most N" would not hold)."""
    held = count_prompt_tokens(MODEL, {"messages": CHAT, "max_tokens": MAX_TOKENS}, False, DEFAULT_MODE["image_tokens"])
    billed = prompt_tokens_for_chat({"messages": CHAT}, MODEL, DEFAULT_MODE)
    upstream.set_mode(fill=True, prompt_extra_tokens=held - billed)


async def usage_and_holds(db, account_id: int) -> list[sa.Row]:
    """Every hold of the account with its call's charge (None where no call was settled)."""
    charged = (llm_usage.c.user_price_micros - llm_usage.c.uncollected_micros).label("charged")
    async with db.connect() as conn:
        return (
            await conn.execute(
                sa.select(credit_holds.c.request_id, credit_holds.c.amount_micros, credit_holds.c.status, charged)
                .select_from(credit_holds.outerjoin(llm_usage, llm_usage.c.request_id == credit_holds.c.request_id))
                .where(credit_holds.c.account_id == account_id)
                .order_by(credit_holds.c.id)
            )
        ).all()


async def test_two_proxies_sell_one_account_at_most_what_it_can_afford(db, replicas, upstream):
    bill_exactly_the_hold(upstream)
    probe, probe_client = await funded_client(db, replicas[0])
    assert await call(probe_client, streamed=False) == "ok"
    [row] = await usage_and_holds(db, probe.id)
    hold = row.amount_micros
    assert row.charged == hold > 0  # the provider bills exactly the hold

    account, _ = await funded_client(db, replicas[0], micros=40 * hold)
    key = await create_key(db, account.id, "replicas")
    upstream.reset()
    bill_exactly_the_hold(upstream)
    lowest: list[int] = []
    done = asyncio.Event()

    async def watch_balance() -> None:  # sampled while the calls run: never below zero, nor below what is held
        async with asyncio.timeout(150):
            while not done.is_set():
                bal = await ledger.get_balance(db, account.id)
                lowest.append(min(bal.balance_micros, bal.balance_micros - bal.held_micros))
                await asyncio.sleep(0.05)

    async def run() -> list[str]:
        try:  # the client on a loop of its own, as in test_burst.py
            return await asyncio.to_thread(asyncio.run, burst([p.base_url for p in replicas], key.raw_key, 200))
        finally:
            done.set()

    started = time.monotonic()
    outcomes, _ = await asyncio.gather(run(), watch_balance())
    elapsed = time.monotonic() - started
    served = outcomes.count("ok")
    assert outcomes.count("ok") + outcomes.count("402") == 200, {o: outcomes.count(o) for o in set(outcomes)}
    assert 0 < served <= 40 and await usage_count(db, account.id) == served
    assert lowest and min(lowest) >= 0
    bal = await ledger.get_balance(db, account.id)
    assert bal.balance_micros == (40 - served) * hold
    await assert_every_served_call_billed_once(db, account.id, upstream)
    print(f"200 calls over 2 proxies in {elapsed:.1f} s: {served} served, {200 - served} refused with 402")


def worker_pids(proc: ProxyProcess) -> list[int]:
    """The proxy's LiteLLM workers: the children of its process that uvicorn spawned (another child is
    multiprocessing's resource tracker)."""
    out = subprocess.run(["pgrep", "-P", str(proc.proc.pid)], capture_output=True, text=True).stdout
    return [int(pid) for pid in out.split() if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes()]


def established_connections(pid: int, port: int) -> int:
    """How many established TCP connections to `port` the process `pid` holds open."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):
            target = os.readlink(fd)
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            local_port, state, inode = int(fields[1].rsplit(":", 1)[1], 16), fields[3], fields[9]
            count += local_port == port and state == "01" and inode in inodes
    return count


async def stream_or_broken(client: openai.AsyncOpenAI) -> str:
    """A streamed call: 'ok', or 'broken' when the connection died under it."""
    try:
        return await call(client, streamed=True)
    except (openai.APIConnectionError, httpx.HTTPError):
        return "broken"


async def test_a_worker_killed_mid_stream_charges_nothing_above_a_hold_and_its_holds_are_swept(
    db, pg_url, upstream, tmp_path, book
):
    proc = start_proxy(pg_url, upstream, tmp_path)
    try:
        account, client = await funded_client(db, proc)
        assert await call(client, streamed=False) == "ok"  # the key is cached, the pool warm
        upstream.reset()
        upstream.set_mode(fill=True, chunk_delay=0.4)  # 20 chunks: each stream lasts ~8 s
        streams = [asyncio.create_task(stream_or_broken(client)) for _ in range(8)]

        async def all_streams_flowing() -> bool:  # every stream is past its hold and at the provider
            return upstream.calls("/v1/chat/completions") == 8

        await wait_until(all_streams_flowing, timeout=30)
        workers = worker_pids(proc)
        assert len(workers) == 2, workers
        victim = max(workers, key=lambda pid: established_connections(pid, proc.settings.proxy_port))
        assert established_connections(victim, proc.settings.proxy_port) > 0
        os.kill(victim, signal.SIGKILL)
        async with asyncio.timeout(60):
            outcomes = await asyncio.gather(*streams)
    finally:
        upstream.set_mode(fill=False, chunk_delay=0.0)
        proc.stop()
    broken = outcomes.count("broken")
    assert broken > 0 and outcomes.count("ok") + broken == 8, outcomes

    rows = await usage_and_holds(db, account.id)
    unsettled = {r.request_id for r in rows if r.charged is None}
    assert len(unsettled) == broken  # the killed worker's calls: no settle ran, their holds are still open
    assert {r.status for r in rows if r.request_id in unsettled} == {HoldStatus.PENDING}
    assert all(r.charged <= r.amount_micros for r in rows if r.charged is not None)

    settings = Settings()
    past_every_ttl = datetime.now(UTC) + timedelta(seconds=settings.hold_ttl_seconds + 60)
    expired = await book.expire_stale_holds(now=past_every_ttl, grace_seconds=0)
    assert unsettled <= set(expired)
    rows = await usage_and_holds(db, account.id)
    assert HoldStatus.PENDING not in {r.status for r in rows}
    assert {r.request_id for r in rows if r.status == HoldStatus.EXPIRED} == unsettled
    assert all(r.charged <= r.amount_micros for r in rows if r.charged is not None)
    bal = await ledger.get_balance(db, account.id)
    assert bal.held_micros == 0 and bal.balance_micros >= 0

    report = await reconcile(db, settings)
    flagged = [m for m in report.mismatches if m.account_id == account.id]
    assert {m.check for m in flagged} == {"expired_hold"}, flagged
    assert sorted(m.detail.split()[1] for m in flagged) == sorted(unsettled)
    await assert_books_balance(db)
    assert await usage_count(db, account.id) == 1 + outcomes.count("ok")
    print(f"worker killed mid-stream: {broken} of 8 streams broken, {len(expired)} holds expired by the sweep")
