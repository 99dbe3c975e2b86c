"""Routes under /api/v1/keys: list, create (the raw key is returned once) and revoke the session's keys."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path
from pydantic import BaseModel, ConfigDict, Field

from gateway.key_activity import last_used_by_key
from gateway.keys import create_key, list_keys, revoke_key
from gateway.sidecar.deps import ServicesDep, SessionDep, limit_key_creation
from gateway.sidecar.errors import ApiError, documented
from gateway.sidecar.schemas import MAX_ID, KeyOut, NewKeyOut, PlainText

router = APIRouter(prefix="/keys", tags=["keys"])


class KeyList(BaseModel):
    data: list[KeyOut]


class CreateKeyIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    label: PlainText = Field(default="", max_length=100, description="A name to tell the key apart")


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
    return NewKeyOut.of_new(await create_key(svc.db, session.account_id, body.label))


@router.delete("/{key_id}", response_model=KeyOut, responses=documented(401, 403, 404, 422))
async def delete_key(key_id: Annotated[int, Path(ge=1, le=MAX_ID)], svc: ServicesDep, session: SessionDep) -> KeyOut:
    """Revoke one of the account's keys; proxies stop accepting it within the key cache TTL (seconds)."""
    revoked = await revoke_key(svc.db, key_id, svc.key_cache, account_id=session.account_id)
    if revoked is None:
        raise ApiError(404, "key_not_found", f"no key {key_id} on this account")
    return KeyOut.of(revoked)
