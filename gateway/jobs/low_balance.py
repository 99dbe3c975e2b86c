"""Recording the low-balance crossings: the job half of the low-balance signal (gateway/accounts/low_balance.py
owns the threshold and what the sidecar reads), run off the request path by the hold sweeper after each pass
(gateway/jobs/sweeper.py).

Crossings are found by conditional UPDATEs: an account is marked below (`low_balance_since`) and its event
written in one transaction, only if it was not marked already, so each crossing is recorded once however many
sweepers run; the mark is cleared when the balance is back at or above the threshold (or the threshold is
removed), arming the next crossing.
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.db.schema import billing_accounts as acc
from gateway.db.schema import low_balance_events


async def record_crossings(db: AsyncEngine, now: datetime | None = None) -> list[int]:
    """Record one event for each account whose balance is now below its threshold and was not; re-arm those
    back above it. The ids of the accounts that crossed."""
    now = now or datetime.now(UTC)
    threshold = acc.c.low_balance_threshold_micros
    async with db.begin() as conn:
        await conn.execute(
            sa.update(acc)
            .where(acc.c.low_balance_since.is_not(None))
            .where(sa.or_(threshold.is_(None), acc.c.balance_micros >= threshold))
            .values(low_balance_since=None)
        )
        crossed = (
            await conn.execute(
                sa.update(acc)
                .where(threshold.is_not(None), acc.c.low_balance_since.is_(None), acc.c.balance_micros < threshold)
                .values(low_balance_since=now)
                .returning(acc.c.id, acc.c.balance_micros, threshold)
            )
        ).all()
        if crossed:
            await conn.execute(
                sa.insert(low_balance_events),
                [
                    {"account_id": r.id, "threshold_micros": r.low_balance_threshold_micros,
                     "balance_micros": r.balance_micros, "crossed_at": now}
                    for r in crossed
                ],
            )  # fmt: skip
    return [r.id for r in crossed]
