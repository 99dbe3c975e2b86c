"""The `gateway` command line (typer + rich): run the gateway, and administer accounts, keys and credits.

Every command takes `--json` and then prints exactly one JSON document. Bad arguments print one clear
line and exit with status 2; a database that cannot be reached or is not migrated, one line and status 1
(gateway/commands/database.py). Amounts in JSON are integers of micros; credits are decimal strings.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from typing import Any, Awaitable, Callable

import typer
from rich.table import Table

from gateway import accounts, keys, ledger
from gateway.cache import key_cache_for
from gateway.config import SettingsError, get_settings
from gateway.commands.database import DatabaseNotReady, migrate_database, run_with_database, shown
from gateway.commands.output import err, fail, out
from gateway.commands.payments import reconcile, watch
from gateway.commands.usage_daily import daily_table
from gateway.history import Window, usage_page
from gateway.history_daily import MAX_DAYS, as_document, daily_usage
from gateway.money import MICROS_PER_CREDIT, credits_to_micros, micros_to_credits

app = typer.Typer(help="credit-gateway: a credit-metered LLM gateway on LiteLLM.", no_args_is_help=True, add_completion=False)
accounts_app = typer.Typer(help="Billing accounts.", no_args_is_help=True)
keys_app = typer.Typer(help="Virtual API keys.", no_args_is_help=True)
credits_app = typer.Typer(help="Credits.", no_args_is_help=True)
app.add_typer(accounts_app, name="accounts")
app.add_typer(keys_app, name="keys")
app.add_typer(credits_app, name="credits")
app.command()(watch)
app.command()(reconcile)

MAX_GRANT_CREDITS = 10**12  # $1 billion: far below what a balance can hold (2**63 micros)


def _wallet(address: str) -> str:
    try:
        return accounts.normalize_wallet(address)
    except accounts.InvalidWallet as exc:
        raise typer.BadParameter(str(exc)) from None


JsonOpt = typer.Option(False, "--json", help="Print one JSON document.")
WalletOpt = typer.Option(..., "--wallet", callback=_wallet, help="The account's wallet address (0x...).")


def run(coro_fn: Callable[..., Awaitable[Any]], *args: Any) -> Any:
    """Run one database coroutine on the configured database, once it is known to be reachable and migrated;
    turn expected errors into one line."""
    try:
        return run_with_database(get_settings().effective_database_url, lambda db: coro_fn(db, *args))
    except ledger.UnknownAccount:
        fail("no such account")


def emit(as_json: bool, document: Any, render: Callable[[], None]) -> None:
    if as_json:
        sys.stdout.write(json.dumps(document, default=str) + "\n")
    else:
        render()


def _account_doc(acct: accounts.Account) -> dict:
    return {"account_id": acct.id, "wallet": acct.wallet_address, "created": acct.created}


async def _existing_account(db, wallet: str) -> accounts.Account:  # noqa: ANN001
    acct = await accounts.find_account(db, wallet)
    if acct is None:
        raise LookupError(f"no account for wallet {accounts.normalize_wallet(wallet)}; create it with `gateway accounts create`")
    return acct


def run_for_account(coro_fn: Callable[..., Awaitable[Any]], wallet: str, *args: Any) -> Any:
    async def with_account(db, wallet: str, *rest: Any) -> Any:  # noqa: ANN001
        return await coro_fn(db, await _existing_account(db, wallet), *rest)

    try:
        return run(with_account, wallet, *args)
    except LookupError as exc:
        fail(str(exc.args[0]) if exc.args else "not found")


@app.command()
def migrate(as_json: bool = JsonOpt) -> None:
    """Apply database migrations."""
    url = get_settings().effective_database_url
    try:
        migrate_database(url)
    except DatabaseNotReady as exc:
        fail(str(exc), 1)
    emit(as_json, {"migrated": True, "database": shown(url)}, lambda: out.print(f"database up to date: {shown(url)}"))


@accounts_app.command("create")
def accounts_create(wallet: str = WalletOpt, as_json: bool = JsonOpt) -> None:
    """Create the billing account for a wallet (idempotent)."""
    acct = run(accounts.get_or_create_account, wallet)
    emit(as_json, _account_doc(acct), lambda: out.print(f"account {acct.id} for {acct.wallet_address}" + (" created" if acct.created else " exists")))


@keys_app.command("create")
def keys_create(wallet: str = WalletOpt, label: str = typer.Option("", "--label", help="A name for the key."), as_json: bool = JsonOpt) -> None:
    """Create a key for the wallet's account (the account is created if needed). The raw key is shown once."""
    if len(label) > 100:
        fail("--label has at most 100 characters")

    async def create(db, wallet: str) -> keys.NewKey:  # noqa: ANN001
        acct = await accounts.get_or_create_account(db, wallet)
        return await keys.create_key(db, acct.id, label)

    new = run(create, wallet)
    doc = {"id": new.info.id, "key": new.raw_key, "account_id": new.info.account_id, "label": new.info.label, "prefix": new.info.prefix}
    emit(as_json, doc, lambda: out.print(f"key {new.info.id} created. Copy it now, it is not shown again:\n{new.raw_key}", highlight=False))


def _key_doc(info: keys.KeyInfo) -> dict:
    return {
        "id": info.id, "account_id": info.account_id, "prefix": info.prefix, "label": info.label,
        "created_at": info.created_at, "revoked_at": info.revoked_at, "active": info.active,
    }


