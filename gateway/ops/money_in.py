"""Money in, for operators: on-chain top-ups (`payments`) and x402 authorizations, counted and summed by
status, and the latest of one status listed with amount, payer, transaction and age.

Top-up statuses are the watcher's (gateway/db/payments_schema.py): pending (awaiting confirmations),
unclaimed (confirmed, the sender has no account yet), credited, rejected, reorged. x402 statuses are
claimed, submitted (on chain, awaiting its receipt), settled, failed (gateway/db/x402_schema.py).
Amounts are token base units, which for USDC are USD micros.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from gateway.db.payments_schema import STATUSES as TOPUP_STATUSES
from gateway.db.payments_schema import payments
from gateway.db.schema import as_utc
from gateway.db.x402_schema import STATUSES as X402_STATUSES
from gateway.db.x402_schema import x402_authorizations as x402

MAX_LISTED = 200


@dataclass(frozen=True)
class Row:
    id: int
    status: str
    amount_micros: int
    payer: str
    tx_hash: str | None
    account_id: int | None
    reason: str | None
    created_at: datetime
    updated_at: datetime

    def as_doc(self, now: datetime, explorer_tx_url: str | None) -> dict[str, Any]:
        link = explorer_tx_url.replace("{tx}", self.tx_hash) if explorer_tx_url and self.tx_hash else None
        return {**vars(self), "age_seconds": int((now - self.created_at).total_seconds()), "tx_url": link}


async def _summary(conn: AsyncConnection, table: sa.Table, statuses: tuple[str, ...]) -> dict[str, dict[str, int]]:
    """Count and amount per status. Amounts are uint256 (exact text on SQLite), so they are summed here."""
    amount = table.c.raw_amount if table is payments else table.c.value
    out = {str(s): {"count": 0, "amount_micros": 0} for s in statuses}
    for status, value in (await conn.execute(sa.select(table.c.status, amount))).all():
        out[status]["count"] += 1
        out[status]["amount_micros"] += int(value)
    return out


def _topup(row: sa.Row[Any]) -> Row:
    return Row(
        row.id, row.status, int(row.raw_amount), row.from_address, row.tx_hash, row.account_id, row.reason,
        as_utc(row.created_at), as_utc(row.updated_at),
    )  # fmt: skip


def _authorization(row: sa.Row[Any]) -> Row:
    return Row(
        row.id, row.status, int(row.value), row.payer, row.tx_hash, None, row.reason,
        as_utc(row.created_at), as_utc(row.updated_at),
    )  # fmt: skip


async def money_in(
    db: AsyncEngine, kind: str, status: str | None, limit: int, explorer_tx_url: str | None
) -> dict[str, Any]:
    """`kind` "topups" or "x402": counts and amounts by status, and the newest `limit` rows (of `status`)."""
    table, statuses, make = (
        (payments, tuple(TOPUP_STATUSES), _topup) if kind == "topups" else (x402, tuple(X402_STATUSES), _authorization)
    )
    if status is not None and status not in statuses:
        raise ValueError(f"status is one of {', '.join(statuses)}")
    if not 1 <= limit <= MAX_LISTED:
        raise ValueError(f"limit is from 1 to {MAX_LISTED}")
    query = sa.select(table).order_by(table.c.id.desc()).limit(limit)
    if status is not None:
        query = query.where(table.c.status == status)
    async with db.connect() as conn:
        summary = await _summary(conn, table, statuses)
        rows = (await conn.execute(query)).all()
    now = datetime.now(UTC)
    return {"by_status": summary, "data": [make(row).as_doc(now, explorer_tx_url) for row in rows]}
