"""The proxy's x402 adapter: a billed call with no credential at all pays for itself (X402_ENABLED).

`gateway.proxy.guard` hands it such a call after the body passed the allow-lists:
- no PAYMENT-SIGNATURE: 402 with PAYMENT-REQUIRED (base64 JSON, the same document as the body), whose
  amount is this request's hold (`gateway.proxy.planning.plan_request`) in USDC base units; an unpriced
  model is refused with 400 as for a key;
- a PAYMENT-SIGNATURE: `gateway.x402` verifies and settles it on chain and credits the payer's account,
  before LiteLLM sees the request; refusals answer 402 (400 for a malformed header, 503 when the chain or
  the gas wallet cannot settle) with the x402 reason as `error`. A paid call is marked in its scope, so
  that `gateway.proxy.auth` bills it to the payer's account like a key's call (the pre-call hook holds the
  plan it paid for, without counting the prompt again), and its response (a stream's
  too: the headers leave before the first byte) carries PAYMENT-RESPONSE.

The amount advertised is the whole hold even when the payer's account already holds credits: a request
carries no proof of its wallet until it is paid (x402's sign-in-with-x extension is not implemented).
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import MutableMapping, Sequence
from typing import Any

import orjson

from gateway.accounts.wallets import find_account, frozen_since
from gateway.failures import ChainUnavailable, is_transient
from gateway.observability.metrics import GAS_WALLET_BALANCE
from gateway.payments.chain import ChainRPC
from gateway.proxy import admission
from gateway.proxy.errors import GatewayError, account_frozen
from gateway.proxy.planning import Plan, plan_request
from gateway.proxy.runtime import runtime
from gateway.x402 import protocol
from gateway.x402.gas import GasWallet, GasWalletEmpty, load_account
from gateway.x402.protocol import Reason, Refusal, Requirement
from gateway.x402.settle import Facilitator, Pending, Settled

log = logging.getLogger("gateway.proxy.x402")

PAID = "gateway.x402_paid"  # scope key: the `Settled` payment of a request the gate let through
PLANNED = "gateway.x402_plan"  # scope key: the `Plan` it paid for


def wanted(headers: dict[str, bytes]) -> bool:
    """Whether this call is the gate's: x402 is on and the request carries no credential of any kind."""
    return runtime().settings.x402_enabled and not admission.CREDENTIAL_HEADERS.intersection(headers)


def paid(scope: MutableMapping[str, Any]) -> tuple[Settled, Plan] | None:
    """The payment the gate took for this request and the plan it paid for, if it took one."""
    settled, planned = scope.get(PAID), scope.get(PLANNED)
    return (settled, planned) if isinstance(settled, Settled) and isinstance(planned, Plan) else None


def prepare() -> None:
    """At proxy start-up: load the gas wallet now, so that a bad key stops the proxy with one line."""
    if runtime().settings.x402_enabled:
        facilitator()


@functools.lru_cache(maxsize=1)
def facilitator() -> Facilitator:
    rt = runtime()
    settings = rt.settings
    rpc = ChainRPC(settings.chain_rpc_url or "", timeout=settings.chain_rpc_timeout_seconds)
    gas = GasWallet(load_account(settings), settings.chain_id, GAS_WALLET_BALANCE.set)  # its balance: a gauge
    return Facilitator(rt.db, rpc, settings, gas)


