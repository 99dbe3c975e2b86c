"""`gateway credits grant` and `adjust`, `gateway balance` and `gateway usage`: an account's money, from a terminal."""

from __future__ import annotations

import dataclasses

import typer
from rich.table import Table
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway import ledger
from gateway.accounts.history import Window, usage_page
from gateway.accounts.history_daily import MAX_DAYS, as_document, daily_usage
from gateway.accounts.low_balance import Runway, runway
from gateway.accounts.wallets import Account, find_account, get_or_create_account, wallet_of
from gateway.cli.common import JsonOpt, WalletOpt, emit, run, run_for_account
from gateway.cli.output import fail, out
from gateway.cli.usage_daily import daily_table
from gateway.core.money import MICROS_PER_CREDIT, credits_to_micros, micros_to_credits

credits_app = typer.Typer(help="Credits.", no_args_is_help=True)

MAX_GRANT_CREDITS = 10**12  # $1 billion: far below what a balance can hold (2**63 micros)


def _credits_micros(credits: str) -> int:
    """`--credits` as micros (either sign), at most MAX_GRANT_CREDITS; else one line and exit 2."""
    try:
        micros = credits_to_micros(credits)
    except ValueError as exc:
        fail(f"--credits: {exc}")
    except ArithmeticError:  # an exponent beyond Decimal's range, e.g. 1e999999
        fail(f"--credits is at most {MAX_GRANT_CREDITS} per entry")
    if abs(micros) > MAX_GRANT_CREDITS * MICROS_PER_CREDIT:
        fail(f"--credits is at most {MAX_GRANT_CREDITS} per entry")
    return micros


def _reference(reference: str) -> str:
    if not reference.strip() or len(reference) > 200:
        fail("--reference must be 1 to 200 characters")
    return reference.strip()


async def _reused(db: AsyncEngine, exc: ledger.ReferenceReused) -> str:
    """The one line that says a reference already names another write, and what to do."""
    first = exc.existing
    wallet = await wallet_of(db, first.account_id)
    return (
        f"reference {first.reference!r} was already used for {first.reason} of "
        f"{micros_to_credits(first.amount_micros)} credits to {wallet}: choose a new --reference"
    )


def _post(wallet: str, micros: int, reason: str, reference: str) -> ledger.LedgerEntry:
    """Post one ledger entry to the wallet's account (a grant creates it if new); a reused reference, an uncovered
    debit or a correction for a wallet without an account is one line and changes nothing."""

    async def post(db: AsyncEngine, wallet: str) -> ledger.LedgerEntry | str:
        try:
            acct = await find_account(db, wallet)
            if acct is None and reason in ledger.ADJUSTMENT_REASONS:  # a correction is for an account that exists
                return f"no account for wallet {wallet}: nothing to correct (a first credit is a `credits grant`)"
            if acct is None:  # a new account: unless the reference is taken (then no account is created)
                taken = await ledger.get_entry(db, reason, reference)
                if taken is not None:
                    raise ledger.ReferenceReused(taken, 0, micros)
                acct = await get_or_create_account(db, wallet)
            if reason in ledger.ADJUSTMENT_REASONS:
                return await ledger.adjust(db, acct.id, micros, reason, reference)
            return await ledger.post_entry(db, acct.id, micros, reason, reference)
        except ledger.ReferenceReused as exc:
            return await _reused(db, exc)
        except ledger.InsufficientCredit as exc:
            available = micros_to_credits(exc.balance_micros - exc.held_micros)
            return f"the account has {available} credits available, less than the debit: nothing was changed"

    entry: ledger.LedgerEntry | str = run(post, wallet)
    if isinstance(entry, str):
        fail(entry)
    return entry


def _emit_entry(as_json: bool, entry: ledger.LedgerEntry, done: str) -> None:
    doc = {
        "account_id": entry.account_id,
        "amount_micros": entry.amount_micros,
        "balance_after_micros": entry.balance_after_micros,
        "credits": micros_to_credits(entry.amount_micros),
        "reason": entry.reason,
        "reference": entry.reference,
        "replayed": entry.replayed,
    }
    emit(
        as_json,
        doc,
        lambda: out.print(
            f"{'already ' if entry.replayed else ''}{done} {micros_to_credits(entry.amount_micros)} credits; "
            f"balance {micros_to_credits(entry.balance_after_micros)} credits"
        ),
    )


@credits_app.command("grant")
def credits_grant(
    wallet: str = WalletOpt,
    credits: str = typer.Option(..., "--credits", help="Credits to add (1 credit = $0.001), e.g. 5000."),
    reference: str = typer.Option(..., "--reference", help="Unique reference; granting twice with it adds once."),
    as_json: bool = JsonOpt,
) -> None:
    """Admin grant of credits, idempotent on --reference (reused for another wallet or amount: an error)."""
    micros = _credits_micros(credits)
    if micros <= 0:
        fail("--credits must be positive")
    entry = _post(wallet, micros, "admin_grant", _reference(reference))
    _emit_entry(as_json, entry, "granted")


@credits_app.command("adjust")
def credits_adjust(
    wallet: str = WalletOpt,
    credits: str = typer.Option(..., "--credits", help="Credits to add, or (negative) take, e.g. -250."),
    reason: str = typer.Option(..., "--reason", help="refund (credits back) or adjustment (either sign)."),
    reference: str = typer.Option(..., "--reference", help="Unique reference, e.g. a ticket; idempotent on it."),
    as_json: bool = JsonOpt,
) -> None:
    """Correct an account: a refund or an adjustment, idempotent on --reference. A debit never takes more than
    the account has available (balance minus credits held by calls in flight)."""
    if reason not in ledger.ADJUSTMENT_REASONS:
        fail(f"--reason is one of {', '.join(ledger.ADJUSTMENT_REASONS)}")
    micros = _credits_micros(credits)
    if micros == 0:
        fail("--credits must not be 0")
    if reason == "refund" and micros < 0:
        fail("a refund gives credits back: --credits must be positive (take credits with --reason adjustment)")
    entry = _post(wallet, micros, reason, _reference(reference))
    _emit_entry(as_json, entry, "refunded" if reason == "refund" else "adjusted by")


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
