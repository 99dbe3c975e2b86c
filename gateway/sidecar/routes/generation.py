"""GET /api/v1/generation?id=: one of the session's account's calls, by the `x-gateway-request-id` its
response carried (any key of the account); another account's id answers 404 like an unknown one."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from gateway.accounts.calls import MAX_REQUEST_ID_CHARS, find_call
from gateway.sidecar.deps import ServicesDep, SessionDep
from gateway.sidecar.errors import ApiError, documented

router = APIRouter(tags=["usage"])


class GenerationOut(BaseModel):
    id: str = Field(description="The request id (x-gateway-request-id)")
    model: str
    key_id: int | None
    status: str = Field(description="settled | pending (in flight) | voided (failed, free) | expired")
    streamed: bool | None
    tokens_prompt: int | None
    tokens_completion: int | None
    tokens_cached: int | None = Field(description="Not recorded per call (null); the price counts them")
    tokens_reasoning: int | None = Field(description="Not recorded per call (null); the price counts them")
    user_price_micros: int | None = Field(description="What the call cost at user prices")
    charged_micros: int = Field(description="What the account was debited for it")
    charged_credits: str
    held_micros: int | None = Field(description="What was reserved for it while it ran")
    created_at: datetime


class GenerationAnswer(BaseModel):
    data: GenerationOut


@router.get("/generation", response_model=GenerationAnswer, responses=documented(401, 404, 422))
async def get_generation(
    request_id: Annotated[
        str, Query(alias="id", min_length=1, max_length=MAX_REQUEST_ID_CHARS, pattern=r"^[A-Za-z0-9_.:-]+$")
    ],
    svc: ServicesDep,
    session: SessionDep,
) -> GenerationAnswer:
    """One call of the account: model, tokens, price charged, streamed, status and time."""
    call = await find_call(svc.db, request_id, session.account_id)
    if call is None:
        raise ApiError(404, "generation_not_found", "no call of this account has that id")
    return GenerationAnswer(data=GenerationOut(**call.as_doc()))
