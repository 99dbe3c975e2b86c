"""The real `gateway` CLI, as a subprocess, against databases and services that are wrong: never a traceback.

An unreachable or unmigrated database is one line on stderr naming it and `gateway migrate`, exit status 1
(`reconcile`: 2, "could not check"); a bad argument is one line and status 2, checked before the database;
an unreachable chain RPC is one line; an unreachable Redis does not stop a revocation.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import sqlite3
import subprocess
import sys
import tempfile

import pytest

from devtools.pg import create_database, drop_database
from gateway.accounts.keys import create_key
from gateway.accounts.wallets import get_or_create_account
from gateway.db.engine import dispose_all, get_engine
from gateway.db.migrate import upgrade

WALLET = "0x1111111111111111111111111111111111111111"
DAO = "0x2222222222222222222222222222222222222222"
CLOSED = "127.0.0.1:1"  # nothing listens on port 1


def gateway(home, *args: str, **env: str) -> subprocess.CompletedProcess:
    """`python -m gateway ARGS` with GATEWAY_HOME=home, run in tmp (away from the repo's .env), with only
    `env` set of the settings that name a service."""
    base = {
        k: v
        for k, v in os.environ.items()
        if k
        not in {
            "DATABASE_URL",
            "GATEWAY_DATABASE_URL",
            "REDIS_URL",
            "GATEWAY_REDIS_URL",
            "CHAIN_RPC_URL",
            "DAO_WALLET_ADDRESS",
        }
    }
    base |= {"LITELLM_LOCAL_MODEL_COST_MAP": "True", "GATEWAY_HOME": str(home), **env}
    return subprocess.run(
        [sys.executable, "-m", "gateway", *args],
        cwd=tempfile.gettempdir(),
        env=base,
        capture_output=True,
        text=True,
        timeout=60,
    )


def one_line_error(proc: subprocess.CompletedProcess, status: int) -> str:
    assert proc.returncode == status, (proc.returncode, proc.stdout, proc.stderr)
    assert proc.stdout == "" and "Traceback" not in proc.stderr, (proc.stdout, proc.stderr)
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    return lines[0]


@pytest.fixture(scope="module")
def empty_pg():
    """A PostgreSQL database of this module's own with no schema at all; dropped afterwards."""
    name = f"gw_cli_empty_{os.getpid()}_{secrets.token_hex(3)}"
    create_database(name)
    try:
        yield f"postgresql+asyncpg://postgres@127.0.0.1:5432/{name}"
    finally:
        drop_database(name)


@pytest.fixture(scope="module", name="migrated_home")
def migrated_home_fixture(tmp_path_factory):
    """A GATEWAY_HOME whose embedded database is migrated and holds one key (id returned)."""
    home = tmp_path_factory.mktemp("migrated-home")
    url = f"sqlite+aiosqlite:///{home / 'gateway.db'}"
    upgrade(url)

    async def new_key() -> int:
        db = get_engine(url)
        try:
            acct = await get_or_create_account(db, WALLET)
            return (await create_key(db, acct.id)).info.id
        finally:
            await dispose_all()

    return home, asyncio.run(new_key())


def test_missing_embedded_database_is_one_line_and_is_not_created(tmp_path):
    home = tmp_path / "another-folder"
    line = one_line_error(gateway(home, "balance", "--wallet", WALLET, "--json"), 1)
    assert f"database sqlite+aiosqlite:///{home / 'gateway.db'} does not exist" in line
    assert "`gateway migrate`" in line and "GATEWAY_HOME" in line
    assert not home.exists()  # a read command creates neither the folder nor the file


@pytest.mark.parametrize(
    "args, status",
    [
        (("credits", "grant", "--wallet", WALLET, "--credits", "5", "--reference", "r", "--json"), 1),
        (("reconcile", "--json"), 2),  # reconcile's 2: it could not check (1 would say the books disagree)
    ],
)
def test_unmigrated_embedded_database(tmp_path, args, status):
    (tmp_path / "gateway.db").touch()  # an empty SQLite file: no tables at all
    line = one_line_error(gateway(tmp_path, *args), status)
    assert f"database sqlite+aiosqlite:///{tmp_path / 'gateway.db'} is not migrated" in line
    assert "run `gateway migrate` (or `gateway up`)" in line
    with contextlib.closing(sqlite3.connect(tmp_path / "gateway.db")) as conn:  # not migrated behind our back
        assert conn.execute("SELECT count(*) FROM sqlite_master").fetchone() == (0,)


def test_unmigrated_postgres_database(tmp_path, empty_pg):
    line = one_line_error(gateway(tmp_path, "keys", "list", "--wallet", WALLET, "--json", DATABASE_URL=empty_pg), 1)
    assert line == f"error: database {empty_pg} is not migrated: run `gateway migrate` (or `gateway up`) first"


@pytest.mark.parametrize(
    "url, args, says",
    [
        (f"postgresql+asyncpg://postgres:s3cret@{CLOSED}/gw", ("migrate", "--json"), "(ConnectionRefusedError: "),
        (
            "postgresql+asyncpg://postgres@127.0.0.1:5432/gw_cli_no_such_db",
            ("balance", "--wallet", WALLET),
            'database "gw_cli_no_such_db" does not exist',
        ),
    ],
)
def test_unreachable_postgres_database(tmp_path, url, args, says):
    line = one_line_error(gateway(tmp_path, *args, DATABASE_URL=url), 1)
    shown = url.replace(":s3cret@", ":***@")
    assert line.startswith(f"error: cannot connect to database {shown} ") and "s3cret" not in line
    assert says in line and "`gateway migrate`" in line


@pytest.mark.parametrize(
    "args",
    [
        ("keys", "revoke", "99999999999999999999"),  # was an OverflowError from the driver
        ("credits", "grant", "--wallet", WALLET, "--credits", "1e999999", "--reference", "r"),  # was decimal.Overflow
        ("usage", "--wallet", WALLET, "--limit", "0"),  # was a typer traceback (its click is not `click`)
        ("balance", "--wallet", "0xnope"),
        ("balance", "--wallet", "0x5AAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"),  # EIP-55 example, one case flipped
    ],
)
def test_bad_arguments_are_status_2_before_the_database_is_touched(tmp_path, args):
    line = one_line_error(gateway(tmp_path, *args), 2)  # no database here: the argument is refused first
    assert "database" not in line


def test_unreachable_chain_rpc(migrated_home):
    home, _ = migrated_home
    rpc = {"CHAIN_RPC_URL": f"http://{CLOSED}", "DAO_WALLET_ADDRESS": DAO}
    assert "chain RPC eth_chainId failed" in one_line_error(gateway(home, "watch", "--once", **rpc), 1)
    assert "could not check payments on chain" in one_line_error(gateway(home, "reconcile", "--json", **rpc), 2)


def test_unreachable_redis_does_not_stop_a_revocation(migrated_home):
    home, key_id = migrated_home
    proc = gateway(home, "keys", "revoke", str(key_id), "--json", REDIS_URL=f"redis://{CLOSED}/0")
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    assert len(proc.stderr.splitlines()) <= 1  # at most the outage, logged once
    assert json.loads(proc.stdout)["active"] is False
