"""`gateway accounts ...`: billing accounts (one per wallet); `gateway revenue`: calls and money in across them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import typer
from rich.table import Column, Table

from gateway.accounts.overview import list_accounts, revenue_since
from gateway.accounts.wallets import get_or_create_account
from gateway.cli.common import JsonOpt, WalletOpt, emit, run
from gateway.cli.output import out
from gateway.core.money import micros_to_credits

app = typer.Typer(help="Billing accounts.", no_args_is_help=True)


@app.command("create")
def accounts_create(wallet: str = WalletOpt, as_json: bool = JsonOpt) -> None:
    """Create the billing account for a wallet (idempotent)."""
    acct = run(get_or_create_account, wallet)
    doc = {"account_id": acct.id, "wallet": acct.wallet_address, "created": acct.created}
    emit(
        as_json,
        doc,
        lambda: out.print(f"account {acct.id} for {acct.wallet_address}" + (" created" if acct.created else " exists")),
    )


@app.command("list")
def accounts_list(
    limit: int = typer.Option(100, "--limit", min=1, max=10_000, help="How many accounts, most recently active first."),
    as_json: bool = JsonOpt,
) -> None:
    """Every account: balance, credits held by calls in flight, and its last ledger entry (grant, payment, call)."""
    rows = run(list_accounts, limit)
    docs = [
        {
            "account_id": r.account_id,
            "wallet": r.wallet,
            "balance_micros": r.balance_micros,
            "held_micros": r.held_micros,
            "balance_credits": micros_to_credits(r.balance_micros),
            "held_credits": micros_to_credits(r.held_micros),
            "created_at": r.created_at.isoformat(),
            "last_activity_at": r.last_activity_at.isoformat() if r.last_activity_at else None,
        }
        for r in rows
    ]

    def render() -> None:
        wallet = Column("wallet", no_wrap=True, min_width=42)  # whole, to copy into other commands
        table = Table("account", wallet, "balance (credits)", "held", "last activity (UTC)")
        for d in docs:
            last = (d["last_activity_at"] or "never")[:19].replace("T", " ")
            table.add_row(str(d["account_id"]), d["wallet"], d["balance_credits"], d["held_credits"], last)
        out.print(table)

    emit(as_json, docs, render)


def revenue(
    days: int = typer.Option(30, "--days", min=1, max=3660, help="The window: the last N days."),
    as_json: bool = JsonOpt,
) -> None:
    """Across all accounts over the last N days: calls per model (tokens, provider cost, charged, operator loss,
    margin) and money in per ledger reason (payments, grants, refunds, adjustments)."""
    report = run(revenue_since, datetime.now(UTC) - timedelta(days=days))

    def render() -> None:
        table = Table("model", "calls", "tokens in/out", "provider cost", "charged", "operator loss", "margin")
        for t in [*report.models, report.usage]:
            table.add_row(
                t.model or "total",
                str(t.calls),
                f"{t.prompt_tokens}/{t.completion_tokens}",
                *(micros_to_credits(m) for m in (t.provider_cost_micros, t.charged_micros, t.uncollected_micros)),
                micros_to_credits(t.margin_micros),
            )
        out.print(f"calls since {report.since:%Y-%m-%d %H:%M} UTC (credits):")
        out.print(table)
        money_in = Table("ledger reason", "entries", "credits")
        for reason, entries, micros in report.credits:
            money_in.add_row(reason, str(entries), micros_to_credits(micros))
        out.print(money_in)

    emit(as_json, report.as_doc(), render)
