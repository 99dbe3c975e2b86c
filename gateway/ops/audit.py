"""The audit trail of operator actions: each action runs once per idempotency reference and leaves one
append-only `ops_audit` row (who, when, what, why, and what came of it).

`run_once` is the only way an action is done: it returns the recorded result of an earlier action with the
same reference and the same request (who, action, target, parameters), refuses a reference reused for a
different request (`ReferenceReused`), and otherwise performs the action and records it. Every action is
itself idempotent (a grant on its ledger reference, the others set a state), so a crash between the action
and its row is repaired by retrying with the same reference.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.db.ops_schema import ops_audit
from gateway.db.schema import as_utc

MAX_PAGE = 200


class Action(StrEnum):
    GRANT = "grant"
    REVOKE_KEY = "revoke_key"
    SET_KEY_LIMIT = "set_key_limit"
    FREEZE = "freeze"
    UNFREEZE = "unfreeze"
    RECONCILE = "reconcile"


@dataclass(frozen=True)
class Request:
    """What an operator asks: who, what, on which account or key, with which parameters, and why."""

    operator: str  # lower-case 0x wallet
    action: Action
    reference: str
    reason: str
    account_id: int | None = None
    key_id: int | None = None
    params: dict[str, Any] | None = None

    def params_json(self) -> str:
        return json.dumps(self.params or {}, sort_keys=True, separators=(",", ":"))

    def same_as(self, row: sa.Row[Any]) -> bool:
        return (row.operator_wallet, row.action, row.account_id, row.key_id, row.params, row.reason) == (
            self.operator, self.action.value, self.account_id, self.key_id, self.params_json(), self.reason,
        )  # fmt: skip


@dataclass(frozen=True)
class AuditEntry:
    id: int
    created_at: datetime
    operator_wallet: str
    action: str
    reference: str
    account_id: int | None
    key_id: int | None
    params: dict[str, Any]
    reason: str
    result: dict[str, Any]
    replayed: bool = False

    @classmethod
    def of(cls, row: sa.Row[Any], replayed: bool = False) -> AuditEntry:
        return cls(
            row.id, as_utc(row.created_at), row.operator_wallet, row.action, row.reference, row.account_id,
            row.key_id, json.loads(row.params), row.reason, json.loads(row.result), replayed,
        )  # fmt: skip


class ReferenceReused(ValueError):
    """The reference was already used for another request (another action, target, parameter or operator)."""

    def __init__(self, earlier: AuditEntry) -> None:
        super().__init__(
            f"reference {earlier.reference!r} was already used for {earlier.action} by {earlier.operator_wallet} "
            f"at {earlier.created_at.isoformat()} with other parameters; use a new reference"
        )
        self.earlier = earlier


async def _recorded(db: AsyncEngine, reference: str) -> sa.Row[Any] | None:
    async with db.connect() as conn:
        return (await conn.execute(sa.select(ops_audit).where(ops_audit.c.reference == reference))).first()


async def earlier(db: AsyncEngine, reference: str) -> AuditEntry | None:
    """The action recorded under `reference`, if any."""
    row = await _recorded(db, reference)
    return AuditEntry.of(row, replayed=True) if row is not None else None


def _replay(request: Request, row: sa.Row[Any]) -> AuditEntry:
    entry = AuditEntry.of(row, replayed=True)
    if not request.same_as(row):
        raise ReferenceReused(entry)
    return entry


async def run_once(db: AsyncEngine, request: Request, perform: Callable[[], Awaitable[dict[str, Any]]]) -> AuditEntry:
    """Do `perform` once for `request.reference` and record it; a replay returns the first record."""
    earlier = await _recorded(db, request.reference)
    if earlier is not None:
        return _replay(request, earlier)
    result = await perform()
    values = {
        "operator_wallet": request.operator,
        "action": request.action.value,
        "reference": request.reference,
        "account_id": request.account_id,
        "key_id": request.key_id,
        "params": request.params_json(),
        "reason": request.reason,
        "result": json.dumps(result, sort_keys=True, default=str),
    }
    try:
        async with db.begin() as conn:
            row = (await conn.execute(sa.insert(ops_audit).values(**values).returning(ops_audit))).one()
    except IntegrityError:  # a concurrent twin recorded first
        again = await _recorded(db, request.reference)
        if again is None:
            raise
        return _replay(request, again)
    return AuditEntry.of(row)


async def audit_page(
    db: AsyncEngine,
    *,
    before: int | None = None,
    limit: int = 50,
    account_id: int | None = None,
    action: Action | None = None,
) -> list[AuditEntry]:
    """Audit rows, newest first: older than id `before`, of one account or action when given."""
    if not 1 <= limit <= MAX_PAGE:
        raise ValueError(f"a page holds 1 to {MAX_PAGE} rows")
    query = sa.select(ops_audit)
    if before is not None:
        query = query.where(ops_audit.c.id < before)
    if account_id is not None:
        query = query.where(ops_audit.c.account_id == account_id)
    if action is not None:
        query = query.where(ops_audit.c.action == action.value)
    async with db.connect() as conn:
        rows = (await conn.execute(query.order_by(ops_audit.c.id.desc()).limit(limit))).all()
    return [AuditEntry.of(row) for row in rows]
