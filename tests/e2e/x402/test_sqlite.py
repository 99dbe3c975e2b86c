"""x402 settlement on the embedded SQLite default, without the proxy: the same payment sent twice at once
is one transfer, one credit and one settled authorization, and the books reconcile against the chain."""

from __future__ import annotations

import asyncio

import pytest
from eth_account import Account

from gateway.config import Settings
from gateway.db.engine import get_engine
from gateway.db.migrate import upgrade
from gateway.jobs.reconcile import reconcile
from gateway.payments.chain import ChainRPC
from gateway.x402.gas import GasWallet
from gateway.x402.protocol import Refusal, decode_payment
from gateway.x402.settle import Facilitator, Settled
from tests.e2e.x402 import agent
from tests.e2e.x402.helpers import ledger_of, new_payer, payments_from, usdc_of

pytestmark = pytest.mark.timeout(120)


async def test_one_payment_sent_twice_at_once_settles_once_on_sqlite(tmp_path, node, dao):
    url = f"sqlite+aiosqlite:///{tmp_path / 'gateway.db'}"
    upgrade(url)
    db = get_engine(url)
    gas = Account.create()
    node.set_balance(gas.address, 10**18)
    settings = Settings(
        _env_file=None,
        database_url=url,
        chain_id=node.chain_id,
        chain_rpc_url=node.url,
        usdc_address=node.usdc.address,
        dao_wallet_address=dao,
        x402_enabled=True,
        x402_gas_wallet_key="0x" + bytes(gas.key).hex(),
    )
    payer = new_payer(node)
    before = usdc_of(node, dao)
    async with ChainRPC(node.url) as rpc:
        facilitator = Facilitator(db, rpc, settings, GasWallet(gas, node.chain_id))
        requirement = facilitator.requirement(12_345)
        payment = decode_payment(agent.pay_header(payer, requirement.to_json()).encode())
        results = await asyncio.gather(
            *[facilitator.pay(payment, requirement) for _ in range(2)], return_exceptions=True
        )
        report = await reconcile(db, settings, rpc)
    [settled] = [r for r in results if isinstance(r, Settled)]
    [refused] = [r for r in results if isinstance(r, Refusal)]
    assert refused.reason == "invalid_exact_evm_nonce_already_used"
    assert settled.amount == 12_345 and usdc_of(node, dao) - before == 12_345
    [payment_row] = await payments_from(db, payer.address)
    [credit] = await ledger_of(db, payer.address)
    assert (credit.reason, credit.amount_micros, payment_row.tx_hash) == (
        "onchain_payment",
        12_345,
        settled.transaction,
    )
    assert report.ok, report.mismatches
    await db.dispose()
