"""Routes for the account's money: /api/v1/credits/summary, /credits/ledger and /usage (paginated).

Amounts are integer micros plus the same amount in credits as an exact decimal string; never floats.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel, BeforeValidator, Field

from gateway.accounts.history import MAX_PAGE_SIZE, LedgerRow, UsageRow, Window, ledger_page, usage_page
from gateway.accounts.low_balance import runway
from gateway.accounts.wallets import frozen_since
from gateway.core.money import micros_to_credits
from gateway.ledger import Reason, get_balance
from gateway.sidecar.deps import ServicesDep, SessionDep
from gateway.sidecar.errors import documented
from gateway.sidecar.routes.low_balance import RunwayOut
from gateway.sidecar.schemas import CURSOR_PATTERN, PlainText, iso_day

router = APIRouter(tags=["credits"])

RECENT_ENTRIES = 10
Credits = Annotated[str, Field(description="The same amount in credits (1 credit = 1,000 micros), exact")]


class LedgerEntryOut(BaseModel):
    id: int
    amount_micros: int = Field(description="Signed: + credit, - debit")
    amount_credits: Credits
    balance_after_micros: int
    balance_after_credits: Credits
    reason: str
    reference: str
    created_at: datetime

    @classmethod
    def of(cls, row: LedgerRow) -> LedgerEntryOut:
        return cls(
            **vars(row),
            amount_credits=micros_to_credits(row.amount_micros),
            balance_after_credits=micros_to_credits(row.balance_after_micros),
        )


class SummaryOut(BaseModel):
    frozen_at: datetime | None = Field(
        description="Since when an operator has frozen the account (its calls are refused)"
    )
    balance_micros: int
    held_micros: int = Field(description="Reserved by calls in flight")
    available_micros: int = Field(description="balance - held: what new calls can spend")
    balance_credits: Credits
    held_credits: Credits
    available_credits: Credits
    recent: list[LedgerEntryOut] = Field(description=f"The last {RECENT_ENTRIES} ledger entries, newest first")
    runway: RunwayOut = Field(description="How long the balance lasts at the last 7 days' rate; the threshold")


class LedgerPage(BaseModel):
    data: list[LedgerEntryOut]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next (older) page; null on the last page")


class UsageOut(BaseModel):
    id: int
    request_id: str
    key_id: int | None
    model: str
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    price_micros: int = Field(description="What the call cost the account")
    price_credits: Credits
    streamed: bool
    created_at: datetime

    @classmethod
    def of(cls, row: UsageRow) -> UsageOut:
        fields = {k: v for k, v in vars(row).items() if k not in ("user_price_micros", "charged_micros")}
        return cls(**fields, price_micros=row.charged_micros, price_credits=micros_to_credits(row.charged_micros))


class UsagePage(BaseModel):
    data: list[UsageOut]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next (older) page; null on the last page")


Cursor = Annotated[str | None, Query(pattern=CURSOR_PATTERN, description="`next_cursor` of the previous page")]
Limit = Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE, description="Rows per page")]


Since = Annotated[date | None, BeforeValidator(iso_day), Query(description="First UTC day to include (YYYY-MM-DD)")]
Until = Annotated[date | None, BeforeValidator(iso_day), Query(description="Last UTC day to include (YYYY-MM-DD)")]


def _window(cursor: str | None, since: date | None, until: date | None, limit: int) -> Window:
    return Window(int(cursor) if cursor is not None else None, since, until, limit)


def _cursor(next_id: int | None) -> str | None:
    return str(next_id) if next_id is not None else None


@router.get("/credits/summary", response_model=SummaryOut, responses=documented(401))
async def summary(svc: ServicesDep, session: SessionDep) -> SummaryOut:
    """Balance, held and available credit, and the latest ledger entries."""
    balance = await get_balance(svc.db, session.account_id)
    recent = await ledger_page(svc.db, session.account_id, Window(limit=RECENT_ENTRIES))
    return SummaryOut(
        frozen_at=await frozen_since(svc.db, session.account_id),
        balance_micros=balance.balance_micros,
        held_micros=balance.held_micros,
        available_micros=balance.available_micros,
        balance_credits=micros_to_credits(balance.balance_micros),
        held_credits=micros_to_credits(balance.held_micros),
        available_credits=micros_to_credits(balance.available_micros),
        recent=[LedgerEntryOut.of(row) for row in recent.items],
        runway=RunwayOut(**(await runway(svc.db, session.account_id)).as_doc()),
    )


@router.get("/credits/ledger", response_model=LedgerPage, responses=documented(401, 422))
async def ledger(
    svc: ServicesDep,
    session: SessionDep,
    cursor: Cursor = None,
    limit: Limit = 50,
    reason: Annotated[Reason | None, Query(description="Only entries with this reason")] = None,
    since: Since = None,
    until: Until = None,
) -> LedgerPage:
    """The account's ledger entries, newest first."""
    page = await ledger_page(svc.db, session.account_id, _window(cursor, since, until, limit), reason)
    return LedgerPage(data=[LedgerEntryOut.of(row) for row in page.items], next_cursor=_cursor(page.next_cursor))


@router.get("/usage", response_model=UsagePage, responses=documented(401, 422))
async def usage(
    svc: ServicesDep,
    session: SessionDep,
    cursor: Cursor = None,
    limit: Limit = 50,
    model: Annotated[PlainText | None, Query(max_length=200, description="Only calls to this model")] = None,
    since: Since = None,
    until: Until = None,
) -> UsagePage:
    """The account's billed LLM calls, newest first."""
    page = await usage_page(svc.db, session.account_id, _window(cursor, since, until, limit), model)
    return UsagePage(data=[UsageOut.of(row) for row in page.items], next_cursor=_cursor(page.next_cursor))
