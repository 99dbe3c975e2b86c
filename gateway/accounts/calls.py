"""Looking one call up after the fact, by the request id its response carried (`x-gateway-request-id`): what
it was, what it cost the account and where it stands. Read-only, and only within the asking account (and,
for a virtual key, only its own calls): any other id answers None, exactly as an unknown one does.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.core.money import micros_to_credits
from gateway.db.schema import as_utc, credit_holds, llm_usage

MAX_REQUEST_ID_CHARS = 100  # the width of the request_id columns


@dataclass(frozen=True)
class CallRecord:
    request_id: str
    key_id: int | None
    model: str
    status: str  # settled | pending (in flight) | voided (failed: nothing charged) | expired (settle lost)
    streamed: bool | None
    prompt_tokens: int | None
    completion_tokens: int | None
    user_price_micros: int | None  # what the call cost at user prices
    charged_micros: int  # what the account was debited (0 until settled)
    held_micros: int | None
    created_at: datetime

    def as_doc(self) -> dict[str, Any]:
        return {
            "id": self.request_id,
            "model": self.model,
            "key_id": self.key_id,
            "status": self.status,
            "streamed": self.streamed,
            "tokens_prompt": self.prompt_tokens,
            "tokens_completion": self.completion_tokens,
            "tokens_cached": None,  # not recorded per call yet: the price already counts them
            "tokens_reasoning": None,
            "user_price_micros": self.user_price_micros,
            "charged_micros": self.charged_micros,
            "charged_credits": micros_to_credits(self.charged_micros),
            "held_micros": self.held_micros,
            "created_at": self.created_at.isoformat(),
        }


async def find_call(db: AsyncEngine, request_id: str, account_id: int, key_id: int | None = None) -> CallRecord | None:
    """The account's call `request_id` (with `key_id`: only if that key made it), or None."""
    if not request_id or len(request_id) > MAX_REQUEST_ID_CHARS:
        return None
    u, h = llm_usage, credit_holds
    async with db.connect() as conn:
        usage = (
            await conn.execute(sa.select(u).where(u.c.request_id == request_id, u.c.account_id == account_id))
        ).first()
        hold = (
            await conn.execute(sa.select(h).where(h.c.request_id == request_id, h.c.account_id == account_id))
        ).first()
    if usage is not None:
        made_by, charged = usage.key_id, usage.user_price_micros - usage.uncollected_micros
        record = CallRecord(
            request_id, made_by, usage.model, "settled", usage.streamed, usage.prompt_tokens,
            usage.completion_tokens, usage.user_price_micros, charged, hold.amount_micros if hold else None,
            as_utc(usage.created_at),
        )  # fmt: skip
    elif hold is not None:
        made_by = hold.key_id
        record = CallRecord(
            request_id, made_by, hold.model, hold.status, None, None, None, None, 0, hold.amount_micros,
            as_utc(hold.created_at),
        )  # fmt: skip
    else:
        return None
    return record if key_id is None or made_by == key_id else None
