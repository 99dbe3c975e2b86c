"""The operator console's actions under /api/v1/ops: grant credits, revoke a key, set or clear a key's
limit, freeze or unfreeze an account, run reconcile. Each is idempotent on the body's `reference` (a replay
answers the recorded result with `replayed: true`; the reference reused for another request is 409) and
recorded, with its `reason`, in the audit trail (gateway/ops/)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Annotated

from fastapi import APIRouter, Path

from gateway.ops import actions
from gateway.ops.audit import AuditEntry, ReferenceReused
from gateway.sidecar.deps import OperatorDep, ServicesDep
from gateway.sidecar.errors import ApiError
from gateway.sidecar.routes.ops_schemas import (
    ActionIn,
    AuditOut,
    GrantIn,
    GrantOut,
    LimitIn,
    ReconcileIn,
    ops_responses,
)
from gateway.sidecar.schemas import MAX_ID

router = APIRouter(prefix="/ops", tags=["operators"])
KeyId = Annotated[int, Path(ge=1, le=MAX_ID)]
AccountId = Annotated[int, Path(ge=1, le=MAX_ID)]


def _out(entry: AuditEntry) -> AuditOut:
    return AuditOut.model_validate(entry, from_attributes=True)


@contextlib.contextmanager
def _refusals() -> Iterator[None]:
    """Domain refusals as API errors: 409 reference reused, 404 no such key/account, 422 a bad value."""
    try:
        yield
    except ReferenceReused as exc:
        raise ApiError(409, "reference_reused", str(exc)) from None
    except actions.NotFound as exc:
        raise ApiError(404, "not_found", str(exc)) from None
    except ValueError as exc:
        raise ApiError(422, "invalid_request", str(exc)) from None


@router.post("/grants", response_model=GrantOut, responses=ops_responses(400, 409, 422))
async def post_grant(body: GrantIn, svc: ServicesDep, operator: OperatorDep) -> GrantOut:
    """Grant credits to a wallet's account (created if it has none): an `admin_grant` ledger row naming the
    operator."""
    with _refusals():
        account, entry = await actions.grant(
            svc.db, operator.wallet_address, body.wallet, body.amount_micros, body.reason, body.reference
        )
    return GrantOut(**_out(entry).model_dump(), wallet_address=account.wallet_address)


@router.post("/keys/{key_id}/revoke", response_model=AuditOut, responses=ops_responses(400, 404, 409, 422))
async def post_revoke(key_id: KeyId, body: ActionIn, svc: ServicesDep, operator: OperatorDep) -> AuditOut:
    """Revoke any key; proxies stop accepting it within the key cache TTL."""
    with _refusals():
        return _out(
            await actions.revoke(svc.db, svc.key_cache, operator.wallet_address, key_id, body.reason, body.reference)
        )


@router.post("/keys/{key_id}/limit", response_model=AuditOut, responses=ops_responses(400, 404, 409, 422))
async def post_limit(key_id: KeyId, body: LimitIn, svc: ServicesDep, operator: OperatorDep) -> AuditOut:
    """Set a key's credit limit (micros) and reset period, or clear it (`limit_micros: null`)."""
    with _refusals():
        return _out(
            await actions.limit_key(
                svc.db,
                operator.wallet_address,
                key_id,
                body.limit_micros,
                body.limit_reset,
                body.reason,
                body.reference,
            )
        )


async def _freeze(account_id: int, body: ActionIn, svc: ServicesDep, operator: str, frozen: bool) -> AuditOut:
    with _refusals():
        return _out(
            await actions.freeze(svc.db, svc.key_cache, operator, account_id, frozen, body.reason, body.reference)
        )


@router.post("/accounts/{account_id}/freeze", response_model=AuditOut, responses=ops_responses(400, 404, 409, 422))
async def post_freeze(account_id: AccountId, body: ActionIn, svc: ServicesDep, operator: OperatorDep) -> AuditOut:
    """Freeze an account: its calls get 403 account_frozen (before any hold) within the key cache TTL; its
    top-ups are still credited."""
    return await _freeze(account_id, body, svc, operator.wallet_address, True)


@router.post("/accounts/{account_id}/unfreeze", response_model=AuditOut, responses=ops_responses(400, 404, 409, 422))
async def post_unfreeze(account_id: AccountId, body: ActionIn, svc: ServicesDep, operator: OperatorDep) -> AuditOut:
    """Unfreeze an account."""
    return await _freeze(account_id, body, svc, operator.wallet_address, False)


@router.post("/reconcile", response_model=AuditOut, responses=ops_responses(400, 409, 422))
async def post_reconcile(body: ReconcileIn, svc: ServicesDep, operator: OperatorDep) -> AuditOut:
    """Run `gateway reconcile` now (against the chain too when CHAIN_RPC_URL is set); the findings are the
    audit row's result."""
    with _refusals():
        return _out(
            await actions.run_reconcile(svc.db, svc.settings, operator.wallet_address, body.reason, body.reference)
        )
