"""`gateway usage --daily`: the account's spend per UTC day, as JSON (the API's shape) and as a table with a
bar per day; its total equals the account's llm_usage debits in the ledger."""

from __future__ import annotations

import json
import uuid

import sqlalchemy as sa

from gateway import ledger
from gateway.accounts.wallets import get_or_create_account
from gateway.cli.usage_daily import BAR_WIDTH, bar
from gateway.db.engine import dispose_all, get_engine
from gateway.db.migrate import upgrade
from gateway.db.schema import credit_ledger
from tests.integration.cli.test_cli_errors import WALLET, gateway


def test_bars_are_proportional_to_the_eighth_of_a_cell() -> None:
    assert bar(0, 100) == "" and bar(5, 0) == ""
    assert bar(100, 100) == "█" * BAR_WIDTH
    assert bar(50, 100) == "█" * (BAR_WIDTH // 2)
    assert bar(1, 10**9) == "▏"  # any spend is visible
    assert bar(100, 100, width=4) == "████" and bar(3, 8, width=4) == "█▌"


async def test_daily_usage_from_the_cli_matches_the_ledger(tmp_path) -> None:
    url = f"sqlite+aiosqlite:///{(tmp_path / 'gateway.db').resolve()}"
    upgrade(url)
    db = get_engine(url)
    book = ledger.open_ledger(db)  # SQLite: nothing to close
    account = await get_or_create_account(db, WALLET)
    await ledger.post_entry(db, account.id, 5_000_000, "admin_grant", "cli-daily")
    for model, price in (("gpt-4o-mini", 1_234), ("claude", 40_000), ("gpt-4o-mini", 766)):
        await book.settle(ledger.Usage(f"req-{uuid.uuid4()}", account.id, None, model, 10, 5, 1, price, "2.0"))
    async with db.connect() as conn:
        debits = (await conn.execute(
            sa.select(sa.func.sum(credit_ledger.c.amount_micros)).where(credit_ledger.c.reason == "llm_usage")
        )).scalar_one()  # fmt: skip
    await dispose_all()

    proc = gateway(tmp_path, "usage", "--wallet", WALLET, "--daily", "--days", "3", "--json")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert [d["calls"] for d in doc["days"]] == [0, 0, 3]
    assert doc["total"]["charged_micros"] == -debits == 42_000 and doc["total"]["charged_credits"] == "42"
    assert [(m["model"], m["charged_micros"]) for m in doc["models"]] == [("claude", 40_000), ("gpt-4o-mini", 2_000)]

    table = gateway(tmp_path, "usage", "--wallet", WALLET, "--daily", "--days", "3", COLUMNS="120")
    assert table.returncode == 0, table.stderr
    assert "█" * BAR_WIDTH in table.stdout and "total 42 credits in 3 calls" in table.stdout
    assert "average 14 credits a day over 3 days" in table.stdout
    assert gateway(tmp_path, "usage", "--wallet", WALLET, "--daily", "--days", "0").returncode == 2