@keys_app.command("list")
def keys_list(wallet: str = WalletOpt, as_json: bool = JsonOpt) -> None:
    """List the account's keys (prefixes only; raw keys are never stored)."""
    infos = run_for_account(lambda db, acct: keys.list_keys(db, acct.id), wallet)

    def render() -> None:
        table = Table("id", "prefix", "label", "created", "status")
        for k in infos:
            table.add_row(str(k.id), k.prefix + "…", k.label, str(k.created_at), "active" if k.active else f"revoked {k.revoked_at}")
        out.print(table)

    emit(as_json, [_key_doc(k) for k in infos], render)


@keys_app.command("revoke")
def keys_revoke(
    key_id: int = typer.Argument(..., min=1, max=2**63 - 1, help="The key's id (see `keys list`)."), as_json: bool = JsonOpt
) -> None:
    """Revoke a key. Every gateway process stops accepting it within the key-cache TTL (a few seconds)."""
    async def revoke(db, key_id: int):  # noqa: ANN001, ANN202
        return await keys.revoke_key(db, key_id, key_cache_for(get_settings()))

    info = run(revoke, key_id)
    if info is None:
        fail(f"no key with id {key_id}")
    emit(as_json, _key_doc(info), lambda: out.print(f"key {info.id} revoked"))


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

    async def grant(db, wallet: str):  # noqa: ANN001, ANN202
        acct = await accounts.get_or_create_account(db, wallet)
        return await ledger.post_entry(db, acct.id, micros, "admin_grant", reference.strip())

    entry = run(grant, wallet)
    if entry.amount_micros != micros:
        fail(f"reference {reference!r} was already used for a grant of {micros_to_credits(entry.amount_micros)} credits")
    doc = {
        "account_id": entry.account_id, "amount_micros": entry.amount_micros, "balance_after_micros": entry.balance_after_micros,
        "credits": micros_to_credits(entry.amount_micros), "reference": entry.reference, "replayed": entry.replayed,
    }
    emit(as_json, doc, lambda: out.print(
        f"{'already granted' if entry.replayed else 'granted'} {micros_to_credits(entry.amount_micros)} credits; "
        f"balance {micros_to_credits(entry.balance_after_micros)} credits"))


@app.command()
def balance(wallet: str = WalletOpt, as_json: bool = JsonOpt) -> None:
    """Show the account's balance, credits held by calls in flight, and what is available."""
    bal: ledger.Balance = run_for_account(lambda db, acct: ledger.get_balance(db, acct.id), wallet)
    doc = {
        "account_id": bal.account_id,
        "balance_micros": bal.balance_micros, "held_micros": bal.held_micros, "available_micros": bal.available_micros,
        "balance_credits": micros_to_credits(bal.balance_micros), "held_credits": micros_to_credits(bal.held_micros),
        "available_credits": micros_to_credits(bal.available_micros),
    }
    emit(as_json, doc, lambda: out.print(
        f"balance {doc['balance_credits']} credits, held {doc['held_credits']}, available {doc['available_credits']}"))


@app.command()
def usage(
    wallet: str = WalletOpt, limit: int = typer.Option(50, "--limit", min=1, max=100), as_json: bool = JsonOpt,
    daily: bool = typer.Option(False, "--daily", help="Spend per UTC day (calls, tokens, credits) instead."),
    days: int = typer.Option(30, "--days", min=1, max=MAX_DAYS, help="With --daily: how many days, up to today."),
) -> None:
    """Show the account's most recent calls: tokens, provider cost and what the user paid (or, --daily, per day)."""
    if daily:
        spend = run_for_account(lambda db, acct: daily_usage(db, acct.id, days), wallet)
        return emit(as_json, as_document(spend), lambda: out.print(daily_table(spend)))
    page = run_for_account(lambda db, acct: usage_page(db, acct.id, Window(limit=limit), with_provider_cost=True), wallet)
    rows = [dataclasses.asdict(r) for r in page.items]

    def render() -> None:
        table = Table("when", "request", "model", "prompt", "completion", "provider cost (credits)", "user price (credits)", "charged (credits)")
        for r in rows:
            table.add_row(r["created_at"].strftime("%Y-%m-%d %H:%M:%S"), r["request_id"][:12], r["model"], str(r["prompt_tokens"]), str(r["completion_tokens"]),
                          micros_to_credits(r["provider_cost_micros"]), micros_to_credits(r["user_price_micros"]),
                          micros_to_credits(r["charged_micros"]))
        out.print(table)

    emit(as_json, rows, render)


@app.command()
def sidecar() -> None:
    """Serve the sign-in, keys and credits API alone on HOST:SIDECAR_PORT (`up` runs it too). Run `migrate` first."""
    run_with_database(get_settings().effective_database_url)
    from gateway.sidecar.app import serve  # FastAPI and SIWE load only for this command

    serve(get_settings())


@app.command()
def up() -> None:
    """Start the gateway: migrate, then run the LiteLLM proxy (and sidecar) until Ctrl-C."""
    from gateway.supervisor import serve

    try:
        raise typer.Exit(serve(get_settings()))
    except DatabaseNotReady as exc:
        fail(str(exc), 1)


def main() -> None:
    """Console entry: like `app()`, but a usage error or an invalid setting is one line on stderr and exit status 2."""
    try:
        code = app(standalone_mode=False)
    except typer.TyperException as exc:  # typer's own click: usage errors (status 2) and the like
        if type(exc).__name__ != "NoArgsIsHelpError":  # that one has printed the help already (as typer checks it)
            err.print(f"error: {exc.format_message()}", markup=False, highlight=False)
        sys.exit(exc.exit_code)
    except SettingsError as exc:  # from get_settings(), in any command
        err.print(f"error: {exc}", markup=False, highlight=False)
        sys.exit(2)
    except typer.Abort:
        sys.exit(130)
    sys.exit(code if isinstance(code, int) else 0)
