"""Routes under /api/v1/keys: list, create (the raw key is returned once), change the credit limit of (PATCH) and
revoke the session's keys."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path
from pydantic import BaseModel, ConfigDict, Field

from gateway.accounts.key_activity import last_used_by_key
from gateway.accounts.keys import create_key, list_keys, revoke_key, set_limit
from gateway.core.limits import Reset
from gateway.sidecar.deps import ServicesDep, SessionDep, limit_key_creation
from gateway.sidecar.errors import ApiError, documented
from gateway.sidecar.schemas import MAX_ID, KeyOut, LimitCredits, NewKeyOut, PlainText, limit_micros

router = APIRouter(prefix="/keys", tags=["keys"])


class KeyList(BaseModel):
    data: list[KeyOut]


class CreateKeyIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    label: PlainText = Field(default="", max_length=100, description="A name to tell the key apart")
    limit_credits: LimitCredits | None = Field(default=None, description="The key's credit limit (null: none)")
    limit_reset: Reset = Field(default=Reset.NONE, description="When its period use starts again (UTC)")


class PatchKeyIn(BaseModel):
    """Set or remove a key's credit limit; an omitted field keeps its value."""

    model_config = ConfigDict(extra="forbid")

    limit_credits: LimitCredits | None = Field(default=None, description="The new limit in credits (null: none)")
    limit_reset: Reset | None = Field(default=None, description="The new reset period (UTC)")


@router.get("", response_model=KeyList, responses=documented(401))
async def get_keys(svc: ServicesDep, session: SessionDep) -> KeyList:
    """The account's keys, active and revoked (never the raw keys)."""
    last_used = await last_used_by_key(svc.db, session.account_id)
    return KeyList(data=[KeyOut.of(k, last_used.get(k.id)) for k in await list_keys(svc.db, session.account_id)])


@router.post(
    "",
    status_code=201,
    response_model=NewKeyOut,
    responses=documented(400, 401, 403, 422, 429),
    dependencies=[Depends(limit_key_creation)],
)
async def post_key(body: CreateKeyIn, svc: ServicesDep, session: SessionDep) -> NewKeyOut:
    """Create a key; the raw key is in this response only."""
    limit = limit_micros(body.limit_credits)
    return NewKeyOut.of_new(await create_key(svc.db, session.account_id, body.label, limit, body.limit_reset))


@router.patch("/{key_id}", response_model=KeyOut, responses=documented(400, 401, 403, 404, 422))
async def patch_key(
    key_id: Annotated[int, Path(ge=1, le=MAX_ID)], body: PatchKeyIn, svc: ServicesDep, session: SessionDep
) -> KeyOut:
    """Change a key's credit limit or reset period. It applies from the key's next call; its use this period
    is kept."""
    current = next((k for k in await list_keys(svc.db, session.account_id) if k.id == key_id), None)
    if current is None:
        raise ApiError(404, "key_not_found", f"no key {key_id} on this account")
    given = body.model_fields_set
    limit = limit_micros(body.limit_credits) if "limit_credits" in given else current.limit.limit_micros
    reset = body.limit_reset if body.limit_reset is not None else current.limit.reset
    changed = await set_limit(svc.db, key_id, limit, reset, account_id=session.account_id)
    if changed is None:
        raise ApiError(404, "key_not_found", f"no key {key_id} on this account")
    return KeyOut.of(changed)


@router.delete("/{key_id}", response_model=KeyOut, responses=documented(401, 403, 404, 422))
async def delete_key(key_id: Annotated[int, Path(ge=1, le=MAX_ID)], svc: ServicesDep, session: SessionDep) -> KeyOut:
    """Revoke one of the account's keys; proxies stop accepting it within the key cache TTL (seconds)."""
    revoked = await revoke_key(svc.db, key_id, svc.key_cache, account_id=session.account_id)
    if revoked is None:
        raise ApiError(404, "key_not_found", f"no key {key_id} on this account")
    return KeyOut.of(revoked)
