"""`gateway credits grant`, `gateway balance` and `gateway usage`: an account's money, from the terminal."""

from __future__ import annotations

import dataclasses

import typer
from rich.table import Table
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway import ledger
from gateway.accounts.history import Window, usage_page
from gateway.accounts.history_daily import MAX_DAYS, as_document, daily_usage
from gateway.accounts.low_balance import Runway, runway
from gateway.accounts.wallets import Account, get_or_create_account
from gateway.cli.common import JsonOpt, WalletOpt, emit, run, run_for_account
from gateway.cli.output import fail, out
from gateway.cli.usage_daily import daily_table
from gateway.core.money import MICROS_PER_CREDIT, credits_to_micros, micros_to_credits

credits_app = typer.Typer(help="Credits.", no_args_is_help=True)

MAX_GRANT_CREDITS = 10**12  # $1 billion: far below what a balance can hold (2**63 micros)


@credits_app.command("grant")
def credits_grant(
    wallet: str = WalletOpt,
    credits: str = typer.Option(..., "--credits", help="Credits to add (1 credit = $0.001), e.g. 5000."),
    reference: str = typer.Option(..., "--reference", help="Unique reference; granting twice with it adds once."),
    as_json: bool = JsonOpt,
) -> None:
    """Admin grant of credits, idempotent on --reference."""
    try:
        micros = credits_to_micros(credits)
    except ValueError as exc:
        fail(f"--credits: {exc}")
    except ArithmeticError:  # an exponent beyond Decimal's range, e.g. 1e999999
        fail(f"--credits is at most {MAX_GRANT_CREDITS} per grant")
    if micros <= 0:
        fail("--credits must be positive")
    if micros > MAX_GRANT_CREDITS * MICROS_PER_CREDIT:
        fail(f"--credits is at most {MAX_GRANT_CREDITS} per grant")
    if not reference.strip() or len(reference) > 200:
        fail("--reference must be 1 to 200 characters")

    async def grant(db: AsyncEngine, wallet: str) -> ledger.LedgerEntry:
        acct = await get_or_create_account(db, wallet)
        return await ledger.post_entry(db, acct.id, micros, "admin_grant", reference.strip())

    entry = run(grant, wallet)
    if entry.amount_micros != micros:
        fail(
            f"reference {reference!r} was already used for a grant of {micros_to_credits(entry.amount_micros)} credits"
        )
    doc = {
        "account_id": entry.account_id,
        "amount_micros": entry.amount_micros,
        "balance_after_micros": entry.balance_after_micros,
        "credits": micros_to_credits(entry.amount_micros),
        "reference": entry.reference,
        "replayed": entry.replayed,
    }
    emit(
        as_json,
        doc,
        lambda: out.print(
            f"{'already granted' if entry.replayed else 'granted'} {micros_to_credits(entry.amount_micros)} credits; "
            f"balance {micros_to_credits(entry.balance_after_micros)} credits"
        ),
    )


def balance(wallet: str = WalletOpt, as_json: bool = JsonOpt) -> None:
    """Show the account's balance, credits held by calls in flight, what is available, and how long it lasts at
    the last 7 days' spend rate."""

    async def read(db: AsyncEngine, acct: Account) -> tuple[ledger.Balance, Runway]:
        return await ledger.get_balance(db, acct.id), await runway(db, acct.id)

    bal, lasts = run_for_account(read, wallet)
    doc = {
        "account_id": bal.account_id,
        "balance_micros": bal.balance_micros,
        "held_micros": bal.held_micros,
        "available_micros": bal.available_micros,
        "balance_credits": micros_to_credits(bal.balance_micros),
        "held_credits": micros_to_credits(bal.held_micros),
        "available_credits": micros_to_credits(bal.available_micros),
        **lasts.as_doc(),
    }
    at_rate = f"; lasts {doc['runway_days']} days at the last 7 days' rate" if doc["runway_days"] else ""
    line = f"balance {doc['balance_credits']} credits, held {doc['held_credits']}, available {doc['available_credits']}"
    emit(as_json, doc, lambda: out.print(line + at_rate))


def usage(
    wallet: str = WalletOpt,
    limit: int = typer.Option(50, "--limit", min=1, max=100),
    as_json: bool = JsonOpt,
    daily: bool = typer.Option(False, "--daily", help="Spend per UTC day (calls, tokens, credits) instead."),
    days: int = typer.Option(30, "--days", min=1, max=MAX_DAYS, help="With --daily: how many days, up to today."),
) -> None:
    """Show the account's most recent calls: tokens, provider cost and what the user paid (or, --daily, per day)."""
    if daily:
        spend = run_for_account(lambda db, acct: daily_usage(db, acct.id, days), wallet)
        return emit(as_json, as_document(spend), lambda: out.print(daily_table(spend)))
    page = run_for_account(
        lambda db, acct: usage_page(db, acct.id, Window(limit=limit), with_provider_cost=True), wallet
    )
    rows = [dataclasses.asdict(r) for r in page.items]

    def render() -> None:
        table = Table(
            "when",
            "request",
            "model",
            "prompt",
            "completion",
            "provider cost (credits)",
            "user price (credits)",
            "charged (credits)",
        )
        for r in rows:
            table.add_row(
                r["created_at"].strftime("%Y-%m-%d %H:%M:%S"),
                r["request_id"][:12],
                r["model"],
                str(r["prompt_tokens"]),
                str(r["completion_tokens"]),
                micros_to_credits(r["provider_cost_micros"]),
                micros_to_credits(r["user_price_micros"]),
                micros_to_credits(r["charged_micros"]),
            )
        out.print(table)

    emit(as_json, rows, render)
