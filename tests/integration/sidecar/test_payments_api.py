"""The payments endpoints over HTTP: a wallet signs in (real SIWE), pays USDC on a real anvil chain, and
confirms; every refusal leaves the ledger as it was."""

from __future__ import annotations

import secrets

import pytest

from gateway.jobs.watcher import Watcher
from gateway.payments.chain import ChainRPC
from gateway.sidecar.app import create_app
from tests.integration.payments.conftest import USDC, ledger_count, new_funded_wallet, pay, random_address
from tests.integration.sidecar.conftest import client_for, running, sign_in
from tests.ledger_checks import assert_books_balance

CONFIRMATIONS = 3


@pytest.fixture
def chain_settings(make_settings, chain):
    def make(**overrides):
        values = dict(
            chain_rpc_url=chain.url,
            usdc_address=chain.usdc.address,
            dao_wallet_address=random_address(),
            min_confirmations=CONFIRMATIONS,
            watcher_start_block=chain.w3.eth.block_number + 1,
            rate_limit_payment_confirm="1000/minute",
        )
        return make_settings(**(values | overrides))

    return make


async def confirm(client, tx_hash: str):
    return await client.post("/api/v1/payments/credits/confirm", json={"tx_hash": tx_hash})


async def test_pay_confirm_pending_then_credited_once(db, chain, chain_settings):
    settings = chain_settings()
    payer = new_funded_wallet(chain)
    async with running(create_app(settings)) as app, client_for(app) as client:
        await sign_in(client, payer)
        tx = pay(chain, payer, settings.dao_wallet_address, 25 * USDC)
        pending = await confirm(client, tx)
        assert pending.status_code == 202 and pending.json()["status"] == "pending"
        assert pending.json()["required"] == CONFIRMATIONS and pending.json()["credited_micros"] == 0
        chain.mine(CONFIRMATIONS)
        done = await confirm(client, tx)
        again = await confirm(client, tx)
        assert done.status_code == again.status_code == 200
        assert done.json()["credited_micros"] == again.json()["credited_micros"] == 25 * USDC
        assert done.json()["credited_credits"] == "25000"
        summary = (await client.get("/api/v1/credits/summary")).json()
        assert summary["balance_micros"] == 25 * USDC
        assert [e["reason"] for e in summary["recent"]] == ["onchain_payment"]
        listed = (await client.get("/api/v1/payments")).json()["data"]
        assert [(p["status"], p["credited_micros"]) for p in listed] == [("credited", 25 * USDC)]
    await assert_books_balance(db)


async def test_refusals_change_nothing(db, chain, chain_settings):
    settings = chain_settings()
    payer, stranger = new_funded_wallet(chain), new_funded_wallet(chain)
    async with running(create_app(settings)) as app, client_for(app) as client:
        await sign_in(client, payer)
        others = pay(chain, stranger, settings.dao_wallet_address, 5 * USDC)
        elsewhere = pay(chain, payer, random_address(), 5 * USDC)
        too_small = pay(chain, payer, settings.dao_wallet_address, USDC // 2)
        chain.mine(CONFIRMATIONS)
        before = await ledger_count(db)
        cases = {
            others: (403, "not_your_transfer"),
            elsewhere: (422, "payment_rejected"),
            too_small: (422, "payment_rejected"),
            "0x" + secrets.token_hex(32): (404, "transaction_not_found"),
            "0x1234": (422, "invalid_request"),
        }
        for tx, (status, code) in cases.items():
            response = await confirm(client, tx)
            assert (response.status_code, response.json()["error"]["code"]) == (status, code), response.text
        assert await ledger_count(db) == before
    async with (
        running(create_app(chain_settings(chain_rpc_url="http://127.0.0.1:1"))) as app,
        client_for(app) as client,
    ):
        await sign_in(client, payer)
        response = await confirm(client, others)
        assert (response.status_code, response.json()["error"]["code"]) == (503, "chain_unavailable")
    assert await ledger_count(db) == before


async def test_payments_unconfigured_answer_503(make_settings, wallet):
    async with running(create_app(make_settings())) as app, client_for(app) as client:
        await sign_in(client, wallet)
        response = await confirm(client, "0x" + "ab" * 32)
        assert (response.status_code, response.json()["error"]["code"]) == (503, "payments_not_configured")
        assert (await client.get("/api/v1/payments")).status_code == 503


async def test_transfer_before_first_sign_in_is_credited_at_sign_in(db, chain, chain_settings):
    settings = chain_settings()
    newcomer = new_funded_wallet(chain)
    pay(chain, newcomer, settings.dao_wallet_address, 7 * USDC)
    chain.mine(CONFIRMATIONS)
    async with ChainRPC(settings.chain_rpc_url) as rpc:
        await Watcher(db, rpc, settings).run_once()  # unclaimed: no account has that wallet yet
    async with running(create_app(settings)) as app, client_for(app) as client:
        await sign_in(client, newcomer)
        assert (await client.get("/api/v1/credits/summary")).json()["balance_micros"] == 7 * USDC
    await assert_books_balance(db)
