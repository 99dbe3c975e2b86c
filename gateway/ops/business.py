"""The business per UTC day and model, for a range of days: calls, tokens, revenue (the user price), what
was charged (revenue less uncollected: the accounts' `llm_usage` ledger debits), provider cost, uncollected
(operator loss) and margin (charged less provider cost); and the calls' holds by outcome.

Read-only SQL over `llm_usage` and `credit_holds`. What the database knows of a call's outcome is its hold:
`posted` (settled), `voided` (released: the call failed, nothing charged), `expired` (its settle was lost),
`pending` (in flight). Calls refused before a hold (401, 402, 403, other 4xx/5xx) leave no row: they are
counted only in Prometheus (`gateway_proxy_calls_total{outcome}`).

The document has the shape of the user's `GET /usage/daily` (days with `charged_micros` and `models`), so the
page draws it with the same chart module.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.accounts.history_daily import MAX_DAYS, utc_day
from gateway.db.schema import credit_holds, llm_usage
from gateway.ledger.types import HoldStatus


@dataclass(frozen=True)
class Figures:
    calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    revenue_micros: int = 0  # the user price of the calls
    provider_cost_micros: int = 0
    uncollected_micros: int = 0

    def __add__(self, other: Figures) -> Figures:
        return Figures(*(getattr(self, f.name) + getattr(other, f.name) for f in fields(self)))

    @property
    def charged_micros(self) -> int:
        return self.revenue_micros - self.uncollected_micros

    @property
    def margin_micros(self) -> int:
        return self.charged_micros - self.provider_cost_micros

    def as_doc(self) -> dict[str, int]:
        return {**vars(self), "charged_micros": self.charged_micros, "margin_micros": self.margin_micros}


def _day_bounds(first: date, last: date) -> tuple[datetime, datetime]:
    if last < first:
        raise ValueError("the range ends before it starts")
    if (last - first).days + 1 > MAX_DAYS:
        raise ValueError(f"a range is at most {MAX_DAYS} days")
    since = datetime.combine(first, time.min, tzinfo=UTC)
    return since, datetime.combine(last + timedelta(days=1), time.min, tzinfo=UTC)


def _usage_query(since: datetime, until: datetime) -> sa.Select[Any]:
    t = llm_usage
    day = utc_day(t.c.created_at).label("day")
    return (
        sa.select(
            day, t.c.model, sa.func.count().label("calls"),
            sa.func.sum(t.c.prompt_tokens).label("prompt_tokens"),
            sa.func.sum(t.c.completion_tokens).label("completion_tokens"),
            sa.func.sum(t.c.user_price_micros).label("revenue_micros"),
            sa.func.sum(t.c.provider_cost_micros).label("provider_cost_micros"),
            sa.func.sum(t.c.uncollected_micros).label("uncollected_micros"),
        )
        .where(t.c.created_at >= since, t.c.created_at < until)
        .group_by(day, t.c.model)
    )  # fmt: skip


def _holds_query(since: datetime, until: datetime) -> sa.Select[Any]:
    t = credit_holds
    day = utc_day(t.c.created_at).label("day")
    return (
        sa.select(day, t.c.status, sa.func.count().label("n"))
        .where(t.c.created_at >= since, t.c.created_at < until)
        .group_by(day, t.c.status)
    )


def _by_revenue(cells: dict[str, Figures]) -> list[dict[str, Any]]:
    ordered = sorted(cells.items(), key=lambda item: (-item[1].charged_micros, item[0]))
    return [{"model": model, **f.as_doc()} for model, f in ordered]


async def business(db: AsyncEngine, first: date, last: date) -> dict[str, Any]:
    """Every UTC day from `first` to `last` (inclusive), oldest first; integer micros throughout."""
    since, until = _day_bounds(first, last)
    async with db.connect() as conn:
        usage_rows = (await conn.execute(_usage_query(since, until))).all()
        hold_rows = (await conn.execute(_holds_query(since, until))).all()
    cells: dict[str, dict[str, Figures]] = {}
    for row in usage_rows:
        figures = Figures(*(int(getattr(row, f.name)) for f in fields(Figures)))
        cells.setdefault(row.day, {})[row.model] = figures
    outcomes: dict[str, dict[str, int]] = {}
    for row in hold_rows:
        outcomes.setdefault(row.day, dict.fromkeys(HoldStatus, 0))[row.status] = int(row.n)
    days: list[dict[str, Any]] = []
    by_model: dict[str, Figures] = {}
    for offset in range((last - first).days + 1):
        day = (first + timedelta(days=offset)).isoformat()
        models = cells.get(day, {})
        for model, figures in models.items():
            by_model[model] = by_model.get(model, Figures()) + figures
        total = sum(models.values(), Figures())
        days.append({"day": day, **total.as_doc(), "holds": outcomes.get(day, dict.fromkeys(HoldStatus, 0)),
                     "models": _by_revenue(models)})  # fmt: skip
    holds_total = {status: sum(outcomes.get(d, {}).get(status, 0) for d in outcomes) for status in HoldStatus}
    return {
        "first_day": first.isoformat(),
        "last_day": last.isoformat(),
        "days": days,
        "models": _by_revenue(by_model),
        "total": {**sum(by_model.values(), Figures()).as_doc(), "holds": holds_total},
    }
