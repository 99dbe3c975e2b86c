"""The operator's money commands as a subprocess on the embedded database: `credits grant` refusing a reused
reference, `credits adjust` (refunds and corrections, never below zero), `accounts list`, `revenue` and
`--version`. Each refusal is one line, exit 2, and changes nothing."""

from __future__ import annotations

import asyncio
import json
from importlib.metadata import version

import pytest

from gateway.accounts.wallets import get_or_create_account
from gateway.db.engine import dispose_all, get_engine
from gateway.db.migrate import upgrade
from tests.integration.cli.test_cli_errors import WALLET, gateway, one_line_error

OTHER = "0x3333333333333333333333333333333333333333"


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    """A migrated GATEWAY_HOME with WALLET's and OTHER's (empty) accounts."""
    home = tmp_path_factory.mktemp("operator-home")
    url = f"sqlite+aiosqlite:///{home / 'gateway.db'}"
    upgrade(url)

    async def accounts() -> None:
        try:
            for wallet in (WALLET, OTHER):
                await get_or_create_account(get_engine(url), wallet)
        finally:
            await dispose_all()

    asyncio.run(accounts())
    return home


def balance_micros(home, wallet: str) -> int:
    return int(json.loads(gateway(home, "balance", "--wallet", wallet, "--json").stdout)["balance_micros"])


def grant(home, wallet: str, credits: str, reference: str):
    return gateway(home, "credits", "grant", "--wallet", wallet, "--credits", credits, "--reference", reference)


def test_a_grant_reference_reused_for_another_wallet_or_amount_is_refused(home):
    assert grant(home, WALLET, "1000", "welcome").returncode == 0
    before = (balance_micros(home, WALLET), balance_micros(home, OTHER))
    line = one_line_error(grant(home, OTHER, "1000", "welcome"), 2)
    assert "'welcome'" in line and WALLET in line and "choose a new --reference" in line, line
    line = one_line_error(grant(home, WALLET, "5", "welcome"), 2)
    assert "1000 credits" in line and "choose a new --reference" in line, line
    assert (balance_micros(home, WALLET), balance_micros(home, OTHER)) == before
    newcomer = "0x4444444444444444444444444444444444444444"
    assert "choose a new --reference" in one_line_error(grant(home, newcomer, "1000", "welcome"), 2)
    assert "no account" in one_line_error(gateway(home, "balance", "--wallet", newcomer), 2)  # none was created
    again = grant(home, WALLET, "1000", "welcome")  # the same grant again: a replay, not an error
    assert again.returncode == 0 and "already granted 1000 credits" in again.stdout, again.stderr


def adjust(home, wallet: str, credits: str, reason: str, reference: str, *more: str):
    return gateway(
        home, "credits", "adjust", "--wallet", wallet, "--credits", credits, "--reason", reason,
        "--reference", reference, "--json", *more,
    )  # fmt: skip


def test_adjust_refunds_and_debits_but_never_below_zero(home):
    assert grant(home, OTHER, "10", "other-start").returncode == 0
    refund = adjust(home, OTHER, "2.5", "refund", "ticket-1")
    assert refund.returncode == 0, refund.stderr
    doc = json.loads(refund.stdout)
    assert (doc["amount_micros"], doc["balance_after_micros"], doc["reason"]) == (2_500, 12_500, "refund")
    debit = json.loads(adjust(home, OTHER, "-2", "adjustment", "ticket-2").stdout)
    assert (debit["amount_micros"], debit["balance_after_micros"]) == (-2_000, 10_500)
    replay = json.loads(adjust(home, OTHER, "-2", "adjustment", "ticket-2").stdout)
    assert replay["replayed"] is True and balance_micros(home, OTHER) == 10_500

    line = one_line_error(adjust(home, OTHER, "-10.501", "adjustment", "ticket-3"), 2)
    assert "10.5 credits available" in line, line
    assert "choose a new --reference" in one_line_error(adjust(home, OTHER, "-1", "adjustment", "ticket-2"), 2)
    assert "refund" in one_line_error(adjust(home, OTHER, "-1", "refund", "ticket-4"), 2)
    assert "--reason" in one_line_error(adjust(home, OTHER, "1", "admin_grant", "ticket-5"), 2)
    assert "not be 0" in one_line_error(adjust(home, OTHER, "0", "adjustment", "ticket-6"), 2)
    stranger = "0x5555555555555555555555555555555555555555"
    assert "no account" in one_line_error(adjust(home, stranger, "5", "refund", "ticket-7"), 2)
    assert "no account" in one_line_error(gateway(home, "balance", "--wallet", stranger), 2)  # none was created
    assert balance_micros(home, OTHER) == 10_500


def test_accounts_list_and_revenue_cover_every_account(home):
    listed = gateway(home, "accounts", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    rows = {r["wallet"]: r for r in json.loads(listed.stdout)}
    assert {WALLET, OTHER} <= set(rows)
    for wallet in (WALLET, OTHER):
        assert rows[wallet]["balance_micros"] == balance_micros(home, wallet)
        assert rows[wallet]["held_micros"] == 0 and rows[wallet]["last_activity_at"] is not None
    table = gateway(home, "accounts", "list", COLUMNS="200")
    assert table.returncode == 0 and OTHER in table.stdout, table.stderr

    revenue = gateway(home, "revenue", "--days", "7", "--json")
    assert revenue.returncode == 0, revenue.stderr
    doc = json.loads(revenue.stdout)
    assert doc["usage"]["calls"] == 0 and doc["usage"]["charged_micros"] == 0
    credited = {r["reason"]: r["amount_micros"] for r in doc["credits"]}
    assert credited["admin_grant"] == sum(balance_micros(home, w) for w in (WALLET, OTHER)) - 500
    assert credited["refund"] == 2_500 and credited["adjustment"] == -2_000
    text = gateway(home, "revenue", COLUMNS="200")
    assert text.returncode == 0 and "operator loss" in text.stdout, text.stderr


def test_version():
    proc = gateway("/nonexistent", "--version")
    assert proc.returncode == 0 and proc.stdout.strip() == f"gateway {version('credit-gateway')}", proc
