"""One account, found by wallet, as an operator sees it: balance, held, frozen, last activity, keys with
their limits, use and last call, and the latest ledger entries, calls (with provider cost) and audit rows."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway import ledger
from gateway.accounts.history import Window, ledger_page, usage_page
from gateway.accounts.key_activity import last_used_by_key
from gateway.accounts.keys import list_keys
from gateway.accounts.wallets import find_account, frozen_since
from gateway.db.schema import as_utc, credit_ledger, llm_usage
from gateway.ops.audit import audit_page

RECENT = 25


async def _last_activity(db: AsyncEngine, account_id: int) -> Any:
    latest = [
        sa.select(sa.func.max(t.c.created_at)).where(t.c.account_id == account_id).scalar_subquery()
        for t in (credit_ledger, llm_usage)
    ]
    async with db.connect() as conn:
        values = (await conn.execute(sa.select(*latest))).one()
    found = [as_utc(v) for v in values if v is not None]
    return max(found) if found else None


async def account_view(db: AsyncEngine, wallet: str) -> dict[str, Any] | None:
    """Everything the console shows of `wallet`'s account; None when the wallet has no account."""
    account = await find_account(db, wallet)
    if account is None:
        return None
    balance = await ledger.get_balance(db, account.id)
    last_used = await last_used_by_key(db, account.id)
    keys = [
        {"id": k.id, "prefix": k.prefix, "label": k.label, "active": k.active, "created_at": k.created_at,
         "revoked_at": k.revoked_at, "last_used_at": last_used.get(k.id), **k.limit.as_doc()}
        for k in await list_keys(db, account.id)
    ]  # fmt: skip
    window = Window(limit=RECENT)
    return {
        "account_id": account.id,
        "wallet_address": account.wallet_address,
        "balance_micros": balance.balance_micros,
        "held_micros": balance.held_micros,
        "available_micros": balance.available_micros,
        "frozen_at": await frozen_since(db, account.id),
        "last_activity_at": await _last_activity(db, account.id),
        "keys": keys,
        "ledger": [asdict(r) for r in (await ledger_page(db, account.id, window)).items],
        "usage": [asdict(r) for r in (await usage_page(db, account.id, window, with_provider_cost=True)).items],
        "audit": [asdict(a) for a in await audit_page(db, account_id=account.id, limit=RECENT)],
    }
