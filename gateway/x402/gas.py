"""The operator's gas wallet: the key (X402_GAS_WALLET_KEY or X402_GAS_WALLET_KEY_FILE), and sending its
transactions one at a time across every proxy process.

The wallet's row in `x402_gas_wallets` is the lock: a transaction is priced, given the chain's `pending`
nonce, signed, recorded (the caller's `on_signed`, in the same database transaction) and sent while the
row is locked, so two processes never sign the same nonce. Nothing else about nonces is stored: a
transaction the node drops leaves its nonce for the next one instead of a gap that would block them all.

A send the node refuses (or that never reached it) rolls the record back; one whose fate is unknown (the
connection broke after the bytes left) keeps the record and raises `SendUncertain`, so that a retry of the
same payment finds the transaction by its hash instead of paying twice. A transaction sent whose record
then fails to commit (the database went away in that instant) is logged at ERROR with its hash, and raises
`SendUncertain` too (`gateway reconcile` reports its authorization, left `claimed`).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import sqlalchemy as sa
from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_typing import HexStr
from eth_utils.address import to_checksum_address
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from gateway.config import Settings, SettingsError
from gateway.db.schema import insert_for
from gateway.db.x402_schema import x402_gas_wallets
from gateway.failures import ChainUnavailable
from gateway.payments.chain import ChainRPC, NotSent, RPCError

log = logging.getLogger("gateway.x402.gas")

OnSigned = Callable[[AsyncConnection, str], Awaitable[None]]


class GasWalletEmpty(Exception):
    """The gas wallet cannot pay for the transaction (HTTP 503; an operator must top it up)."""


@dataclass(frozen=True)
class SendUncertain(Exception):
    """The transaction `tx_hash` may or may not have reached the node; it is recorded."""

    tx_hash: str


def load_account(settings: Settings) -> LocalAccount:
    """The gas wallet's key from the settings; a missing or malformed one stops start-up with one line."""
    name = "X402_GAS_WALLET_KEY"
    if settings.x402_gas_wallet_key is not None:
        text = settings.x402_gas_wallet_key.get_secret_value()
    elif settings.x402_gas_wallet_key_file is not None:
        name = "X402_GAS_WALLET_KEY_FILE"
        try:
            text = settings.x402_gas_wallet_key_file.read_text()
        except OSError as exc:
            raise SettingsError(
                f"invalid setting {name}: cannot read {settings.x402_gas_wallet_key_file} ({exc.strerror})"
            ) from None
    else:
        raise SettingsError(f"invalid setting {name}: X402_ENABLED needs the gas wallet's key")
    try:
        account: LocalAccount = Account.from_key(text.strip())
        return account
    except (ValueError, TypeError):
        raise SettingsError(f"invalid setting {name}: not a private key (0x followed by 64 hex digits)") from None


@dataclass(frozen=True)
class GasWallet:
    account: LocalAccount
    chain_id: int
    # told the balance (wei) each time a send reads it: the proxy sets its gauge with it, for a low-balance alert
    on_balance: Callable[[int], None] = lambda _wei: None

    @property
    def address(self) -> str:
        return self.account.address.lower()

    async def send(self, db: AsyncEngine, rpc: ChainRPC, to: str, data: str, gas: int, on_signed: OnSigned) -> str:
        """Sign and send a call to `to` with this gas limit; returns the transaction hash (0x hex).
        Raises GasWalletEmpty, ChainUnavailable (nothing was sent) or SendUncertain."""
        block = await rpc.latest_block()
        tip = await rpc.max_priority_fee()
        max_fee = 2 * int(block.get("baseFeePerGas") or 0) + tip
        balance = await rpc.balance(self.address)
        self.on_balance(balance)
        if balance < gas * max_fee:
            raise self._empty(f"it holds {balance} wei, the transaction may cost {gas * max_fee}")
        tx_hash, broadcast, accepted = "", False, False
        try:
            async with db.begin() as conn:
                await self._lock(conn)
                nonce = await rpc.next_nonce(self.address)
                signed = self.account.sign_transaction(
                    {
                        "type": 2,
                        "chainId": self.chain_id,
                        "nonce": nonce,
                        "to": to_checksum_address(to),
                        "data": HexStr(data),
                        "value": 0,
                        "gas": gas,
                        "maxFeePerGas": max_fee,
                        "maxPriorityFeePerGas": tip,
                    }
                )
                tx_hash = "0x" + bytes(signed.hash).hex()
                await on_signed(conn, tx_hash)
                await conn.execute(sa.update(x402_gas_wallets).where(*self._key()).values(last_tx_hash=tx_hash))
                accepted = await self._broadcast(rpc, bytes(signed.raw_transaction))
                broadcast = True
        except Exception as exc:
            if not broadcast:  # refused, or never reached the node: the rollback undid the record
                raise
            log.error("x402 transaction %s was sent but its record was not committed (%s)", tx_hash, type(exc).__name__)
            raise SendUncertain(tx_hash) from None
        if not accepted:
            raise SendUncertain(tx_hash)
        return tx_hash

    async def _broadcast(self, rpc: ChainRPC, raw: bytes) -> bool:
        """Send a signed transaction: True when the node took it, False when its fate is unknown (the bytes may
        have left before the connection broke); raises when it surely was not sent."""
        try:
            await rpc.send_raw_transaction(raw)
        except RPCError as exc:  # the node refused it
            if "insufficient funds" in str(exc.error.get("message", "")).lower():
                raise self._empty(str(exc.error.get("message"))) from None
            raise
        except NotSent:  # never reached the node
            raise
        except ChainUnavailable:
            return False
        return True

    def _key(self) -> tuple[sa.ColumnElement[bool], ...]:
        return x402_gas_wallets.c.chain_id == self.chain_id, x402_gas_wallets.c.address == self.address

    async def _lock(self, conn: AsyncConnection) -> None:
        """Take the wallet's row (created on first use) for the rest of the transaction."""
        await conn.execute(
            insert_for(conn)(x402_gas_wallets)
            .values(chain_id=self.chain_id, address=self.address)
            .on_conflict_do_update(
                index_elements=["chain_id", "address"], set_={"updated_at": sa.func.current_timestamp()}
            )
        )

    def _empty(self, detail: str) -> GasWalletEmpty:
        log.error(
            "x402 GAS WALLET EMPTY: %s cannot pay for a settlement on chain %d (%s); top it up with ETH",
            self.account.address,
            self.chain_id,
            detail,
        )
        return GasWalletEmpty(f"the gateway's gas wallet cannot pay for the transfer ({detail})")
