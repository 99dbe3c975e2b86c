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
from gateway.accounts.wallets import find_account
from gateway.db.payments_schema import payments
from gateway.db.schema import credit_holds, llm_usage
from tests.e2e.x402 import agent

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


async def call_rows(db, account_id: int) -> tuple[list, list]:
    async with db.connect() as conn:
        usage = (await conn.execute(sa.select(llm_usage).where(llm_usage.c.account_id == account_id))).all()
        holds = (await conn.execute(sa.select(credit_holds).where(credit_holds.c.account_id == account_id))).all()
    return usage, holds


async def assert_paid_call(x402_db, node, dao: str, payer: str, response: httpx.Response, dao_before: int) -> int:
    """The payment moved on chain, was credited once, the call was held at the paid amount and settled from
    it, and the change is the balance. Returns the amount paid."""
    assert response.status_code == 200, response.text
    receipt = agent.decode(response.headers["payment-response"])
    amount = int(receipt["amount"])
    assert receipt["success"] is True and receipt["network"] == f"eip155:{node.chain_id}"
    assert receipt["payer"] == payer.lower()
    assert node.w3.eth.get_transaction_receipt(receipt["transaction"])["status"] == 1
    assert usdc_of(node, dao) - dao_before == amount
    account = await find_account(x402_db, payer)  # the account a SIWE sign-in of this wallet gets
    [payment] = await payments_from(x402_db, payer)
    assert (payment.status, payment.micros_credited, payment.tx_hash) == ("credited", amount, receipt["transaction"])
    [usage], [hold] = await call_rows(x402_db, account.id)
    assert hold.amount_micros == amount and hold.status == "posted"  # the 402 asked for exactly the hold
    credit, debit = await ledger_of(x402_db, payer)
    assert (credit.reason, credit.amount_micros) == ("onchain_payment", amount)
    assert credit.reference == f"{node.chain_id}:{payment.tx_hash}:{payment.log_index}"
    assert (debit.reason, debit.amount_micros) == ("llm_usage", -usage.user_price_micros)
    assert 0 < usage.user_price_micros <= amount
    assert debit.balance_after_micros == amount - usage.user_price_micros  # the change stays as credits
    return amount
