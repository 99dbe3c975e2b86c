"""The gas wallet on the tests' anvil, without the proxy: an empty one refuses at ERROR before signing, and
concurrent sends from one wallet get consecutive nonces (the lock row), all mined."""

from __future__ import annotations

import asyncio
import logging

import pytest
from eth_account import Account

from gateway.payments.chain import ChainRPC
from gateway.x402.gas import GasWallet, GasWalletEmpty

pytestmark = pytest.mark.timeout(60)


async def test_an_empty_gas_wallet_is_refused_at_error_level_before_anything_is_signed(node, x402_db, caplog):
    seen: list[int] = []
    wallet = GasWallet(Account.create(), node.chain_id, seen.append)  # the proxy hands its gauge's `set`
    signed: list[str] = []

    async def record(conn, tx_hash):
        signed.append(tx_hash)

    caplog.set_level(logging.ERROR, logger="gateway.x402.gas")
    async with ChainRPC(node.url) as rpc:
        with pytest.raises(GasWalletEmpty):
            await wallet.send(x402_db, rpc, node.usdc.address, "0x", 60_000, record)
    assert signed == [] and seen == [0]  # the balance the operator's alert watches
    [record_] = [r for r in caplog.records if r.name == "gateway.x402.gas"]
    assert record_.levelname == "ERROR" and "GAS WALLET EMPTY" in record_.getMessage()


async def test_concurrent_sends_from_one_wallet_take_consecutive_nonces(node, x402_db):
    account = Account.create()
    node.set_balance(account.address, 10**18)
    seen: list[int] = []
    wallet = GasWallet(account, node.chain_id, seen.append)

    async def nothing(conn, tx_hash):
        return None

    async with ChainRPC(node.url) as rpc:
        hashes = await asyncio.gather(
            *[wallet.send(x402_db, rpc, node.usdc.address, "0x18160ddd", 60_000, nothing) for _ in range(5)]
        )
    nonces = sorted(node.w3.eth.get_transaction(h)["nonce"] for h in hashes)
    assert nonces == [0, 1, 2, 3, 4]
    assert all(node.w3.eth.get_transaction_receipt(h)["status"] == 1 for h in hashes)
    assert len(seen) == 5 and all(0 < wei <= 10**18 for wei in seen)
