"""What an operator can do: grant credits, revoke any key, set or clear a key's limit, freeze and unfreeze an
account, run reconcile. Each goes through `audit.run_once` (idempotent on the operator's reference, one
audit row) and through the module that owns the data: the ledger's grant (`ledger.post_entry`), the key
functions of gateway.accounts.keys, the account's freeze in gateway.accounts.wallets.

A grant's ledger row is an `admin_grant` whose reference names the operator: `ops:<wallet>:<reference>`.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from gateway import ledger
from gateway.accounts.keys import forget_account_keys, get_key, revoke_key, set_limit
from gateway.accounts.wallets import Account, find_account, get_or_create_account, set_frozen
from gateway.cache.ttl import TTLCache
from gateway.config import Settings
from gateway.jobs.reconcile import reconcile_configured
from gateway.ops.audit import Action, AuditEntry, ReferenceReused, Request, earlier, run_once

MAX_LISTED_MISMATCHES = 50  # a reconcile's audit row lists this many; the count is always whole


class NotFound(LookupError):
    pass


def grant_reference(operator: str, reference: str) -> str:
    """The ledger reference of an operator's grant: it names the operator."""
    return f"ops:{operator}:{reference}"


async def grant(
    db: AsyncEngine, operator: str, wallet: str, micros: int, reason: str, reference: str
) -> tuple[Account, AuditEntry]:
    """Credit `micros` to `wallet`'s account (created if it has none) as an `admin_grant`."""
    if not isinstance(micros, int) or isinstance(micros, bool) or not 0 < micros <= ledger.MAX_ENTRY_MICROS:
        raise ValueError(f"a grant is a whole number of micros from 1 to {ledger.MAX_ENTRY_MICROS}")
    account = await find_account(db, wallet)
    if account is None:  # a reference recorded earlier was for another account: refuse before creating one
        used = await earlier(db, reference)
        if used is not None:
            raise ReferenceReused(used)
        account = await get_or_create_account(db, wallet)
    request = Request(operator, Action.GRANT, reference, reason, account.id, None, {"amount_micros": micros})

    async def perform() -> dict[str, Any]:
        # a ledger reference already used for another account or amount raises ledger.ReferenceReused (a ValueError)
        entry = await ledger.post_entry(db, account.id, micros, "admin_grant", grant_reference(operator, reference))
        return {"ledger_entry_id": entry.id, "amount_micros": entry.amount_micros,
                "balance_after_micros": entry.balance_after_micros, "ledger_reference": entry.reference}  # fmt: skip

    return account, await run_once(db, request, perform)


async def revoke(
    db: AsyncEngine, cache: TTLCache, operator: str, key_id: int, reason: str, reference: str
) -> AuditEntry:
    key = await get_key(db, key_id)
    if key is None:
        raise NotFound(f"no key {key_id}")

    async def perform() -> dict[str, Any]:
        revoked = await revoke_key(db, key_id, cache)
        assert revoked is not None  # keys are never deleted
        return {"revoked_at": revoked.revoked_at}

    return await run_once(db, Request(operator, Action.REVOKE_KEY, reference, reason, key.account_id, key_id), perform)


async def limit_key(
    db: AsyncEngine, operator: str, key_id: int, limit_micros: int | None, reset: str, reason: str, reference: str
) -> AuditEntry:
    """Set (or, with None, clear) a key's credit limit and reset period."""
    key = await get_key(db, key_id)
    if key is None:
        raise NotFound(f"no key {key_id}")
    params = {"limit_micros": limit_micros, "limit_reset": str(reset)}

    async def perform() -> dict[str, Any]:
        changed = await set_limit(db, key_id, limit_micros, reset)
        assert changed is not None
        return changed.limit.as_doc()

    request = Request(operator, Action.SET_KEY_LIMIT, reference, reason, key.account_id, key_id, params)
    return await run_once(db, request, perform)


async def freeze(
    db: AsyncEngine, cache: TTLCache, operator: str, account_id: int, frozen: bool, reason: str, reference: str
) -> AuditEntry:
    """Freeze (calls refused with 403 account_frozen; top-ups still credited) or unfreeze an account."""

    async def perform() -> dict[str, Any]:
        try:
            since = await set_frozen(db, account_id, frozen)
        except LookupError:
            raise NotFound(f"no account {account_id}") from None
        await forget_account_keys(db, cache, account_id)
        return {"frozen_at": since}

    action = Action.FREEZE if frozen else Action.UNFREEZE
    return await run_once(db, Request(operator, action, reference, reason, account_id), perform)


async def run_reconcile(db: AsyncEngine, settings: Settings, operator: str, reason: str, reference: str) -> AuditEntry:
    """Run `gateway reconcile` now; its result (the first mismatches, all counted) is the audit row's."""

    async def perform() -> dict[str, Any]:
        report = await reconcile_configured(db, settings)
        return {
            "ok": report.ok,
            "accounts": report.accounts,
            "credited_payments": report.credited_payments,
            "chain_checked": report.chain_checked,
            "mismatch_count": len(report.mismatches),
            "mismatches": [asdict(m) for m in report.mismatches[:MAX_LISTED_MISMATCHES]],
            "uncollected_micros": report.uncollected_micros,
            "uncollected_calls": len(report.uncollected),
        }

    return await run_once(db, Request(operator, Action.RECONCILE, reference, reason), perform)
