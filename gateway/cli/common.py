"""What every `gateway` command shares: the `--json` and `--wallet` options, one JSON document or a rendered
view, and running a coroutine on the configured database (reachable and migrated, or one line and exit)."""

from __future__ import annotations

import json
import sys
from collections.abc import Awaitable, Callable
from typing import Any

import typer
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway import ledger
from gateway.accounts.wallets import Account, InvalidWallet, find_account, normalize_wallet
from gateway.cli.database import run_with_database
from gateway.cli.output import fail
from gateway.config import get_settings


def _wallet(address: str) -> str:
    try:
        return normalize_wallet(address)
    except InvalidWallet as exc:
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


async def _existing_account(db: AsyncEngine, wallet: str) -> Account:
    acct = await find_account(db, wallet)
    if acct is None:
        raise LookupError(f"no account for wallet {normalize_wallet(wallet)}; create it with `gateway accounts create`")
    return acct


def run_for_account(coro_fn: Callable[..., Awaitable[Any]], wallet: str, *args: Any) -> Any:
    """`run` for a command about an existing account: `coro_fn(db, account, *args)`."""

    async def with_account(db: AsyncEngine, wallet: str, *rest: Any) -> Any:
        return await coro_fn(db, await _existing_account(db, wallet), *rest)

    try:
        return run(with_account, wallet, *args)
    except LookupError as exc:
        fail(str(exc.args[0]) if exc.args else "not found")
