"""`gateway audit`: the operators' audit trail from the terminal, the same rows the console shows, newest first,
filtered by wallet or action; on SQLite (the embedded default), whose migration also makes the table
append-only."""

from __future__ import annotations

import json
import sqlite3

import pytest

from gateway.accounts.wallets import get_or_create_account
from gateway.cache.ttl import TTLCache
from gateway.db.engine import dispose_all, get_engine
from gateway.db.migrate import upgrade
from gateway.ops import actions
from tests.integration.cli.test_cli_errors import WALLET, gateway

OPERATOR = "0x" + "ab" * 20


async def test_audit_lists_actions_newest_first(tmp_path) -> None:
    path = (tmp_path / "gateway.db").resolve()
    upgrade(f"sqlite+aiosqlite:///{path}")
    db = get_engine(f"sqlite+aiosqlite:///{path}")
    account = await get_or_create_account(db, WALLET)
    await actions.grant(db, OPERATOR, WALLET, 1_500, "welcome", "cli-audit-grant")
    await actions.grant(db, OPERATOR, "0x" + "cd" * 20, 7, "other", "cli-audit-other")
    await actions.freeze(db, TTLCache(1), OPERATOR, account.id, True, "chargeback", "cli-audit-freeze")
    await dispose_all()

    proc = gateway(tmp_path, "audit", "--wallet", WALLET, "--json")
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)
    assert [(r["action"], r["reason"], r["operator_wallet"]) for r in rows] == [
        ("freeze", "chargeback", OPERATOR), ("grant", "welcome", OPERATOR)
    ]  # fmt: skip
    assert rows[1]["params"] == {"amount_micros": 1_500} and rows[1]["result"]["balance_after_micros"] == 1_500
    grants = json.loads(gateway(tmp_path, "audit", "--action", "grant", "--json").stdout)
    assert [r["reference"] for r in grants] == ["cli-audit-other", "cli-audit-grant"]
    table = gateway(tmp_path, "audit", COLUMNS="200")
    assert table.returncode == 0 and "chargeback" in table.stdout and "freeze" in table.stdout
    assert gateway(tmp_path, "audit", "--wallet", "0x12").returncode == 2

    with sqlite3.connect(path) as conn, pytest.raises(sqlite3.DatabaseError, match="append-only"):
        conn.execute("DELETE FROM ops_audit")
