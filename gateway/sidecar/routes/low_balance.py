"""The low-balance signal of the session's account: PUT /api/v1/credits/low-balance sets (null: removes) the
threshold; GET /api/v1/credits/low-balance answers the runway estimate and the threshold state, with the
recorded crossings (one per crossing, newest first)."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from gateway.accounts.low_balance import crossings, runway, set_threshold
from gateway.sidecar.deps import ServicesDep, SessionDep
from gateway.sidecar.errors import documented
from gateway.sidecar.schemas import LimitCredits, limit_micros

router = APIRouter(prefix="/credits/low-balance", tags=["credits"])


class RunwayOut(BaseModel):
    spend_7d_micros: int = Field(description="What the account was charged in the last 7 days")
    spend_7d_credits: str
    runway_days: str | None = Field(description="Days the balance lasts at that rate (null: nothing spent)")
    runway_until: datetime | None
    low_balance_threshold_micros: int | None
    low_balance_threshold_credits: str | None
    low_balance: bool = Field(description="The balance is below the threshold now")
    low_balance_since: datetime | None


class Crossing(BaseModel):
    threshold_micros: int
    balance_micros: int
    crossed_at: datetime


class LowBalanceOut(RunwayOut):
    crossings: list[Crossing] = Field(description="Each crossing below the threshold, newest first (50 at most)")


class ThresholdIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    threshold_credits: LimitCredits | None = Field(description="Signal when the balance falls below this (null: off)")


async def _answer(svc: ServicesDep, account_id: int) -> LowBalanceOut:
    doc = (await runway(svc.db, account_id)).as_doc()
    return LowBalanceOut(**doc, crossings=[Crossing(**c) for c in await crossings(svc.db, account_id)])


@router.get("", response_model=LowBalanceOut, responses=documented(401))
async def get_low_balance(svc: ServicesDep, session: SessionDep) -> LowBalanceOut:
    """How long the balance lasts at the last 7 days' rate, the threshold, and its crossings."""
    return await _answer(svc, session.account_id)


@router.put("", response_model=LowBalanceOut, responses=documented(400, 401, 403, 422))
async def put_low_balance(body: ThresholdIn, svc: ServicesDep, session: SessionDep) -> LowBalanceOut:
    """Set or remove the low-balance threshold; a crossing is recorded by the gateway's next sweep (30 s)."""
    await set_threshold(svc.db, session.account_id, limit_micros(body.threshold_credits))
    return await _answer(svc, session.account_id)