async def admit(scope: dict[str, Any], headers: dict[str, bytes], kind: str, body: dict[str, Any], send: Any) -> Any:
    """Take the payment for this call: the `send` to answer it with (adding PAYMENT-RESPONSE), or None when
    the client has been answered already (402, 400 or 503)."""
    try:
        planned = plan_request(str(body["model"]), body, kind)
    except GatewayError as exc:
        await _send(send, exc.status_code, {"error": exc.to_dict()})
        return None
    plan = planned.hold
    gate = facilitator()
    requirement = gate.requirement(plan.amount_micros)
    header = headers.get(protocol.PAYMENT_SIGNATURE)
    if header is None:
        message = (
            f"This call costs up to {plan.amount_micros} USDC base units: pay with x402 (a PAYMENT-SIGNATURE "
            "header), or use an API key. What the call does not use stays as credits of the paying wallet."
        )
        await _refuse(send, scope, requirement, Refusal(Reason.PAYMENT_REQUIRED, message))
        return None
    try:
        payment = protocol.decode_payment(header)
        if await _frozen(payment.authorization.from_address):  # refused before any USDC moves
            await _send(send, 403, {"error": account_frozen().to_dict()})
            return None
        settled = await asyncio.shield(gate.pay(payment, requirement))
    except Refusal as refusal:
        await _refuse(send, scope, requirement, refusal)
        return None
    except Exception as exc:  # noqa: BLE001 - every failure to settle answers the client; nothing was charged
        await _refuse(send, scope, requirement, _unavailable(exc))
        return None
    scope[PAID] = settled
    scope[PLANNED] = planned  # the hold it paid for: the pre-call hook holds it without counting the prompt again
    return _with_payment_response(send, requirement, settled)


async def _frozen(payer: str) -> bool:
    """Whether the paying wallet's account is frozen by an operator (its calls are refused, as with a key)."""
    db = runtime().db
    account = await find_account(db, payer)
    return account is not None and await frozen_since(db, account.id) is not None


def _unavailable(exc: Exception) -> Refusal:
    """A payment the gateway could not settle now (HTTP 503); what the client may do about it."""
    if isinstance(exc, Pending):
        return Refusal(
            Reason.SETTLE_ERROR,
            f"The transfer {exc.tx_hash} was sent but is not confirmed yet: retry "
            "with the same PAYMENT-SIGNATURE to be served once it is (it is credited once).",
            503,
            exc.tx_hash,
        )
    if isinstance(exc, GasWalletEmpty):
        return Refusal(
            Reason.SETTLE_ERROR,
            "The gateway cannot pay the gas to settle payments right now; nothing was "
            "charged. Retry later or use an API key.",
            503,
        )
    if isinstance(exc, ChainUnavailable):
        log.warning("x402 payment refused: chain RPC unavailable (%s)", exc)
        return Refusal(
            Reason.VERIFY_ERROR,
            "The chain cannot be reached to verify or settle the payment; nothing was charged. Retry shortly.",
            503,
        )
    if is_transient(exc):
        log.warning("x402 payment refused: billing database unreachable (%s)", type(exc).__name__)
        return Refusal(
            Reason.VERIFY_ERROR, "The billing database is unreachable; nothing was charged. Retry shortly.", 503
        )
    log.error("x402 payment failed unexpectedly", exc_info=exc)
    return Refusal(Reason.SETTLE_ERROR, "The gateway failed to take the payment; nothing was charged.", 500)


def _resource_url(scope: dict[str, Any]) -> str:
    host = dict(scope["headers"]).get(b"host", b"").decode("latin-1") or "localhost"
    return f"{scope.get('scheme', 'http')}://{host}{scope['path']}"


async def _refuse(send: Any, scope: dict[str, Any], requirement: Requirement, refusal: Refusal) -> None:
    document = protocol.payment_required(_resource_url(scope), requirement, refusal.reason, refusal.message)
    headers = [(protocol.PAYMENT_REQUIRED.encode(), protocol.encode_header(document))]
    if refusal.transaction:
        failure = protocol.settlement_response(
            success=False, transaction=refusal.transaction, network=requirement.network, reason=refusal.reason
        )
        headers.append((protocol.PAYMENT_RESPONSE.encode(), protocol.encode_header(failure)))
    await _send(send, refusal.status, document, headers)


async def _send(send: Any, status: int, payload: Any, headers: Sequence[tuple[bytes, bytes]] = ()) -> None:
    body = orjson.dumps(payload)
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), *headers],
        }
    )
    await send({"type": "http.response.body", "body": body})


def _with_payment_response(send: Any, requirement: Requirement, settled: Settled) -> Any:
    document = protocol.settlement_response(
        success=True,
        transaction=settled.transaction,
        network=requirement.network,
        payer=settled.payer,
        amount=settled.amount,
    )
    header = (protocol.PAYMENT_RESPONSE.encode(), protocol.encode_header(document))

    async def send_with_receipt(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            message = {**message, "headers": [*message.get("headers", []), header]}
        await send(message)

    return send_with_receipt
