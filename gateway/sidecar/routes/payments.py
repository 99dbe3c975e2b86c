"""Routes under /api/v1/payments: confirm a USDC top-up by transaction hash, and list the account's payments.

The account and wallet always come from the session. The chain is asked on every confirm; crediting is
idempotent on (chain, tx, log index), so a repeated confirm or a race with the watcher credits once.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Response
from pydantic import BaseModel, ConfigDict, Field

from gateway.core.money import micros_to_credits
from gateway.db.payments_schema import PaymentStatus
from gateway.failures import ChainUnavailable
from gateway.payments.chain import ChainRPC
from gateway.payments.service import (
    Forbidden,
    NotConfigured,
    NotFound,
    Payment,
    Rejected,
    confirm_payment,
    list_payments,
    require_configured,
)
from gateway.sidecar.deps import ServicesDep, SessionDep
from gateway.sidecar.errors import ApiError, documented

router = APIRouter(prefix="/payments", tags=["payments"])


class PaymentOut(BaseModel):
    tx_hash: str
    log_index: int
    chain_id: int
    status: str = Field(description="pending, credited, rejected or reorged")
    reason: str | None = Field(description="Why it was rejected or reorged")
    amount_micros: int = Field(description="The USDC transferred, in base units (= micros)")
    credited_micros: int | None
    credited_credits: str | None
    block_number: int
    confirmations: int | None

    @classmethod
    def of(cls, p: Payment) -> PaymentOut:
        return cls(
            tx_hash=p.tx_hash,
            log_index=p.log_index,
            chain_id=p.chain_id,
            status=p.status,
            reason=p.reason,
            amount_micros=p.raw_amount,
            credited_micros=p.micros_credited,
            credited_credits=micros_to_credits(p.micros_credited) if p.micros_credited is not None else None,
            block_number=p.block_number,
            confirmations=p.confirmations,
        )


class ConfirmIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    tx_hash: str = Field(pattern=r"^0x[0-9a-fA-F]{64}$", description="The hash of your USDC transfer to the DAO wallet")


class ConfirmOut(BaseModel):
    tx_hash: str
    status: str = Field(description="credited (200) or pending (202: not enough confirmations yet)")
    confirmations: int
    required: int
    credited_micros: int
    credited_credits: str
    payments: list[PaymentOut]


class PaymentList(BaseModel):
    data: list[PaymentOut]


def _rpc(svc: ServicesDep) -> ChainRPC:
    rpc_url = require_configured(svc.settings).rpc_url
    return ChainRPC(rpc_url, timeout=svc.settings.chain_rpc_timeout_seconds)


async def _limit_confirms(svc: ServicesDep, session: SessionDep) -> None:
    await svc.limiter.hit("payment_confirm", "account", str(session.account_id))


@router.post(
    "/credits/confirm",
    response_model=ConfirmOut,
    responses={
        202: {"model": ConfirmOut, "description": "Seen on chain, waiting for confirmations"},
        **documented(400, 401, 403, 404, 422, 429),
    },
    dependencies=[Depends(_limit_confirms)],
)
async def confirm(body: ConfirmIn, response: Response, svc: ServicesDep, session: SessionDep) -> ConfirmOut:
    """Verify your USDC transfer to the DAO wallet on chain and credit it once (1 USDC = 1,000 credits)."""
    try:
        async with _rpc(svc) as rpc:
            result = await confirm_payment(
                svc.db, rpc, svc.settings, session.account_id, session.wallet_address, body.tx_hash
            )
    except NotConfigured as exc:
        raise ApiError(503, "payments_not_configured", str(exc)) from None
    except ChainUnavailable:
        raise ApiError(
            503, "chain_unavailable", "the chain RPC is unreachable; nothing was recorded, retry shortly"
        ) from None
    except NotFound as exc:
        raise ApiError(404, "transaction_not_found", f"{exc} (if you just sent it, retry once it is mined)") from None
    except Forbidden as exc:
        raise ApiError(403, "not_your_transfer", str(exc)) from None
    except Rejected as exc:
        raise ApiError(422, "payment_rejected", exc.reason) from None
    if result.status == PaymentStatus.PENDING:
        response.status_code = 202
    return ConfirmOut(
        tx_hash=result.tx_hash,
        status=result.status,
        confirmations=result.confirmations,
        required=result.required_confirmations,
        credited_micros=result.credited_micros,
        credited_credits=micros_to_credits(result.credited_micros),
        payments=[PaymentOut.of(p) for p in result.payments],
    )


@router.get("", response_model=PaymentList, responses=documented(401))
async def payments(svc: ServicesDep, session: SessionDep) -> PaymentList:
    """The account's payments, newest first, with status and confirmations."""
    try:
        async with _rpc(svc) as rpc:
            head = await rpc.block_number()
    except NotConfigured as exc:
        raise ApiError(503, "payments_not_configured", str(exc)) from None
    except ChainUnavailable:
        head = None  # still list them; confirmations unknown
    return PaymentList(data=[PaymentOut.of(p) for p in await list_payments(svc.db, session.account_id, head)])
