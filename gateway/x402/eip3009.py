"""USDC's EIP-3009 `transferWithAuthorization` and the few other calls x402 settlement needs: the token's
ABI (calldata is encoded by web3 from it), the EIP-712 digest a payer signs, signature shapes (65-byte
ECDSA, ERC-6492 wrappers) and the ERC-6492 off-chain validator call. Pure: no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from eth_abi.abi import decode, encode
from eth_abi.exceptions import DecodingError
from eth_account import Account
from eth_account.messages import SignableMessage, encode_typed_data
from eth_utils.crypto import keccak
from siwe.siwe import EIP6492_VALIDATOR_BYTECODE
from web3 import AsyncWeb3

from gateway.payments.chain import ERC20_ABI, checksum
from gateway.x402.protocol import Authorization

ERC6492_SUFFIX = bytes.fromhex("64926492" * 8)
_AUTHORIZATION_INPUTS = [
    {"name": "from", "type": "address"},
    {"name": "to", "type": "address"},
    {"name": "value", "type": "uint256"},
    {"name": "validAfter", "type": "uint256"},
    {"name": "validBefore", "type": "uint256"},
    {"name": "nonce", "type": "bytes32"},
]
_SPLIT = [{"name": "v", "type": "uint8"}, {"name": "r", "type": "bytes32"}, {"name": "s", "type": "bytes32"}]
EIP3009_ABI: list[dict[str, Any]] = [
    {"type": "function", "name": "transferWithAuthorization", "stateMutability": "nonpayable", "outputs": [],
     "inputs": [*_AUTHORIZATION_INPUTS, *_SPLIT]},
    # USDC v2.2: the signature as bytes (ERC-1271 for a contract wallet)
    {"type": "function", "name": "transferWithAuthorization", "stateMutability": "nonpayable", "outputs": [],
     "inputs": [*_AUTHORIZATION_INPUTS, {"name": "signature", "type": "bytes"}]},
    {"type": "function", "name": "authorizationState", "stateMutability": "view",
     "inputs": [{"name": "authorizer", "type": "address"}, {"name": "nonce", "type": "bytes32"}],
     "outputs": [{"name": "", "type": "bool"}]},
]  # fmt: skip
USDC_ABI = [*ERC20_ABI, *EIP3009_ABI]
TRANSFER_VRS = "transferWithAuthorization(address,address,uint256,uint256,uint256,bytes32,uint8,bytes32,bytes32)"
TRANSFER_BYTES = "transferWithAuthorization(address,address,uint256,uint256,uint256,bytes32,bytes)"
_TOKEN = AsyncWeb3().eth.contract(abi=USDC_ABI)  # encoding only: no provider is ever asked
_HALF_ORDER = 0x7FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF5D576E7357A4501DDFE92F46681B20A0  # secp256k1 n / 2: the low-s bound
TYPES = {
    "EIP712Domain": [
        {"name": "name", "type": "string"},
        {"name": "version", "type": "string"},
        {"name": "chainId", "type": "uint256"},
        {"name": "verifyingContract", "type": "address"},
    ],
    "TransferWithAuthorization": [
        {"name": "from", "type": "address"},
        {"name": "to", "type": "address"},
        {"name": "value", "type": "uint256"},
        {"name": "validAfter", "type": "uint256"},
        {"name": "validBefore", "type": "uint256"},
        {"name": "nonce", "type": "bytes32"},
    ],
}


@dataclass(frozen=True)
class Domain:
    """The token's EIP-712 domain (USDC on Base: "USD Coin", version "2")."""

    name: str
    version: str
    chain_id: int
    token: str


@dataclass(frozen=True)
class WrappedSignature:
    """An ERC-6492 signature: the call that deploys the wallet, and the wallet's own (inner) signature."""

    factory: str
    factory_calldata: bytes
    inner: bytes


