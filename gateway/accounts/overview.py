"""Every account at once, read-only, for operators (`gateway accounts list`, `gateway revenue`): each account's
balance, held credit and last activity; and, over a window, what calls cost and earned and what came in.

"Charged" is what accounts paid (user price less uncollected, the same figure as their `llm_usage` debits);
"uncollected" is operator loss (a provider billed more than was held); the margin is charged less provider cost.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.db.schema import as_utc, billing_accounts, credit_ledger, llm_usage, users


@dataclass(frozen=True)
class AccountRow:
    account_id: int
    wallet: str
    balance_micros: int
    held_micros: int
    created_at: datetime
    last_activity_at: datetime | None  # the latest ledger entry (a grant, a payment, a settled call)


async def list_accounts(db: AsyncEngine, limit: int) -> list[AccountRow]:
    """Up to `limit` accounts, the most recently active first (never-active ones last, newest first)."""
    last = (
        sa.select(credit_ledger.c.account_id, sa.func.max(credit_ledger.c.created_at).label("at"))
        .group_by(credit_ledger.c.account_id)
        .subquery()
    )
    query = (
        sa.select(
            billing_accounts.c.id,
            users.c.wallet_address,
            billing_accounts.c.balance_micros,
            billing_accounts.c.held_micros,
            billing_accounts.c.created_at,
            last.c.at,
        )
        .join(users, users.c.id == billing_accounts.c.user_id)
        .outerjoin(last, last.c.account_id == billing_accounts.c.id)
        .order_by(last.c.at.desc().nulls_last(), billing_accounts.c.id.desc())
        .limit(limit)
    )
    async with db.connect() as conn:
        rows = (await conn.execute(query)).all()
    return [
        AccountRow(r.id, r.wallet_address, r.balance_micros, r.held_micros, as_utc(r.created_at), _utc(r.at))
        for r in rows
    ]


def _utc(at: datetime | str | None) -> datetime | None:
    if at is None:
        return None
    return as_utc(datetime.fromisoformat(at) if isinstance(at, str) else at)  # SQLite's max() is text


@dataclass(frozen=True)
class UsageTotals:
    model: str  # "" for the total over every model
    calls: int
    prompt_tokens: int
    completion_tokens: int
    provider_cost_micros: int
    charged_micros: int
    uncollected_micros: int

    @property
    def margin_micros(self) -> int:
        return self.charged_micros - self.provider_cost_micros


@dataclass(frozen=True)
class Revenue:
    since: datetime
    usage: UsageTotals
    models: list[UsageTotals]
    credits: list[tuple[str, int, int]]  # (ledger reason, entries, amount_micros) of every reason but llm_usage

    def as_doc(self) -> dict[str, Any]:
        def totals(t: UsageTotals) -> dict[str, Any]:
            return asdict(t) | {"margin_micros": t.margin_micros}

        return {
            "since": self.since.isoformat(),
            "usage": {k: v for k, v in totals(self.usage).items() if k != "model"},
            "models": [totals(m) for m in self.models],
            "credits": [{"reason": r, "entries": n, "amount_micros": a} for r, n, a in self.credits],
        }


async def revenue_since(db: AsyncEngine, since: datetime) -> Revenue:
    """Calls (per model and in total) and money in (per ledger reason) across all accounts since `since`."""
    u = llm_usage.c
    sums = (
        sa.func.count(),
        sa.func.coalesce(sa.func.sum(u.prompt_tokens), 0),
        sa.func.coalesce(sa.func.sum(u.completion_tokens), 0),
        sa.func.coalesce(sa.func.sum(u.provider_cost_micros), 0),
        sa.func.coalesce(sa.func.sum(u.user_price_micros - u.uncollected_micros), 0),
        sa.func.coalesce(sa.func.sum(u.uncollected_micros), 0),
    )
    in_window = u.created_at >= since
    credits = (
        sa.select(credit_ledger.c.reason, sa.func.count(), sa.func.sum(credit_ledger.c.amount_micros))
        .where(credit_ledger.c.created_at >= since, credit_ledger.c.reason != "llm_usage")
        .group_by(credit_ledger.c.reason)
        .order_by(credit_ledger.c.reason)
    )
    async with db.connect() as conn:
        total = (await conn.execute(sa.select(*sums).where(in_window))).one()
        per_model = (
            await conn.execute(sa.select(u.model, *sums).where(in_window).group_by(u.model).order_by(u.model))
        ).all()
        money_in = (await conn.execute(credits)).all()
    return Revenue(
        since,
        UsageTotals("", *(int(v) for v in total)),
        [UsageTotals(row[0], *(int(v) for v in row[1:])) for row in per_model],
        [(r, int(n), int(a)) for r, n, a in money_in],
    )
