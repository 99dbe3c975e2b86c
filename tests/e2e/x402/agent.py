"""A test x402 agent: reads a 402's requirement and builds PAYMENT-SIGNATURE headers for it, any field
overridable, signed by an EOA (EIP-712 typed data), a smart wallet's owner (ERC-1271: the owner signs the
digest itself), or wrapped for a counterfactual wallet (ERC-6492). Independent of gateway code: it is
the client side of the protocol.
"""

from __future__ import annotations

import base64
import json
import secrets
import time
from typing import Any

import httpx
from eth_abi import encode
from eth_account import Account
from eth_account.messages import encode_typed_data
from eth_account.signers.local import LocalAccount
from eth_utils import keccak

FIELDS = [
    ("from", "address"),
    ("to", "address"),
    ("value", "uint256"),
    ("validAfter", "uint256"),
    ("validBefore", "uint256"),
    ("nonce", "bytes32"),
]
ERC6492_MAGIC = bytes.fromhex("64926492" * 8)
CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Say something short."}], "max_tokens": 50}


def decode(header: str) -> dict[str, Any]:
    return json.loads(base64.b64decode(header))


def requirement(response: httpx.Response) -> dict[str, Any]:
    """The one entry of `accepts` of a 402 (whose header and body carry the same document)."""
    assert response.status_code == 402, response.text
    document = decode(response.headers["payment-required"])
    assert document == response.json()
    return document["accepts"][0]


def authorization(payer: str, accepted: dict[str, Any], **overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    fields = {
        "from": payer,
        "to": accepted["payTo"],
        "value": int(accepted["amount"]),
        "validAfter": now - 60,
        "validBefore": now + accepted["maxTimeoutSeconds"],
        "nonce": "0x" + secrets.token_hex(32),
    }
    return fields | overrides


def _typed(accepted: dict[str, Any], auth: dict[str, Any], chain_id: int | None = None) -> dict[str, Any]:
    return {
        "types": {
            "EIP712Domain": [
                {"name": "name", "type": "string"},
                {"name": "version", "type": "string"},
                {"name": "chainId", "type": "uint256"},
                {"name": "verifyingContract", "type": "address"},
            ],
            "TransferWithAuthorization": [{"name": n, "type": t} for n, t in FIELDS],
        },
        "primaryType": "TransferWithAuthorization",
        "domain": {
            "name": accepted["extra"]["name"],
            "version": accepted["extra"]["version"],
            "chainId": chain_id or int(accepted["network"].split(":")[1]),
            "verifyingContract": accepted["asset"],
        },
        "message": auth,
    }


def eoa_signature(
    signer: LocalAccount, accepted: dict[str, Any], auth: dict[str, Any], chain_id: int | None = None
) -> bytes:
    return bytes(signer.sign_message(encode_typed_data(full_message=_typed(accepted, auth, chain_id))).signature)


def digest(accepted: dict[str, Any], auth: dict[str, Any]) -> bytes:
    message = encode_typed_data(full_message=_typed(accepted, auth))
    return keccak(b"\x19" + message.version + message.header + message.body)


def owner_signature(owner: LocalAccount, accepted: dict[str, Any], auth: dict[str, Any]) -> bytes:
    """What the test SmartWallet accepts through ERC-1271: its owner's ECDSA signature over the digest."""
    return bytes(Account.unsafe_sign_hash(digest(accepted, auth), owner.key).signature)


def wrap_6492(factory: str, calldata: bytes, inner: bytes) -> bytes:
    return encode(["address", "bytes", "bytes"], [factory, calldata, inner]) + ERC6492_MAGIC


def header(accepted: dict[str, Any], auth: dict[str, Any], signature: bytes, **accepted_overrides: Any) -> str:
    payload = {
        "x402Version": 2,
        "accepted": accepted | accepted_overrides,
        "payload": {"signature": "0x" + signature.hex(), "authorization": {k: str(v) for k, v in auth.items()}},
    }
    return base64.b64encode(json.dumps(payload).encode()).decode()


def pay_header(signer: LocalAccount, accepted: dict[str, Any], **overrides: Any) -> str:
    auth = authorization(signer.address, accepted, **overrides)
    return header(accepted, auth, eoa_signature(signer, accepted, auth))
