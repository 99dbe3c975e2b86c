"""Take an x402 payment for one request, settle-first: verify it, move the USDC on chain from the gas wallet
(`transferWithAuthorization`), wait for the receipt, and credit the payer wallet's billing account (the
account a SIWE sign-in of that wallet gets, created on first use) as an `onchain_payment` of the transfer's
value, once per (chain, tx, log index). Only then may the provider be called; the call is held and settled
from that account like any other, and what the call does not use stays there as credits.

Replays: the nonce row (gateway.x402.store) admits one request per authorization. The very same payment
sent again while its transfer is pending resumes it (one transfer, one credit) and whichever request
closes the row is the one served; every other use of the nonce is refused with `..._nonce_already_used`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from eth_typing import HexStr
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from gateway.accounts.wallets import get_or_create_account
from gateway.config import Settings
from gateway.db.payments_schema import PaymentStatus
from gateway.db.x402_schema import AuthorizationStatus
from gateway.failures import ChainUnavailable
from gateway.payments.chain import ChainRPC, Receipt, RPCError, checksum
from gateway.payments.service import check_chain_id, credit_own_settlement, payment_reference, topup_bounds_micros
from gateway.x402 import eip3009, store, verify
from gateway.x402.eip3009 import Domain
from gateway.x402.gas import GasWallet, SendUncertain
from gateway.x402.protocol import Payment, Reason, Refusal, Requirement

log = logging.getLogger("gateway.x402.settle")

DEPLOY_GAS_LIMIT = 1_000_000  # the most a counterfactual wallet's deployment may burn of the gas wallet's ETH


@dataclass(frozen=True)
class Settled:
    account_id: int
    payer: str
    transaction: str
    amount: int  # USDC base units = micros credited


@dataclass(frozen=True)
class Pending(Exception):
    """The transfer `tx_hash` was sent but is not confirmed yet (HTTP 503: retry the same PAYMENT-SIGNATURE)."""

    tx_hash: str


@dataclass(frozen=True)
class Facilitator:
    """Everything a proxy process needs to take payments: one per process."""

    db: AsyncEngine
    rpc: ChainRPC
    settings: Settings
    gas: GasWallet

    @property
    def domain(self) -> Domain:
        s = self.settings
        return Domain(s.usdc_eip712_name, s.usdc_eip712_version, s.chain_id, s.usdc_address)

    def requirement(self, amount: int) -> Requirement:
        s = self.settings
        return Requirement(
            s.chain_id,
            amount,
            s.usdc_address,
            s.dao_wallet_address or "",
            s.x402_max_timeout_seconds,
            s.usdc_eip712_name,
            s.usdc_eip712_version,
        )

    async def pay(self, payment: Payment, requirement: Requirement) -> Settled:
        """Settle `payment` for a request costing `requirement.amount`; raises Refusal, Pending,
        GasWalletEmpty or ChainUnavailable (the last three: 503)."""
        verify.check_terms(payment, requirement, topup_bounds_micros(self.settings)[1])
        key = store.key_of(self.settings.chain_id, self.settings.usdc_address, payment)
        existing = await store.find(self.db, key)
        if existing is not None:
            return await self._resume(existing, payment)
        await check_chain_id(self.rpc, self.settings)
        verify.check_validity(payment.authorization, await verify.chain_now(self.rpc))
        verified = await verify.signature(self.rpc, self.domain, payment, self.settings.x402_erc6492_factories)
        await verify.chain_state(self.rpc, self.domain, verified.authorization)
        row_id = await store.claim(self.db, key, payment)
        if row_id is None:  # a concurrent request took the nonce between our look and our claim
            existing = await store.find(self.db, key)
            return await self._resume(existing, payment)
        try:
            if verified.deploy is not None:
                await self._deploy(verified.deploy.factory, verified.deploy.factory_calldata)
            gas = await verify.simulate(self.rpc, self.settings.usdc_address, verified, self.gas.address)
            tx_hash = await self.gas.send(
                self.db,
                self.rpc,
                self.settings.usdc_address,
                eip3009.transfer_calldata(verified.authorization, verified.signature, split=verified.split),
                gas * 6 // 5,
                lambda conn, tx: store.record_submitted(conn, row_id, tx),
            )
        except SendUncertain as exc:
            raise Pending(exc.tx_hash) from None
        except BaseException:
            await asyncio.shield(store.release(self.db, row_id))
            raise
        return await self._finish(row_id, tx_hash, payment)

    async def _resume(self, row: sa.Row[Any] | None, payment: Payment) -> Settled:
        same = row is not None and row.payload_sha256 == store.payload_sha256(payment)
        if row is not None and same and row.status == AuthorizationStatus.SUBMITTED:
            return await self._finish(row.id, row.tx_hash, payment)
        if row is not None and same and row.status == AuthorizationStatus.FAILED:
            raise Refusal(
                Reason.TRANSACTION_FAILED,
                f"This authorization's transfer reverted ({row.reason}): sign a new authorization.",
                transaction=row.tx_hash,
            )
        raise Refusal(
            Reason.NONCE_USED,
            "This authorization's nonce has been used for a call already: sign a new "
            "authorization (a new nonce) for each call.",
        )

    async def _deploy(self, factory: str, calldata: bytes) -> None:
        """Deploy a counterfactual wallet through its (allow-listed) factory, so the token can ask it."""
        try:
            gas = await self.rpc.estimate_gas(
                {"from": checksum(self.gas.address), "to": checksum(factory), "data": HexStr("0x" + calldata.hex())}
            )
        except RPCError as exc:
            if not exc.reverted:
                raise
            raise Refusal(
                Reason.UNDEPLOYED_WALLET, "The wallet's factory call reverts: it cannot be deployed."
            ) from None
        if gas > DEPLOY_GAS_LIMIT:
            raise Refusal(
                Reason.UNDEPLOYED_WALLET, f"Deploying the wallet would take {gas} gas (at most {DEPLOY_GAS_LIMIT})."
            )
        try:
            tx_hash = await self.gas.send(
                self.db, self.rpc, factory, "0x" + calldata.hex(), gas * 6 // 5, _nothing_to_record
            )
        except SendUncertain as exc:
            raise ChainUnavailable(f"the wallet deployment {exc.tx_hash} may not have been sent") from None
        receipt = await self._receipt(tx_hash)
        if receipt is None or receipt.status != 1:
            raise Refusal(Reason.UNDEPLOYED_WALLET, "The wallet's deployment failed on chain.", transaction=tx_hash)

    async def _receipt(self, tx_hash: str) -> Receipt | None:
        """The receipt, polled until X402_MAX_TIMEOUT_SECONDS have passed (None: not mined by then)."""
        deadline = time.monotonic() + self.settings.x402_max_timeout_seconds
        pause = 0.05
        while True:
            receipt = await self.rpc.receipt(tx_hash)
            if receipt is not None or time.monotonic() >= deadline:
                return receipt
            await asyncio.sleep(pause)
            pause = min(pause * 2, 1.0)

    async def _finish(self, row_id: int, tx_hash: str, payment: Payment) -> Settled:
        auth = payment.authorization
        try:
            receipt = await self._receipt(tx_hash)
        except ChainUnavailable:
            receipt = None  # sent, fate unknown: the same payment, retried, looks again
        if receipt is None:
            raise Pending(tx_hash)
        usdc, dao = self.settings.usdc_address.lower(), (self.settings.dao_wallet_address or "").lower()
        transfer = (
            next(
                (
                    t
                    for t in receipt.transfers
                    if (t.token, t.from_address, t.to_address, t.value) == (usdc, auth.from_address, dao, auth.value)
                ),
                None,
            )
            if receipt.status == 1
            else None
        )
        if transfer is None:
            await store.mark_failed(self.db, row_id, f"transfer {tx_hash} reverted or moved nothing")
            raise Refusal(
                Reason.TRANSACTION_FAILED,
                "The transfer was mined but reverted: nothing was paid or credited.",
                transaction=tx_hash,
            )
        account = await get_or_create_account(self.db, auth.from_address)
        credited = await credit_own_settlement(self.db, self.settings.chain_id, transfer, account.id)
        reference = payment_reference(self.settings.chain_id, transfer.tx_hash, transfer.log_index)
        if credited.status != PaymentStatus.CREDITED or credited.account_id != account.id:
            log.error(
                "x402 payment %s was paid on chain but is %s (account %s), not credited to account %d: "
                "credit it by hand",
                reference,
                credited.status,
                credited.account_id,
                account.id,
            )
            raise Refusal(
                Reason.SETTLE_ERROR,
                "The transfer was paid but could not be credited; the operator has been alerted.",
                503,
                tx_hash,
            )
        if not await store.mark_settled(self.db, row_id, reference):
            raise Refusal(Reason.NONCE_USED, "This payment has been used for a call already.", transaction=tx_hash)
        return Settled(account.id, auth.from_address, tx_hash, auth.value)


async def _nothing_to_record(conn: AsyncConnection, tx_hash: str) -> None:
    """A wallet deployment has no authorization row to update: the row waits for the transfer itself."""
