"""The low-balance signal: how long an account's balance lasts at its last 7 days' spend rate, a threshold
the account sets, and one recorded event each time the balance crosses below it.

The sidecar reads the signal here (`runway`, `crossings`) and sets the threshold (`set_threshold`, which
clears the mark so the next sweep judges the account afresh); the crossings are recorded off the request path
by a job, gateway/jobs/low_balance.py, which the hold sweeper runs after each pass.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import ROUND_FLOOR, Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.core.money import micros_to_credits
from gateway.db.schema import as_utc, llm_usage, low_balance_events
from gateway.db.schema import billing_accounts as acc

WINDOW = timedelta(days=7)
MAX_THRESHOLD_MICROS = 10**15


@dataclass(frozen=True)
class Runway:
    spend_7d_micros: int
    balance_micros: int
    threshold_micros: int | None
    below_since: datetime | None
    now: datetime

    @property
    def days(self) -> Decimal | None:
        """Days the balance lasts at the 7-day rate (None: nothing spent in 7 days), rounded down to 0.1."""
        if self.spend_7d_micros <= 0:
            return None
        days = Decimal(max(self.balance_micros, 0)) * 7 / self.spend_7d_micros
        return days.quantize(Decimal("0.1"), rounding=ROUND_FLOOR)

    def as_doc(self) -> dict[str, Any]:
        days = self.days
        lasts_until = self.now + timedelta(days=float(days)) if days is not None and days < 36500 else None
        threshold = self.threshold_micros
        return {
            "spend_7d_micros": self.spend_7d_micros,
            "spend_7d_credits": micros_to_credits(self.spend_7d_micros),
            "runway_days": None if days is None else str(days),
            "runway_until": lasts_until.isoformat() if lasts_until else None,
            "low_balance_threshold_micros": threshold,
            "low_balance_threshold_credits": None if threshold is None else micros_to_credits(threshold),
            "low_balance": self.below_since is not None,
            "low_balance_since": self.below_since.isoformat() if self.below_since else None,
        }


async def runway(db: AsyncEngine, account_id: int, now: datetime | None = None) -> Runway:
    now = now or datetime.now(UTC)
    charged = llm_usage.c.user_price_micros - llm_usage.c.uncollected_micros
    async with db.connect() as conn:
        spent = (
            await conn.execute(
                sa.select(sa.func.coalesce(sa.func.sum(charged), 0)).where(
                    llm_usage.c.account_id == account_id, llm_usage.c.created_at >= now - WINDOW
                )
            )
        ).scalar_one()
        row = (
            await conn.execute(
                sa.select(acc.c.balance_micros, acc.c.low_balance_threshold_micros, acc.c.low_balance_since).where(
                    acc.c.id == account_id
                )
            )
        ).one()
    since = as_utc(row.low_balance_since) if row.low_balance_since else None
    return Runway(int(spent), row.balance_micros, row.low_balance_threshold_micros, since, now)


async def set_threshold(db: AsyncEngine, account_id: int, threshold_micros: int | None) -> None:
    """Set (None: remove) the account's low-balance threshold; the next sweep records a crossing if it is below."""
    if threshold_micros is not None and not 0 <= threshold_micros <= MAX_THRESHOLD_MICROS:
        raise ValueError("a low-balance threshold is between 0 and 1e12 credits")
    async with db.begin() as conn:
        await conn.execute(
            sa.update(acc)
            .where(acc.c.id == account_id)
            .values(low_balance_threshold_micros=threshold_micros, low_balance_since=None)
        )


async def crossings(db: AsyncEngine, account_id: int, limit: int = 50) -> list[dict[str, Any]]:
    e = low_balance_events
    async with db.connect() as conn:
        rows = (
            await conn.execute(sa.select(e).where(e.c.account_id == account_id).order_by(e.c.id.desc()).limit(limit))
        ).all()
    return [
        {"threshold_micros": r.threshold_micros, "balance_micros": r.balance_micros,
         "crossed_at": as_utc(r.crossed_at).isoformat()}
        for r in rows
    ]  # fmt: skip
