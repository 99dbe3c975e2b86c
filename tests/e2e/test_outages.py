"""Faults under load, through the real proxy (2 workers): PostgreSQL and Redis each behind a TCP forwarder
this module controls (the machine's servers are never touched), a slow fake upstream so that calls are in
flight when a link drops. What must hold: every call the provider served is billed exactly once (the
upstream's call count equals the usage rows), no hold of a served call expires, no internal error text
reaches a client, and Redis being down refuses nothing. (The 500-call burst on a healthy stack is in test_burst.py: this
module's forwarders run in the test process, and a burst through them measures the test harness.)"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from devtools.forwarder import TcpForwarder
from devtools.proxy_process import ProxyProcess, free_port, write_test_config
from gateway import ledger
from gateway.config import Settings
from tests.e2e.calls import assert_every_served_call_billed_once, call, funded_client, usage_count
from tests.ledger_checks import assert_books_balance

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def links(pg_url):
    """Forwarders to the test run's PostgreSQL database and to Redis, and a proxy connected through both."""
    url = sa.engine.make_url(pg_url)
    with TcpForwarder(url.host or "127.0.0.1", url.port or 5432) as pg, TcpForwarder("127.0.0.1", 6379) as redis:
        yield pg, redis, url.set(host=pg.host, port=pg.port).render_as_string(hide_password=False)


@pytest.fixture(scope="module")
def faulty_proxy(links, upstream, tmp_path_factory):
    _pg, redis, db_url = links
    home = tmp_path_factory.mktemp("outage-home")
    proc = start_proxy(home, db_url, f"redis://{redis.netloc}/0", upstream)
    yield proc
    proc.stop()


def start_proxy(home: Path, db_url: str, redis_url: str, upstream, port: int | None = None) -> ProxyProcess:
    settings = Settings(
        gateway_home=home,
        database_url=db_url,
        redis_url=redis_url,
        proxy_port=port or free_port(),
        proxy_workers=2,
        litellm_master_key="sk-admin-outage-test",
    )
    return ProxyProcess(
        settings, write_test_config(home, upstream.base_url), home / f"proxy-{time.time_ns()}.log"
    ).start()


def spooled(home: Path) -> int:
    path = home / "spool" / "settles.sqlite3"
    if not path.exists():
        return 0
    with contextlib.closing(sqlite3.connect(path, timeout=30)) as conn:
        try:
            return conn.execute("SELECT count(*) FROM spooled WHERE failed = 0").fetchone()[0]
        except sqlite3.OperationalError:  # the file exists, its table not yet
            return 0


async def wait_until(predicate, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not await predicate():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.5)


async def test_postgres_cut_under_load_bills_every_served_call_once(db, links, faulty_proxy, upstream):
    pg, _, _ = links
    account, client = await funded_client(db, faulty_proxy)
    upstream.set_mode(latency=0.4, chunk_delay=0.05)
    outcomes: list[str] = []
    most_spooled = 0
    stop = time.monotonic() + 14

    async def worker(i: int) -> None:
        while time.monotonic() < stop:
            outcomes.append(await call(client, streamed=i % 2 == 1))

    async def fault() -> None:
        nonlocal most_spooled
        await asyncio.sleep(3)
        pg.cut()
        cut_until = time.monotonic() + 8
        while time.monotonic() < cut_until:
            most_spooled = max(most_spooled, spooled(faulty_proxy.settings.gateway_home))
            await asyncio.sleep(0.2)
        pg.restore()

    try:
        await asyncio.gather(fault(), *[worker(i) for i in range(8)])
    finally:
        pg.restore()
        upstream.set_mode(latency=0.0, chunk_delay=0.0)
    assert set(outcomes) <= {"ok", "503"} and outcomes.count("ok") > 0 and "503" in outcomes
    assert most_spooled > 0  # calls were in flight when the link dropped, and their settles waited on disk

    async def drained() -> bool:
        return spooled(faulty_proxy.settings.gateway_home) == 0

    await wait_until(drained)
    assert await usage_count(db, account.id) == outcomes.count("ok")
    await assert_every_served_call_billed_once(db, account.id, upstream)


def kill_hard(proc: ProxyProcess) -> None:
    """SIGKILL the proxy and its workers: no shutdown code runs."""
    children = subprocess.run(["pgrep", "-P", str(proc.proc.pid)], capture_output=True, text=True).stdout.split()
    for pid in [*children, str(proc.proc.pid)]:
        with contextlib.suppress(ProcessLookupError):
            os.kill(int(pid), signal.SIGKILL)
    proc.proc.wait()


async def test_a_proxy_killed_with_spooled_settles_has_them_applied_by_its_successor(db, links, upstream, tmp_path):
    pg, redis, db_url = links
    proxy = start_proxy(tmp_path, db_url, f"redis://{redis.netloc}/0", upstream)
    try:
        account, client = await funded_client(db, proxy)
        await call(client, streamed=False)  # the key is cached, the pool warm
        upstream.reset()
        upstream.set_mode(latency=3.0)
        in_flight = [asyncio.create_task(call(client, streamed=i % 2 == 1)) for i in range(6)]

        async def all_at_the_provider() -> bool:
            return upstream.calls("/v1/chat/completions") == 6

        await wait_until(all_at_the_provider, timeout=20)  # every call is past its hold, waiting on the provider
        pg.cut()
        assert await asyncio.gather(*in_flight) == ["ok"] * 6  # served; their settles went to the spool
        assert spooled(tmp_path) == 6
        kill_hard(proxy)
    finally:
        pg.restore()
        upstream.set_mode(latency=0.0)
        proxy.stop()
    successor = start_proxy(tmp_path, db_url, f"redis://{redis.netloc}/0", upstream)
    try:

        async def drained() -> bool:
            return spooled(tmp_path) == 0

        await wait_until(drained)
        assert await usage_count(db, account.id) == 7
        assert upstream.calls("/v1/chat/completions") == 6
    finally:
        successor.stop()
    bal = await ledger.get_balance(db, account.id)
    assert bal.held_micros == 0
    await assert_books_balance(db)


@pytest.mark.parametrize("fault", ["cut", "hang"])
async def test_redis_down_refuses_nothing_and_bills_once(db, links, faulty_proxy, upstream, fault):
    _, redis, _ = links
    account, client = await funded_client(db, faulty_proxy)
    assert await call(client, streamed=False) == "ok"
    getattr(redis, fault)()
    try:
        outcomes = await asyncio.gather(*[call(client, streamed=i % 2 == 1) for i in range(40)])
        await asyncio.sleep(3)  # past the key cache's TTL: lookups must fall back to the database
        outcomes += await asyncio.gather(*[call(client, streamed=i % 2 == 1) for i in range(20)])
    finally:
        redis.restore()
    assert outcomes == ["ok"] * 60
    outcomes = await asyncio.gather(*[call(client, streamed=False) for _ in range(20)])  # no stale-connection 503
    assert outcomes == ["ok"] * 20
    await assert_every_served_call_billed_once(db, account.id, upstream)
