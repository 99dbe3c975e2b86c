"""`gateway keys ...`: create, list and revoke an account's virtual API keys."""

from __future__ import annotations

from typing import Any

import typer
from rich.table import Table
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.accounts.keys import KeyInfo, NewKey, create_key, list_keys, revoke_key
from gateway.accounts.wallets import get_or_create_account
from gateway.cache.ttl import key_cache_for
from gateway.cli.common import JsonOpt, WalletOpt, emit, run, run_for_account
from gateway.cli.output import fail, out
from gateway.config import get_settings

app = typer.Typer(help="Virtual API keys.", no_args_is_help=True)


@app.command("create")
def keys_create(
    wallet: str = WalletOpt,
    label: str = typer.Option("", "--label", help="A name for the key."),
    as_json: bool = JsonOpt,
) -> None:
    """Create a key for the wallet's account (the account is created if needed). The raw key is shown once."""
    if len(label) > 100:
        fail("--label has at most 100 characters")

    async def create(db: AsyncEngine, wallet: str) -> NewKey:
        acct = await get_or_create_account(db, wallet)
        return await create_key(db, acct.id, label)

    new = run(create, wallet)
    doc = {
        "id": new.info.id,
        "key": new.raw_key,
        "account_id": new.info.account_id,
        "label": new.info.label,
        "prefix": new.info.prefix,
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
    }


@app.command("list")
def keys_list(wallet: str = WalletOpt, as_json: bool = JsonOpt) -> None:
    """List the account's keys (prefixes only; raw keys are never stored)."""
    infos = run_for_account(lambda db, acct: list_keys(db, acct.id), wallet)

    def render() -> None:
        table = Table("id", "prefix", "label", "created", "status")
        for k in infos:
            status = "active" if k.active else f"revoked {k.revoked_at}"
            table.add_row(str(k.id), k.prefix + "…", k.label, str(k.created_at), status)
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
