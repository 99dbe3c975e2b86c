"""The x402 v2 wire format of the `exact` scheme on EVM: PaymentRequirements, PaymentPayload and
SettlementResponse, carried as base64 JSON in the PAYMENT-REQUIRED, PAYMENT-SIGNATURE and PAYMENT-RESPONSE
headers (x402-foundation/x402 specs/x402-specification-v2.md, transports-v2/http.md and
schemes/exact/scheme_exact_evm.md). Pure: no I/O.

A PAYMENT-SIGNATURE is read through allow-lists: the five PaymentPayload fields, the EIP-3009
authorization's six, each of the type and range the token contract accepts; anything else is refused
with `invalid_payload` (or `invalid_x402_version`) before any chain call.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from typing import Any

import orjson

X402_VERSION = 2
SCHEME = "exact"
ASSET_TRANSFER_METHOD = "eip3009"
PAYMENT_REQUIRED = "payment-required"
PAYMENT_SIGNATURE = "payment-signature"
PAYMENT_RESPONSE = "payment-response"
MAX_HEADER_BYTES = 16 * 1024  # an ERC-6492 signature carries a factory call: a few KiB at most
UINT256_LIMIT = 2**256


class Reason:
    """x402 `error` / `invalidReason` codes (spec v2 section 9, and the exact-EVM codes of the reference SDK)."""

    PAYMENT_REQUIRED = "payment_required"  # no PAYMENT-SIGNATURE was sent
    INVALID_PAYLOAD = "invalid_payload"
    INVALID_VERSION = "invalid_x402_version"
    UNSUPPORTED_SCHEME = "unsupported_scheme"
    INVALID_NETWORK = "invalid_network"
    INVALID_REQUIREMENTS = "invalid_payment_requirements"  # the accepted asset or payTo is not ours
    RECIPIENT_MISMATCH = "invalid_exact_evm_payload_recipient_mismatch"
    VALUE_MISMATCH = "invalid_exact_evm_payload_authorization_value_mismatch"
    VALID_AFTER = "invalid_exact_evm_payload_authorization_valid_after"
    VALID_BEFORE = "invalid_exact_evm_payload_authorization_valid_before"
    INVALID_SIGNATURE = "invalid_exact_evm_payload_signature"
    UNDEPLOYED_WALLET = "invalid_exact_evm_payload_undeployed_smart_wallet"
    FACTORY_NOT_ALLOWED = "eip6492_factory_not_allowed"
    NONCE_USED = "invalid_exact_evm_nonce_already_used"
    INSUFFICIENT_FUNDS = "insufficient_funds"
    SIMULATION_FAILED = "invalid_exact_evm_transaction_simulation_failed"
    TRANSACTION_FAILED = "invalid_transaction_state"  # the transfer was mined and reverted
    VERIFY_ERROR = "unexpected_verify_error"  # the chain could not be asked (503)
    SETTLE_ERROR = "unexpected_settle_error"  # the transfer could not be sent or confirmed (503)


@dataclass(frozen=True)
class Refusal(Exception):
    """A payment the gateway does not take: x402 reason code, a sentence for humans, the HTTP status, and
    the transaction when one was mined (a reverted transfer)."""

    reason: str
    message: str
    status: int = 402
    transaction: str = ""


@dataclass(frozen=True)
class Requirement:
    """What this request costs, as one entry of `accepts` (amount in USDC base units, i.e. micros)."""

    chain_id: int
    amount: int
    asset: str
    pay_to: str
    max_timeout_seconds: int
    name: str
    version: str

    @property
    def network(self) -> str:
        return f"eip155:{self.chain_id}"

    def to_json(self) -> dict[str, Any]:
        return {
            "scheme": SCHEME,
            "network": self.network,
            "amount": str(self.amount),
            "asset": self.asset,
            "payTo": self.pay_to,
            "maxTimeoutSeconds": self.max_timeout_seconds,
            # the token's EIP-712 domain, and how the payer authorizes the transfer: the exact-EVM scheme says
            # `assetTransferMethod` MUST be "eip3009" for a TransferWithAuthorization payload
            "extra": {"name": self.name, "version": self.version, "assetTransferMethod": ASSET_TRANSFER_METHOD},
        }


@dataclass(frozen=True)
class Authorization:
    """EIP-3009 TransferWithAuthorization fields; addresses and the nonce as lower-case 0x hex."""

    from_address: str
    to: str
    value: int
    valid_after: int
    valid_before: int
    nonce: str


@dataclass(frozen=True)
class Payment:
    """A decoded PAYMENT-SIGNATURE: the requirement the client says it accepted, and what it signed."""

    scheme: str
    network: str
    asset: str
    pay_to: str
    authorization: Authorization
    signature: bytes


def encode_header(document: dict[str, Any]) -> bytes:
    return base64.b64encode(orjson.dumps(document))


def payment_required(resource_url: str, requirement: Requirement, reason: str, message: str) -> dict[str, Any]:
    """The PaymentRequired document (`message` is ours: the human sentence behind `error`)."""
    return {
        "x402Version": X402_VERSION,
        "error": reason,
        "message": message,
        "resource": {
            "url": resource_url,
            "description": "One LLM call, billed at user prices",
            "mimeType": "application/json",
        },
        "accepts": [requirement.to_json()],
    }


def settlement_response(
    *,
    success: bool,
    transaction: str,
    network: str,
    payer: str | None = None,
    amount: int | None = None,
    reason: str | None = None,
) -> dict[str, Any]:
    document: dict[str, Any] = {"success": success, "transaction": transaction, "network": network}
    if payer is not None:
        document["payer"] = payer
    if amount is not None:
        document["amount"] = str(amount)
    if reason is not None:
        document["errorReason"] = reason
    return document


_PAYLOAD_FIELDS = frozenset({"x402Version", "resource", "accepted", "payload", "extensions"})
_ACCEPTED_FIELDS = frozenset({"scheme", "network", "amount", "asset", "payTo", "maxTimeoutSeconds", "extra"})
_AUTHORIZATION_FIELDS = ("from", "to", "value", "validAfter", "validBefore", "nonce")
_ADDRESS = re.compile(r"0x[0-9a-fA-F]{40}")
_NONCE = re.compile(r"0x[0-9a-fA-F]{64}")
_HEX = re.compile(r"0x(?:[0-9a-fA-F]{2})+")


def _invalid(message: str) -> Refusal:
    return Refusal(Reason.INVALID_PAYLOAD, message, 400)


def _object(value: Any, where: str, allowed: frozenset[str] | None = None) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _invalid(f"{where} must be a JSON object.")
    extra = sorted(set(value) - allowed) if allowed is not None else []
    if extra:
        raise _invalid(f"{where}.{extra[0]} is not a field of an x402 v2 exact-scheme payment.")
    return value


def _string(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value:
        raise _invalid(f"{where} must be a non-empty string.")
    return value


def _address(value: Any, where: str) -> str:
    if not isinstance(value, str) or not _ADDRESS.fullmatch(value):
        raise _invalid(f"{where} must be an address (0x followed by 40 hex digits).")
    return value.lower()


def _uint256(value: Any, where: str) -> int:
    """A decimal string (as the spec sends them) or a JSON integer, 0 <= n < 2**256."""
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 78:
        number = int(value)
    elif isinstance(value, int) and not isinstance(value, bool):
        number = value
    else:
        raise _invalid(f"{where} must be an unsigned integer as a decimal string.")
    if not 0 <= number < UINT256_LIMIT:
        raise _invalid(f"{where} is out of the uint256 range.")
    return number


def _authorization(raw: Any) -> Authorization:
    fields = _object(raw, "payload.authorization", frozenset(_AUTHORIZATION_FIELDS))
    missing = [name for name in _AUTHORIZATION_FIELDS if name not in fields]
    if missing:
        raise _invalid(f"payload.authorization.{missing[0]} is missing.")
    nonce = fields["nonce"]
    if not isinstance(nonce, str) or not _NONCE.fullmatch(nonce):
        raise _invalid("payload.authorization.nonce must be 32 bytes as 0x hex (64 hex digits).")
    return Authorization(
        from_address=_address(fields["from"], "payload.authorization.from"),
        to=_address(fields["to"], "payload.authorization.to"),
        value=_uint256(fields["value"], "payload.authorization.value"),
        valid_after=_uint256(fields["validAfter"], "payload.authorization.validAfter"),
        valid_before=_uint256(fields["validBefore"], "payload.authorization.validBefore"),
        nonce=nonce.lower(),
    )


def _signature(raw: Any) -> bytes:
    if not isinstance(raw, str) or not _HEX.fullmatch(raw):
        raise _invalid("payload.signature must be 0x hex bytes.")
    return bytes.fromhex(raw[2:])


def decode_payment(header: bytes) -> Payment:
    """The PAYMENT-SIGNATURE header (base64 JSON PaymentPayload), checked field by field; raises Refusal."""
    if len(header) > MAX_HEADER_BYTES:
        raise _invalid(f"The PAYMENT-SIGNATURE header is larger than {MAX_HEADER_BYTES} bytes.")
    try:
        text = header.strip()
        document = orjson.loads(base64.b64decode(text + b"=" * (-len(text) % 4), validate=True))
    except (binascii.Error, ValueError):
        raise _invalid("The PAYMENT-SIGNATURE header is not base64-encoded JSON.") from None
    fields = _object(document, "PaymentPayload")
    if fields.get("x402Version") != X402_VERSION:
        raise Refusal(Reason.INVALID_VERSION, f"Only x402Version {X402_VERSION} payments are accepted.", 400)
    _object(document, "PaymentPayload", _PAYLOAD_FIELDS)
    accepted = _object(fields.get("accepted"), "accepted", _ACCEPTED_FIELDS)
    payload = _object(fields.get("payload"), "payload", frozenset({"signature", "authorization"}))
    return Payment(
        scheme=_string(accepted.get("scheme"), "accepted.scheme"),
        network=_string(accepted.get("network"), "accepted.network"),
        asset=_address(accepted.get("asset"), "accepted.asset"),
        pay_to=_address(accepted.get("payTo"), "accepted.payTo"),
        authorization=_authorization(payload.get("authorization")),
        signature=_signature(payload.get("signature")),
    )
