"""What the proxy answers a virtual key about itself, in the guard, without LiteLLM: `GET /v1/key` (its
label, credit limit and use this period, and its account's available credits: OpenRouter's /api/v1/key
shape) and `GET /api/v1/generation?id=` (one of the key's own calls, by its `x-gateway-request-id`).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs

from gateway import ledger
from gateway.accounts.calls import find_call
from gateway.accounts.keys import KeyOwner, get_key
from gateway.core.money import MICROS_PER_CREDIT, micros_to_credits
from gateway.proxy.errors import GatewayError
from gateway.proxy.runtime import runtime


def _credits(micros: int | None) -> float | None:
    """A credit amount as a JSON number (OpenRouter's shape; exact to the micro, at most 3 decimals)."""
    return None if micros is None else micros / MICROS_PER_CREDIT


async def key_document(owner: KeyOwner) -> dict[str, Any]:
    db = runtime().db
    info = await get_key(db, owner.key_id, datetime.now(UTC))
    if info is None:  # revoked and gone between the key check and now: as if unknown
        raise GatewayError(401, "invalid_api_key", "Invalid API key.", "authentication_error")
    balance = await ledger.get_balance(db, owner.account_id)
    limit = info.limit
    return {
        "data": {
            "label": info.label,
            "prefix": info.prefix,
            "limit": _credits(limit.limit_micros),
            "usage": _credits(limit.used_micros),
            "limit_remaining": _credits(limit.remaining_micros),
            "limit_reset": None if limit.reset == "none" else limit.reset,
            "is_free_tier": False,
            **limit.as_doc(),
            "account_available_micros": balance.available_micros,
            "account_available_credits": micros_to_credits(balance.available_micros),
        }
    }


async def generation_document(owner: KeyOwner, query_string: bytes) -> dict[str, Any]:
    query = parse_qs(query_string.decode("latin-1"), keep_blank_values=True)
    if set(query) != {"id"} or len(query["id"]) != 1:
        raise GatewayError(400, "invalid_parameter", "Send exactly one query parameter: id (x-gateway-request-id).")
    call = await find_call(runtime().db, query["id"][0], owner.account_id, owner.key_id)
    if call is None:
        raise GatewayError(404, "generation_not_found", "No call of this key has that id.", "not_found_error")
    return {"data": call.as_doc()}
