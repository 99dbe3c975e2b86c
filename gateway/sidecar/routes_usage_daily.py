"""GET /api/v1/usage/daily: the session's spend per UTC day and model (the activity chart's data)."""

from __future__ import annotations

from datetime import date
from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from gateway.history_daily import MAX_DAYS, Spend, daily_usage
from gateway.money import micros_to_credits
from gateway.sidecar.deps import ServicesDep, SessionDep
from gateway.sidecar.errors import documented

router = APIRouter(tags=["credits"])


class SpendOut(BaseModel):
    calls: int
    prompt_tokens: int
    completion_tokens: int
    charged_micros: int = Field(description="What the calls cost the account (its ledger debits)")
    charged_credits: str = Field(description="The same in credits, exact")

    @classmethod
    def fields_of(cls, spend: Spend) -> dict[str, int | str]:
        return {**vars(spend), "charged_credits": micros_to_credits(spend.charged_micros)}


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


def _models(spend: dict[str, Spend]) -> list[ModelSpendOut]:
    return [ModelSpendOut(model=model, **SpendOut.fields_of(s)) for model, s in spend.items()]


@router.get("/usage/daily", response_model=DailyOut, responses=documented(401, 422))
async def usage_daily(
    svc: ServicesDep,
    session: SessionDep,
    days: Annotated[int, Query(ge=1, le=MAX_DAYS, description="How many UTC days, up to today")] = 30,
) -> DailyOut:
    """Calls, tokens and credits charged per UTC day and model, for the last `days` days."""
    usage = await daily_usage(svc.db, session.account_id, days)
    return DailyOut(
        first_day=usage.first_day,
        last_day=usage.last_day,
        days=[DayOut(day=d.day, models=_models(d.by_model), **SpendOut.fields_of(d.total)) for d in usage.days],
        models=_models(usage.by_model),
        total=SpendOut(**SpendOut.fields_of(usage.total)),
    )
