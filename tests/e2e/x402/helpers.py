"""Helpers of the x402 end-to-end tests: calls to the proxy, wallets on the tests' anvil, and what the
ledger and the payments table hold for a wallet."""

from __future__ import annotations

from typing import Any

import httpx
import sqlalchemy as sa
from eth_account import Account
from eth_account.signers.local import LocalAccount
from sqlalchemy.ext.asyncio import AsyncEngine
from web3 import Web3

from devtools.chain.anvil import Anvil
from gateway.db.payments_schema import payments

USDC = 1_000_000  # base units per USDC


def post(url: str, body: dict[str, Any], payment: str | None = None, key: str | None = None) -> httpx.Response:
    """POST `body` (blocking: the tests drive the proxy like any client), with a PAYMENT-SIGNATURE and/or a key."""
    headers = {"PAYMENT-SIGNATURE": payment} if payment is not None else {}
    if key is not None:
        headers["Authorization"] = f"Bearer {key}"
    return httpx.post(url, json=body, headers=headers, timeout=60)


def usdc_of(node: Anvil, address: str) -> int:
    return node.usdc.functions.balanceOf(Web3.to_checksum_address(address)).call()


def new_payer(node: Anvil, usdc_units: int = 5 * USDC) -> LocalAccount:
    """A wallet with USDC and no ETH at all: x402 payments are gasless for the payer."""
    wallet = Account.create()
    node.usdc_mint(wallet.address, usdc_units)
    return wallet


async def ledger_of(db: AsyncEngine, wallet: str) -> list[sa.Row]:
    """The ledger rows of `wallet`'s account (none when it has no account)."""
    query = sa.text(
        "SELECT l.* FROM credit_ledger l JOIN billing_accounts a ON a.id = l.account_id "
        "JOIN users u ON u.id = a.user_id WHERE u.wallet_address = :w ORDER BY l.id"
    )
    async with db.connect() as conn:
        return (await conn.execute(query, {"w": wallet.lower()})).all()


async def payments_from(db: AsyncEngine, wallet: str) -> list[sa.Row]:
    async with db.connect() as conn:
        return (await conn.execute(sa.select(payments).where(payments.c.from_address == wallet.lower()))).all()
