"""`gateway audit`: the operators' audit trail (every console action: who, when, what, why, and its result),
newest first, as a table or one JSON document."""

from __future__ import annotations

import dataclasses
import json

import typer
from rich.table import Table
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.accounts.wallets import find_account
from gateway.cli.common import JsonOpt, emit, run
from gateway.cli.output import fail, out
from gateway.ops.audit import MAX_PAGE, Action, AuditEntry, audit_page

ActionOpt = typer.Option(None, "--action", help="Only this action.")


def audit(
    limit: int = typer.Option(50, "--limit", min=1, max=MAX_PAGE, help="How many rows, newest first."),
    wallet: str | None = typer.Option(None, "--wallet", help="Only actions on this wallet's account."),
    action: Action | None = ActionOpt,
    before: int | None = typer.Option(None, "--before", min=1, help="Only rows older than this id (paging)."),
    as_json: bool = JsonOpt,
) -> None:
    """Show the operators' audit trail: grants, key revocations and limits, freezes, reconcile runs."""

    async def read(db: AsyncEngine) -> list[AuditEntry] | None:
        account_id = None
        if wallet is not None:
            account = await find_account(db, wallet)
            if account is None:
                return None
            account_id = account.id
        return await audit_page(db, before=before, limit=limit, account_id=account_id, action=action)

    try:
        rows = run(read)
    except ValueError as exc:  # a malformed --wallet
        fail(f"--wallet: {exc}")
    if rows is None:
        fail(f"no account for wallet {wallet}")
    docs = [dataclasses.asdict(r) for r in rows]

    def render() -> None:
        table = Table("id", "when (UTC)", "operator", "action", "account", "key", "params", "why", "result")
        for r in rows:
            table.add_row(
                str(r.id), r.created_at.strftime("%Y-%m-%d %H:%M:%S"), r.operator_wallet, r.action,
                "-" if r.account_id is None else str(r.account_id), "-" if r.key_id is None else str(r.key_id),
                json.dumps(r.params), r.reason, json.dumps(r.result, default=str),
            )  # fmt: skip
        out.print(table)

    emit(as_json, docs, render)
