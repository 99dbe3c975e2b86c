"""Verify an x402 `exact` payment as its own facilitator: the terms against what this request costs, then
the signature and the payer's state on chain. Every check that fails raises `protocol.Refusal` with its
x402 reason; a chain that cannot be asked raises `chain.ChainUnavailable` (nothing was decided).

Signatures (mirroring what USDC v2.2's SignatureChecker will accept on chain):
- an address without code and a plain 65-byte signature: ECDSA, recovered locally;
- a deployed contract wallet, or any ERC-6492 wrapper: the ERC-6492 reference validator, run with
  `eth_call`, which verifies the INNER signature through the wallet's ERC-1271 `isValidSignature` (after
  simulating its deployment for a counterfactual wallet). The wrapper alone proves nothing (the bypass fixed
  in x402 PR #1265): an EOA's address with a wrapper, or a wrapper whose factory does not deploy the
  payer, fails. A counterfactual wallet is settled only through a factory in X402_ERC6492_FACTORIES.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from eth_typing import HexStr

from gateway.payments.chain import ChainRPC, RPCError, checksum
from gateway.x402 import eip3009
from gateway.x402.eip3009 import Domain, WrappedSignature
from gateway.x402.protocol import SCHEME, Authorization, Payment, Reason, Refusal, Requirement

VALIDITY_MARGIN_SECONDS = 6  # validBefore must leave this long to get the transfer mined (as the reference SDK)


@dataclass(frozen=True)
class Verified:
    """A payment whose signature holds: what the token gets (the inner signature of an ERC-6492 wrapper),
    which overload takes it, and the deployment a counterfactual wallet needs first."""

    authorization: Authorization
    signature: bytes
    split: bool  # an EOA's 65-byte signature: the (v, r, s) overload
    deploy: WrappedSignature | None = None


def check_terms(payment: Payment, requirement: Requirement, max_value: int) -> None:
    """The payment is for this gateway, on this chain, in USDC, to the DAO wallet, and covers the request."""
    auth = payment.authorization
    if payment.scheme != SCHEME:
        raise Refusal(Reason.UNSUPPORTED_SCHEME, f"Only the '{SCHEME}' scheme is accepted, not {payment.scheme!r}.")
    if payment.network != requirement.network:
        raise Refusal(
            Reason.INVALID_NETWORK, f"This gateway is paid on {requirement.network}, not {payment.network!r}."
        )
    if payment.asset != requirement.asset.lower():
        raise Refusal(Reason.INVALID_REQUIREMENTS, f"accepted.asset must be USDC at {requirement.asset}.")
    if payment.pay_to != requirement.pay_to.lower():
        raise Refusal(Reason.INVALID_REQUIREMENTS, f"accepted.payTo must be {requirement.pay_to}.")
    if auth.to != requirement.pay_to.lower():
        raise Refusal(Reason.RECIPIENT_MISMATCH, f"The authorization must pay {requirement.pay_to}, not {auth.to}.")
    if auth.value < requirement.amount:
        raise Refusal(
            Reason.VALUE_MISMATCH,
            f"This request costs up to {requirement.amount} USDC base units; the authorization is for {auth.value}.",
        )
    if auth.value > max(max_value, requirement.amount):
        raise Refusal(
            Reason.VALUE_MISMATCH,
            f"An authorization may pay at most {max(max_value, requirement.amount)} USDC base units (MAX_TOPUP_USD).",
        )


def check_validity(auth: Authorization, now: int) -> None:
    """validAfter has passed and validBefore leaves time to mine the transfer (`now`: the chain's clock)."""
    if auth.valid_after >= now:
        raise Refusal(
            Reason.VALID_AFTER, f"The authorization is not valid yet (validAfter {auth.valid_after}, now {now})."
        )
    if auth.valid_before <= now + VALIDITY_MARGIN_SECONDS:
        raise Refusal(
            Reason.VALID_BEFORE,
            f"The authorization has expired or expires within {VALIDITY_MARGIN_SECONDS} s "
            f"(validBefore {auth.valid_before}, now {now}).",
        )


async def chain_now(rpc: ChainRPC) -> int:
    """The later of this host's clock and the latest block's timestamp: the token checks validity by block time."""
    block = await rpc.latest_block()
    return max(int(time.time()), int(block["timestamp"]))


async def signature(rpc: ChainRPC, domain: Domain, payment: Payment, factories: list[str]) -> Verified:
    auth = payment.authorization
    try:
        wrapped = eip3009.unwrap_6492(payment.signature)
    except ValueError:
        raise Refusal(Reason.INVALID_SIGNATURE, "The ERC-6492 signature wrapper does not decode.") from None
    deployed = bool(await rpc.code(auth.from_address))
    if wrapped is None and not deployed:
        if eip3009.recover_eoa(domain, auth, payment.signature) != auth.from_address:
            raise Refusal(
                Reason.INVALID_SIGNATURE, f"The signature is not {auth.from_address}'s over this authorization."
            )
        return Verified(auth, payment.signature, split=True)
    if not await _valid_by_validator(rpc, auth.from_address, eip3009.digest(domain, auth), payment.signature):
        raise Refusal(
            Reason.INVALID_SIGNATURE,
            f"The smart-wallet signature is not valid for {auth.from_address} "
            "(ERC-1271 / ERC-6492, inner signature checked).",
        )
    inner = wrapped.inner if wrapped else payment.signature
    if deployed or wrapped is None:
        return Verified(auth, inner, split=False)
    if wrapped.factory not in factories:
        raise Refusal(
            Reason.FACTORY_NOT_ALLOWED,
            f"The wallet {auth.from_address} is not deployed and its factory "
            f"{wrapped.factory} is not one this gateway deploys wallets with: deploy the wallet first.",
        )
    return Verified(auth, inner, split=False, deploy=wrapped)


async def _valid_by_validator(rpc: ChainRPC, signer: str, message_digest: bytes, raw_signature: bytes) -> bool:
    try:
        answer = await rpc.call({"data": HexStr(eip3009.validator_call(signer, message_digest, raw_signature))})
    except RPCError as exc:
        if exc.reverted:  # the validator reverts on a failed deployment or a malformed signature
            return False
        raise
    return answer.endswith(b"\x01")


async def chain_state(rpc: ChainRPC, domain: Domain, auth: Authorization) -> None:
    """The nonce is unused on chain and the payer holds the amount."""
    token = rpc.contract(domain.token, eip3009.USDC_ABI).functions
    authorizer, nonce = eip3009.authorization_args(auth)[0], bytes.fromhex(auth.nonce[2:])
    if await rpc.read(token.authorizationState(authorizer, nonce)):
        raise Refusal(Reason.NONCE_USED, "This authorization's nonce has been used on chain already.")
    balance = int(await rpc.read(token.balanceOf(authorizer)))
    if balance < auth.value:
        raise Refusal(
            Reason.INSUFFICIENT_FUNDS,
            f"{auth.from_address} holds {balance} USDC base units, less than the {auth.value} it authorized.",
        )


async def simulate(rpc: ChainRPC, token: str, verified: Verified, gas_address: str) -> int:
    """`eth_estimateGas` of the transfer as the gas wallet would send it (a counterfactual wallet once it is
    deployed): the token's own verdict before any gas is spent; a revert refuses the payment."""
    data = eip3009.transfer_calldata(verified.authorization, verified.signature, split=verified.split)
    try:
        return await rpc.estimate_gas({"from": checksum(gas_address), "to": checksum(token), "data": HexStr(data)})
    except RPCError as exc:
        if not exc.reverted:
            raise
        reason = str(exc.error.get("message", "reverted"))[:200]
        raise Refusal(Reason.SIMULATION_FAILED, f"The token refuses this transfer: {reason}.") from None
