"""The one-role commands a deployment runs per container: `gateway proxy` (a replica: the LiteLLM proxy with
the gateway's hooks, exec'd so that the engine's signals reach it) and `gateway sweep` (the hold sweeper
alone, stopped by SIGTERM as a container's PID 1 is)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import openai
import pytest
import sqlalchemy as sa

from devtools.proxy_process import free_port, write_test_config
from gateway import ledger
from gateway.accounts.wallets import get_or_create_account
from gateway.db.engine import get_engine
from gateway.db.migrate import upgrade
from gateway.db.schema import credit_holds
from tests.conftest import new_request_id, random_wallet
from tests.e2e.calls import CHAT, funded_client
from tests.ledger_checks import assert_books_balance

pytestmark = pytest.mark.timeout(180)


def role_env(db_url: str, home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL", "GATEWAY_REDIS_URL"}}
    return env | {"GATEWAY_DATABASE_URL": db_url, "GATEWAY_HOME": str(home), **extra}


def gateway(*args: str, env: dict[str, str], **kw) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "gateway", *args],
        env=env,
        cwd=tempfile.gettempdir(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        **kw,
    )


def wait_live(port: int, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stdout.read()[-3000:]
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health/liveliness", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise AssertionError("the proxy did not come up")


def command_line(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/cmdline").read_text().split("\0")


class _Proxy:  # what funded_client needs of a proxy
    def __init__(self, port: int):
        self.base_url = f"http://127.0.0.1:{port}/v1"


async def test_proxy_command_execs_the_billing_proxy_and_stops_on_sigterm(db, pg_url, upstream, tmp_path):
    port = free_port()
    config = write_test_config(tmp_path, upstream.base_url)
    env = role_env(pg_url, tmp_path, PROXY_PORT=str(port), PROXY_WORKERS="1", LITELLM_MASTER_KEY="sk-admin-role-test")
    proc = gateway("proxy", "--config", str(config), env=env)
    try:
        wait_live(port, proc)
        cmdline = command_line(proc.pid)
        assert cmdline[1:3] == ["-m", "gateway.proxy.launch"] and "--config" in cmdline  # the same pid: exec'd
        account, client = await funded_client(db, _Proxy(port))
        reply = await client.chat.completions.create(model="gpt-4o-mini", messages=CHAT, max_tokens=20)
        assert reply.choices[0].message.content
        bal = await ledger.get_balance(db, account.id)
        assert bal.balance_micros < 50_000_000 and bal.held_micros == 0  # held, then settled by our hooks
        with pytest.raises(openai.AuthenticationError):
            await openai.AsyncOpenAI(
                base_url=f"http://127.0.0.1:{port}/v1", api_key="sk-cg-nope", max_retries=0
            ).chat.completions.create(model="gpt-4o-mini", messages=CHAT, max_tokens=5)
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    await assert_books_balance(db)


def test_proxy_command_refuses_an_unmigrated_database_in_one_line(tmp_path):
    proc = gateway("proxy", env=role_env(f"sqlite+aiosqlite:///{tmp_path / 'none.db'}", tmp_path))
    output, _ = proc.communicate(timeout=60)
    assert proc.returncode == 1 and output.count("\n") == 1 and "gateway migrate" in output, output


async def test_sweep_command_sweeps_at_start_and_stops_on_sigterm(tmp_path):
    url = f"sqlite+aiosqlite:///{tmp_path / 'gateway.db'}"
    upgrade(url)
    db = get_engine(url)
    book = ledger.open_ledger(db)  # SQLite: nothing to close
    account = await get_or_create_account(db, random_wallet())
    await ledger.post_entry(db, account.id, 10_000, "admin_grant", new_request_id())
    rid = new_request_id()
    await book.hold(account.id, rid, 5_000)
    async with db.begin() as conn:
        await conn.execute(
            sa.update(credit_holds)
            .where(credit_holds.c.request_id == rid)
            .values(expires_at=datetime.now(UTC) - timedelta(hours=2))
        )
    proc = gateway("sweep", "--interval", "1", env=role_env(url, tmp_path))
    try:
        deadline = time.monotonic() + 60
        while (await ledger.get_balance(db, account.id)).held_micros and time.monotonic() < deadline:
            assert proc.poll() is None
            await asyncio.sleep(0.2)
        assert (await ledger.get_balance(db, account.id)).held_micros == 0
        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, output
    assert f"released 1 holds whose settle was lost: {rid}" in output and "hold sweeper stopped" in output
    await assert_books_balance(db)
