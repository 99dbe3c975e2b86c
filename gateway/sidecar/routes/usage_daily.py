"""GET /api/v1/usage/daily: the session's spend per UTC day and model (the activity chart's data)."""

from __future__ import annotations

from datetime import date
from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from gateway.accounts.history_daily import MAX_DAYS, as_document, daily_usage
from gateway.sidecar.deps import ServicesDep, SessionDep
from gateway.sidecar.errors import documented

router = APIRouter(tags=["credits"])


class SpendOut(BaseModel):
    calls: int
    prompt_tokens: int
    completion_tokens: int
    charged_micros: int = Field(description="What the calls cost the account (its ledger debits)")
    charged_credits: str = Field(description="The same in credits, exact")


class ModelSpendOut(SpendOut):
    model: str


class DayOut(SpendOut):
    day: date = Field(description="A UTC day")
    models: list[ModelSpendOut] = Field(description="The models called that day, dearest first")


class DailyOut(BaseModel):
    first_day: date
    last_day: date = Field(description="Today, UTC")
    days: list[DayOut] = Field(description="Every day of the window, oldest first; days without calls are zeros")
    models: list[ModelSpendOut] = Field(description="Totals per model over the window, dearest first")
    total: SpendOut


@router.get("/usage/daily", response_model=DailyOut, responses=documented(401, 422))
async def usage_daily(
    svc: ServicesDep,
    session: SessionDep,
    days: Annotated[int, Query(ge=1, le=MAX_DAYS, description="How many UTC days, up to today")] = 30,
) -> DailyOut:
    """Calls, tokens and credits charged per UTC day and model, for the last `days` days."""
    return DailyOut.model_validate(as_document(await daily_usage(svc.db, session.account_id, days)))
