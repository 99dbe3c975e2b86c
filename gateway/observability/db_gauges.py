"""Metrics read from the database when `/metrics` is scraped (never on a call's path): open holds and the
age of the oldest, holds expired by a sweeper, and payments by status. The database is the truth for
these, whichever process (proxy replica, sweeper, watcher, sidecar) changed them, so every `/metrics`
reports the same values: aggregate them across replicas with `max`, not `sum`.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime

import sqlalchemy as sa
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.db.payments_schema import STATUSES, payments
from gateway.db.schema import HoldStatus, credit_holds
from gateway.failures import is_transient

log = logging.getLogger("gateway.observability")
SCRAPE_TIMEOUT_SECONDS = 5.0


async def database_families(db: AsyncEngine) -> list[Metric]:
    """The database gauges, plus `gateway_metrics_database_up` (0 when the database could not be read)."""
    up = GaugeMetricFamily("gateway_metrics_database_up", "1 if the database gauges below could be read.")
    try:
        families = await asyncio.wait_for(_read(db), SCRAPE_TIMEOUT_SECONDS)
    except Exception as exc:
        if not is_transient(exc):
            raise
        log.warning("metrics: database unreachable (%s)", type(exc).__name__)
        up.add_metric([], 0)
        return [up]
    up.add_metric([], 1)
    return [up, *families]


async def _read(db: AsyncEngine) -> list[Metric]:
    holds = sa.select(
        sa.func.count().filter(credit_holds.c.status == HoldStatus.PENDING),
        sa.func.min(credit_holds.c.created_at).filter(credit_holds.c.status == HoldStatus.PENDING),
        sa.func.count().filter(credit_holds.c.status == HoldStatus.EXPIRED),
    ).where(credit_holds.c.status.in_((HoldStatus.PENDING, HoldStatus.EXPIRED)))
    by_status = sa.select(payments.c.status, sa.func.count()).group_by(payments.c.status)
    async with db.connect() as conn:
        open_count, oldest, expired = (await conn.execute(holds)).one()
        payment_counts: dict[str, int] = dict((await conn.execute(by_status)).tuples().all())
    open_holds = GaugeMetricFamily("gateway_holds_open", "Holds pending now (calls in flight, or settles lost).")
    open_holds.add_metric([], open_count)
    age = GaugeMetricFamily("gateway_holds_oldest_open_age_seconds", "Age of the oldest pending hold (0: none).")
    age.add_metric([], _age_seconds(oldest))
    expired_holds = CounterMetricFamily("gateway_holds_expired", "Holds a sweeper expired (each a lost settle).")
    expired_holds.add_metric([], expired)
    paid = GaugeMetricFamily("gateway_payments", "USDC transfers recorded, by status.", labels=["status"])
    for status in STATUSES:
        paid.add_metric([status.value], payment_counts.get(status.value, 0))
    return [open_holds, age, expired_holds, paid]


def _age_seconds(created: datetime | None) -> float:
    if created is None:
        return 0.0
    if created.tzinfo is None:  # SQLite returns naive UTC timestamps
        created = created.replace(tzinfo=UTC)
    return max(0.0, (datetime.now(UTC) - created).total_seconds())
