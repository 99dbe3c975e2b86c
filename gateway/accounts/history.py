"""An account's history, read-only: its ledger entries and its LLM usage, newest first, one page at a time.

Pages are keyset-paginated on the row id: the cursor is the last id of the previous page, so a page stays
correct while new rows are appended. Date filters are whole UTC days: `since` from its first instant,
`until` through its last.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Generic, Protocol, TypeVar

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.db.schema import as_utc, credit_ledger, llm_usage

MAX_PAGE_SIZE = 100
T = TypeVar("T")


class _Identified(Protocol):
    @property
    def id(self) -> int: ...


R = TypeVar("R", bound=_Identified)


@dataclass(frozen=True)
class Page(Generic[T]):
    items: list[T]
    next_cursor: int | None  # pass back as `cursor` for the next (older) page; None on the last page


@dataclass(frozen=True)
class LedgerRow:
    id: int
    amount_micros: int
    balance_after_micros: int
    reason: str
    reference: str
    created_at: datetime


@dataclass(frozen=True)
class UsageRow:
    id: int
    request_id: str
    key_id: int | None
    model: str
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    user_price_micros: int
    charged_micros: int  # the user price less what went uncollected (the provider billed above the hold)
    streamed: bool
    created_at: datetime


@dataclass(frozen=True)
class UsageCostRow(UsageRow):
    """A usage row with what the call cost *us*: for operators (the CLI), never shown to account holders."""

    provider_cost_micros: int = 0


@dataclass(frozen=True)
class Window:
    """Which rows of an account to read: older than `cursor`, created within [since, until] (whole days)."""

    cursor: int | None = None
    since: date | None = None
    until: date | None = None
    limit: int = 50

    def where(self, table: sa.Table, account_id: int) -> list[sa.ColumnElement[bool]]:
        if not 1 <= self.limit <= MAX_PAGE_SIZE:
            raise ValueError(f"a page holds 1 to {MAX_PAGE_SIZE} rows")
        clauses = [table.c.account_id == account_id]
        if self.cursor is not None:
            clauses.append(table.c.id < self.cursor)
        if self.since is not None:
            clauses.append(table.c.created_at >= _start_of(self.since))
        if self.until is not None and self.until < date.max:
            clauses.append(table.c.created_at < _start_of(self.until + timedelta(days=1)))
        return clauses


def _start_of(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=UTC)


async def _page(db: AsyncEngine, query: sa.Select[Any], table: sa.Table, window: Window, make: type[R]) -> Page[R]:
    async with db.connect() as conn:
        rows = (await conn.execute(query.order_by(table.c.id.desc()).limit(window.limit + 1))).all()
    items = [make(**{**row._asdict(), "created_at": as_utc(row.created_at)}) for row in rows[: window.limit]]
    return Page(items, items[-1].id if len(rows) > window.limit else None)


async def ledger_page(db: AsyncEngine, account_id: int, window: Window, reason: str | None = None) -> Page[LedgerRow]:
    t = credit_ledger
    where = window.where(t, account_id)
    if reason is not None:
        where.append(t.c.reason == reason)
    columns = [t.c.id, t.c.amount_micros, t.c.balance_after_micros, t.c.reason, t.c.reference, t.c.created_at]
    return await _page(db, sa.select(*columns).where(*where), t, window, LedgerRow)


async def usage_page(
    db: AsyncEngine, account_id: int, window: Window, model: str | None = None, *, with_provider_cost: bool = False
) -> Page[UsageRow]:
    t = llm_usage
    where = window.where(t, account_id)
    if model is not None:
        where.append(t.c.model == model)
    columns = [
        t.c.id,
        t.c.request_id,
        t.c.key_id,
        t.c.model,
        t.c.prompt_tokens,
        t.c.completion_tokens,
        t.c.total_tokens,
        t.c.user_price_micros,
        (t.c.user_price_micros - t.c.uncollected_micros).label("charged_micros"),
        t.c.streamed,
        t.c.created_at,
    ]
    if with_provider_cost:
        columns.append(t.c.provider_cost_micros)
    return await _page(
        db, sa.select(*columns).where(*where), t, window, UsageCostRow if with_provider_cost else UsageRow
    )
