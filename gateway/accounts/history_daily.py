"""An account's spend per UTC day and model, for the activity chart and `gateway usage --daily` (read-only).

One grouped query (by UTC day and model) over `llm_usage`, served by the (account_id, created_at) index;
days without calls are filled in as zeros here, so a window of N days always has N days. "Charged" is
what the account paid: the user price less what went uncollected, the same figure as its ledger debits.
`as_document` is the JSON shape both the API and `gateway usage --daily --json` give.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.expression import ColumnElement, FunctionElement

from gateway.core.money import micros_to_credits
from gateway.db.schema import llm_usage

MAX_DAYS = 366


class utc_day(FunctionElement[str]):
    """The UTC calendar day of a timestamp column, as an ISO 'YYYY-MM-DD' string on every database."""

    type = sa.String()
    inherit_cache = True


@compiles(utc_day, "postgresql")
def _utc_day_postgresql(element: utc_day, compiler: SQLCompiler, **kw: Any) -> str:
    return f"to_char({compiler.process(element.clauses, **kw)} AT TIME ZONE 'UTC', 'YYYY-MM-DD')"


@compiles(utc_day, "sqlite")
def _utc_day_sqlite(element: utc_day, compiler: SQLCompiler, **kw: Any) -> str:
    return f"date({compiler.process(element.clauses, **kw)})"  # stored as UTC text


@dataclass(frozen=True)
class Spend:
    calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    charged_micros: int = 0

    def __add__(self, other: Spend) -> Spend:
        return Spend(
            self.calls + other.calls, self.prompt_tokens + other.prompt_tokens,
            self.completion_tokens + other.completion_tokens, self.charged_micros + other.charged_micros,
        )  # fmt: skip


@dataclass(frozen=True)
class Day:
    day: date
    total: Spend
    by_model: dict[str, Spend]  # only the models called that day, dearest first


@dataclass(frozen=True)
class DailyUsage:
    first_day: date
    last_day: date
    days: list[Day]  # every day of the window, oldest first
    by_model: dict[str, Spend]  # over the window, dearest first
    total: Spend


def utc_today() -> date:
    return datetime.now(UTC).date()


def _dearest_first(spend: dict[str, Spend]) -> dict[str, Spend]:
    return dict(sorted(spend.items(), key=lambda item: (-item[1].charged_micros, item[0])))


def _query(account_id: int, since: datetime, until: datetime) -> sa.Select[Any]:
    t = llm_usage
    day: ColumnElement[str] = utc_day(t.c.created_at).label("day")
    return (
        sa.select(
            day, t.c.model, sa.func.count().label("calls"),
            sa.func.sum(t.c.prompt_tokens).label("prompt_tokens"),
            sa.func.sum(t.c.completion_tokens).label("completion_tokens"),
            sa.func.sum(t.c.user_price_micros - t.c.uncollected_micros).label("charged_micros"),
        )
        .where(t.c.account_id == account_id, t.c.created_at >= since, t.c.created_at < until)
        .group_by(day, t.c.model)
    )  # fmt: skip


async def daily_usage(db: AsyncEngine, account_id: int, days: int = 30, today: date | None = None) -> DailyUsage:
    """The last `days` UTC days up to and including `today` (default: today, UTC)."""
    if not 1 <= days <= MAX_DAYS:
        raise ValueError(f"days must be from 1 to {MAX_DAYS}")
    last = today or utc_today()
    first = last - timedelta(days=days - 1)
    since = datetime.combine(first, time.min, tzinfo=UTC)
    async with db.connect() as conn:
        rows = (await conn.execute(_query(account_id, since, since + timedelta(days=days)))).all()
    cells: dict[date, dict[str, Spend]] = {}
    for row in rows:
        spend = Spend(int(row.calls), int(row.prompt_tokens), int(row.completion_tokens), int(row.charged_micros))
        cells.setdefault(date.fromisoformat(row.day), {})[row.model] = spend
    by_model: dict[str, Spend] = {}
    out: list[Day] = []
    for offset in range(days):
        day = first + timedelta(days=offset)
        models = _dearest_first(cells.get(day, {}))
        for model, spend in models.items():
            by_model[model] = by_model.get(model, Spend()) + spend
        out.append(Day(day, sum(models.values(), Spend()), models))
    total = sum(by_model.values(), Spend())
    return DailyUsage(first, last, out, _dearest_first(by_model), total)


def _spend_document(spend: Spend) -> dict[str, int | str]:
    return {**vars(spend), "charged_credits": micros_to_credits(spend.charged_micros)}


def _models_document(spend: dict[str, Spend]) -> list[dict[str, int | str]]:
    return [{"model": model, **_spend_document(s)} for model, s in spend.items()]


def as_document(usage: DailyUsage) -> dict[str, object]:
    """Plain JSON types: micros as integers, credits as exact decimal strings, days as ISO dates."""
    return {
        "first_day": usage.first_day.isoformat(),
        "last_day": usage.last_day.isoformat(),
        "days": [
            {"day": d.day.isoformat(), **_spend_document(d.total), "models": _models_document(d.by_model)}
            for d in usage.days
        ],
        "models": _models_document(usage.by_model),
        "total": _spend_document(usage.total),
    }
