"""`gateway keys ...`: create, list and revoke an account's virtual API keys, and set their credit limits."""

from __future__ import annotations

from typing import Any

import typer
from rich.table import Table
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.accounts.keys import KeyInfo, NewKey, check_limit, create_key, get_key, list_keys, revoke_key, set_limit
from gateway.accounts.wallets import get_or_create_account
from gateway.cache.ttl import key_cache_for
from gateway.cli.common import JsonOpt, WalletOpt, emit, run, run_for_account
from gateway.cli.output import fail, out
from gateway.config import get_settings
from gateway.core.limits import KeyLimit, Reset
from gateway.core.money import credits_to_micros, micros_to_credits

app = typer.Typer(help="Virtual API keys.", no_args_is_help=True)


LimitOpt = typer.Option(None, "--limit-credits", help="Most credits the key may hold or spend per period.")
ResetOpt = typer.Option(Reset.NONE, "--reset", help="When the key's period use starts again (UTC).")
KeepResetOpt = typer.Option(None, "--reset", help="When the key's period use starts again (UTC); default: unchanged.")


def _limit_micros(limit_credits: str | None) -> int | None:
    if limit_credits is None:
        return None
    try:
        micros = credits_to_micros(limit_credits)
        check_limit(micros, Reset.NONE)
    except ValueError as exc:
        fail(f"--limit-credits: {exc}")
    return micros


@app.command("create")
def keys_create(
    wallet: str = WalletOpt,
    label: str = typer.Option("", "--label", help="A name for the key."),
    limit_credits: str | None = LimitOpt,
    reset: Reset = ResetOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Create a key for the wallet's account (the account is created if needed). The raw key is shown once."""
    if len(label) > 100:
        fail("--label has at most 100 characters")
    limit = _limit_micros(limit_credits)

    async def create(db: AsyncEngine, wallet: str) -> NewKey:
        acct = await get_or_create_account(db, wallet)
        return await create_key(db, acct.id, label, limit, reset)

    new = run(create, wallet)
    doc = {
        "id": new.info.id,
        "key": new.raw_key,
        "account_id": new.info.account_id,
        "label": new.info.label,
        "prefix": new.info.prefix,
        **new.info.limit.as_doc(),
    }
    emit(
        as_json,
        doc,
        lambda: out.print(
            f"key {new.info.id} created. Copy it now, it is not shown again:\n{new.raw_key}", highlight=False
        ),
    )


def _key_doc(info: KeyInfo) -> dict[str, Any]:
    return {
        "id": info.id,
        "account_id": info.account_id,
        "prefix": info.prefix,
        "label": info.label,
        "created_at": info.created_at,
        "revoked_at": info.revoked_at,
        "active": info.active,
        **info.limit.as_doc(),
    }


def _limit_text(limit: KeyLimit) -> str:
    if limit.limit_micros is None:
        return f"none ({micros_to_credits(limit.used_micros)} used)"
    per = "" if limit.reset == Reset.NONE else f" {limit.reset}"
    return f"{micros_to_credits(limit.used_micros)} / {micros_to_credits(limit.limit_micros)}{per}"


@app.command("list")
def keys_list(wallet: str = WalletOpt, as_json: bool = JsonOpt) -> None:
    """List the account's keys (prefixes only; raw keys are never stored)."""
    infos = run_for_account(lambda db, acct: list_keys(db, acct.id), wallet)

    def render() -> None:
        table = Table("id", "prefix", "label", "created", "status", "credits used / limit")
        for k in infos:
            status = "active" if k.active else f"revoked {k.revoked_at}"
            table.add_row(str(k.id), k.prefix + "…", k.label, str(k.created_at), status, _limit_text(k.limit))
        out.print(table)

    emit(as_json, [_key_doc(k) for k in infos], render)


@app.command("revoke")
def keys_revoke(
    key_id: int = typer.Argument(..., min=1, max=2**63 - 1, help="The key's id (see `keys list`)."),
    as_json: bool = JsonOpt,
) -> None:
    """Revoke a key. Every gateway process stops accepting it within the key-cache TTL (a few seconds)."""

    async def revoke(db: AsyncEngine, key_id: int) -> KeyInfo | None:
        return await revoke_key(db, key_id, key_cache_for(get_settings()))

    info = run(revoke, key_id)
    if info is None:
        fail(f"no key with id {key_id}")
    emit(as_json, _key_doc(info), lambda: out.print(f"key {info.id} revoked"))


def _change(before: str, after: str) -> str:
    return after if before == after else f"{before} -> {after}"


def _limit_change(before: KeyLimit, after: KeyLimit) -> str:
    """What set-limit changed, e.g. 'limit 1 -> 0.4 credits, reset daily'."""

    def amount(limit: KeyLimit) -> str:
        return "none" if limit.limit_micros is None else micros_to_credits(limit.limit_micros)

    unit = " credits" if after.limit_micros is not None else ""
    return f"limit {_change(amount(before), amount(after))}{unit}, reset {_change(before.reset, after.reset)}"


@app.command("set-limit")
def keys_set_limit(
    key_id: int = typer.Argument(..., min=1, max=2**63 - 1, help="The key's id (see `keys list`)."),
    limit_credits: str | None = LimitOpt,
    no_limit: bool = typer.Option(False, "--none", help="Remove the key's limit."),
    reset: Reset | None = KeepResetOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Set or remove a key's credit limit. It applies from the key's next call; its use this period is kept."""
    if no_limit == (limit_credits is not None):
        fail("give exactly one of --limit-credits N and --none")
    limit = _limit_micros(limit_credits)

    async def set_it(db: AsyncEngine, key_id: int) -> tuple[KeyInfo, KeyInfo] | None:
        before = await get_key(db, key_id)
        if before is None:
            return None
        after = await set_limit(db, key_id, limit, reset or before.limit.reset)
        return (before, after) if after is not None else None

    changed = run(set_it, key_id)
    if changed is None:
        fail(f"no key with id {key_id}")
    before, info = changed
    emit(as_json, _key_doc(info), lambda: out.print(f"key {info.id}: {_limit_change(before.limit, info.limit)}"))
