"""The operator console's read routes under /api/v1/ops: who am I, the business per day and model, money in
(top-ups, x402), the health of the books, one account by wallet, and the audit trail.

Every route takes `OperatorDep`: 401 without a session, 403 `not_operator` for a wallet that is not in
OPERATOR_WALLETS at the time of the request. The actions are in ops_actions.py.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BeforeValidator

from gateway.accounts.history_daily import MAX_DAYS, utc_today
from gateway.db.payments_schema import STATUSES as TOPUP_STATUSES
from gateway.db.x402_schema import STATUSES as X402_STATUSES
from gateway.ops.audit import MAX_PAGE, Action, audit_page
from gateway.ops.books import books
from gateway.ops.business import business
from gateway.ops.lookup import account_view
from gateway.ops.money_in import MAX_LISTED, money_in
from gateway.sidecar.deps import OperatorDep, ServicesDep
from gateway.sidecar.errors import ApiError
from gateway.sidecar.routes.ops_schemas import (
    AccountOut,
    AuditList,
    AuditOut,
    BooksOut,
    BusinessOut,
    MoneyInOut,
    OperatorOut,
    Wallet,
    ops_responses,
)
from gateway.sidecar.schemas import MAX_ID, iso_day

router = APIRouter(prefix="/ops", tags=["operators"])
Limit = Annotated[int, Query(ge=1, le=MAX_LISTED, description="How many rows, newest first")]


@router.get("/me", response_model=OperatorOut, responses=ops_responses())
async def me(svc: ServicesDep, operator: OperatorDep) -> OperatorOut:
    """The signed-in operator (403 for any other wallet)."""
    return OperatorOut(
        wallet_address=operator.wallet_address, operator=True, explorer_tx_url=svc.settings.explorer_tx_url
    )


@router.get("/business", response_model=BusinessOut, responses=ops_responses(422))
async def get_business(
    svc: ServicesDep,
    _: OperatorDep,
    first_day: Annotated[date | None, BeforeValidator(iso_day), Query(description="First UTC day")] = None,
    last_day: Annotated[date | None, BeforeValidator(iso_day), Query(description="Last UTC day, included")] = None,
) -> BusinessOut:
    """Revenue, charged, provider cost, uncollected and margin per UTC day and model; the calls' holds by
    outcome. Without `first_day`, the 30 days up to `last_day` (default today); without `last_day`, the 30 days
    from `first_day`."""
    try:
        if first_day is None:
            last = last_day or utc_today()
            first = last - timedelta(days=29)
        else:
            first, last = first_day, last_day or first_day + timedelta(days=29)
        return BusinessOut.model_validate(await business(svc.db, first, last))
    except (ValueError, OverflowError) as exc:  # backwards, longer than MAX_DAYS, or past the calendar's ends
        message = str(exc) if isinstance(exc, ValueError) else "the range runs past the calendar"
        raise ApiError(422, "invalid_range", f"{message} (at most {MAX_DAYS} days, first_day <= last_day)") from None


@router.get("/topups", response_model=MoneyInOut, responses=ops_responses(422))
async def get_topups(
    svc: ServicesDep,
    _: OperatorDep,
    status: Annotated[str | None, Query(pattern="^(" + "|".join(TOPUP_STATUSES) + ")$")] = None,
    limit: Limit = 50,
) -> MoneyInOut:
    """On-chain top-ups: count and amount per status, and the newest (of `status`) with payer, tx and age."""
    return MoneyInOut.model_validate(await money_in(svc.db, "topups", status, limit, svc.settings.explorer_tx_url))


@router.get("/x402", response_model=MoneyInOut, responses=ops_responses(422))
async def get_x402(
    svc: ServicesDep,
    _: OperatorDep,
    status: Annotated[str | None, Query(pattern="^(" + "|".join(X402_STATUSES) + ")$")] = None,
    limit: Limit = 50,
) -> MoneyInOut:
    """x402 payments (EIP-3009 authorizations): count and amount per status, and the newest (of `status`)."""
    return MoneyInOut.model_validate(await money_in(svc.db, "x402", status, limit, svc.settings.explorer_tx_url))


@router.get("/books", response_model=BooksOut, responses=ops_responses())
async def get_books(svc: ServicesDep, _: OperatorDep) -> BooksOut:
    """Open holds, holds past their TTL, lost settles, this host's spool and the last reconcile."""
    return BooksOut.model_validate(await books(svc.db, svc.settings.effective_spool_dir))


@router.get("/accounts", response_model=AccountOut, responses=ops_responses(404, 422))
async def get_account(svc: ServicesDep, _: OperatorDep, wallet: Annotated[Wallet, Query()]) -> AccountOut:
    """One account by wallet: balance, held, frozen, last activity, keys, latest ledger, calls and audit."""
    found = await account_view(svc.db, wallet)
    if found is None:
        raise ApiError(404, "account_not_found", f"no account for wallet {wallet.lower()}")
    return AccountOut.model_validate(found)


@router.get("/audit", response_model=AuditList, responses=ops_responses(422))
async def get_audit(
    svc: ServicesDep,
    _: OperatorDep,
    before: Annotated[int | None, Query(ge=1, le=MAX_ID, description="Only rows older than this id")] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
    account_id: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None,
    action: Action | None = None,
) -> AuditList:
    """The audit trail of operator actions, newest first."""
    rows = await audit_page(svc.db, before=before, limit=limit, account_id=account_id, action=action)
    return AuditList(data=[AuditOut.model_validate(r, from_attributes=True) for r in rows])