def typed_data(domain: Domain, auth: Authorization) -> SignableMessage:
    return encode_typed_data(
        full_message={
            "types": TYPES,
            "primaryType": "TransferWithAuthorization",
            "domain": {
                "name": domain.name,
                "version": domain.version,
                "chainId": domain.chain_id,
                "verifyingContract": domain.token,
            },
            "message": {
                "from": auth.from_address,
                "to": auth.to,
                "value": auth.value,
                "validAfter": auth.valid_after,
                "validBefore": auth.valid_before,
                "nonce": bytes.fromhex(auth.nonce[2:]),
            },
        }
    )


def digest(domain: Domain, auth: Authorization) -> bytes:
    """keccak256(0x1901 || domainSeparator || hashStruct(authorization)): what the token checks the signature on."""
    message = typed_data(domain, auth)
    return keccak(b"\x19" + message.version + message.header + message.body)


def recover_eoa(domain: Domain, auth: Authorization, signature: bytes) -> str | None:
    """The lower-case address whose ECDSA key made a 65-byte `signature` over the authorization, else None.
    The signature must be canonical as the token requires (v 27/28, or 0/1; low s)."""
    if len(signature) != 65 or signature[64] not in (0, 1, 27, 28):
        return None
    if int.from_bytes(signature[32:64], "big") > _HALF_ORDER:
        return None
    try:
        return str(Account.recover_message(typed_data(domain, auth), signature=signature)).lower()
    except Exception:  # noqa: BLE001 - eth_keys rejects r/s outside the curve order in several ways
        return None


def unwrap_6492(signature: bytes) -> WrappedSignature | None:
    """The parts of an ERC-6492 wrapper (abi.encode(factory, calldata, inner) || magic), None if `signature`
    is not one; raises ValueError for a wrapper whose body does not decode."""
    if len(signature) < 32 or signature[-32:] != ERC6492_SUFFIX:
        return None
    try:
        factory, calldata, inner = decode(["address", "bytes", "bytes"], signature[:-32])
    except DecodingError as exc:
        raise ValueError(f"not an ERC-6492 wrapper: {exc}") from None
    return WrappedSignature(factory.lower(), bytes(calldata), bytes(inner))


def validator_call(signer: str, message_digest: bytes, signature: bytes) -> str:
    """Calldata-less `eth_call` data that runs the ERC-6492 reference validator as a constructor: it deploys
    a counterfactual wallet (simulated, nothing persists), then asks the wallet's ERC-1271
    `isValidSignature` about the INNER signature; for a deployed wallet, ERC-1271; for an EOA, ecrecover.
    It answers 0x01 when valid (the bytecode is signinwithethereum's copy of the EIP's reference)."""
    arguments = encode(["address", "bytes32", "bytes"], [signer, message_digest, signature])
    return str(EIP6492_VALIDATOR_BYTECODE) + arguments.hex()


def _signature_parts(signature: bytes) -> tuple[int, bytes, bytes]:
    v = signature[64]
    return (v + 27 if v < 27 else v), signature[:32], signature[32:64]


def authorization_args(auth: Authorization) -> list[object]:
    """The authorization as the token's functions take it (checksummed addresses, the nonce as bytes32)."""
    nonce = bytes.fromhex(auth.nonce[2:])
    return [checksum(auth.from_address), checksum(auth.to), auth.value, auth.valid_after, auth.valid_before, nonce]


def transfer_calldata(auth: Authorization, signature: bytes, *, split: bool) -> str:
    """`transferWithAuthorization` calldata: the (v, r, s) overload for an EOA's 65-byte signature (`split`),
    else the `bytes signature` overload (USDC v2.2: ERC-1271 for contract wallets)."""
    if split:
        return str(_TOKEN.encode_abi(TRANSFER_VRS, args=[*authorization_args(auth), *_signature_parts(signature)]))
    return str(_TOKEN.encode_abi(TRANSFER_BYTES, args=[*authorization_args(auth), signature]))
