"""Replays and concurrency through the real proxy (2 workers): one authorization is one transfer, one credit
and one served call, however often and however concurrently it is sent; different authorizations of one
wallet all settle, and the balances are exact."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import sqlalchemy as sa

from gateway.accounts.wallets import find_account
from gateway.db.schema import llm_usage
from gateway.db.x402_schema import x402_authorizations
from tests.e2e.x402 import agent
from tests.e2e.x402.agent import CHAT
from tests.e2e.x402.helpers import ledger_of, new_payer, payments_from, post, usdc_of
from tests.ledger_checks import assert_books_balance

pytestmark = pytest.mark.timeout(180)


def concurrently(*calls):
    with ThreadPoolExecutor(len(calls)) as pool:
        return list(pool.map(lambda call: call(), calls))


async def settled_calls(db, wallet: str) -> list:
    account = await find_account(db, wallet)
    async with db.connect() as conn:
        return (await conn.execute(sa.select(llm_usage).where(llm_usage.c.account_id == account.id))).all()


async def assert_one_payment_one_credit_one_call(db, node, dao: str, payer, amount: int, dao_before: int) -> None:
    assert usdc_of(node, dao) - dao_before == amount  # one transfer
    [payment] = await payments_from(db, payer.address)
    credits = [row for row in await ledger_of(db, payer.address) if row.reason == "onchain_payment"]
    assert [c.amount_micros for c in credits] == [amount] and payment.micros_credited == amount
    assert len(await settled_calls(db, payer.address)) == 1
    async with db.connect() as conn:
        [authorization] = (
            await conn.execute(
                sa.select(x402_authorizations).where(x402_authorizations.c.payer == payer.address.lower())
            )
        ).all()
    assert authorization.status == "settled" and authorization.tx_hash == payment.tx_hash


async def test_the_same_payment_sent_again_is_refused_after_one_transfer_and_one_credit(
    x402_db, node, dao, chat_url, upstream
):
    payer = new_payer(node)
    accepted = agent.requirement(post(chat_url, CHAT))
    payment = agent.pay_header(payer, accepted)
    before = usdc_of(node, dao)
    assert post(chat_url, CHAT, payment).status_code == 200
    again = post(chat_url, CHAT, payment)
    assert again.status_code == 402 and again.json()["error"] == "invalid_exact_evm_nonce_already_used"
    await assert_one_payment_one_credit_one_call(x402_db, node, dao, payer, int(accepted["amount"]), before)
    assert upstream.calls("chat/completions") == 1


async def test_the_same_payment_sent_concurrently_settles_once(x402_db, node, dao, chat_url, upstream):
    payer = new_payer(node)
    accepted = agent.requirement(post(chat_url, CHAT))
    payment = agent.pay_header(payer, accepted)
    before = usdc_of(node, dao)
    responses = concurrently(*[lambda: post(chat_url, CHAT, payment)] * 4)
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200, 402, 402, 402], [r.text for r in responses]
    assert {r.json()["error"] for r in responses if r.status_code == 402} == {"invalid_exact_evm_nonce_already_used"}
    await assert_one_payment_one_credit_one_call(x402_db, node, dao, payer, int(accepted["amount"]), before)
    assert upstream.calls("chat/completions") == 1


async def test_concurrent_payments_of_one_wallet_with_different_nonces_all_settle_exactly(
    x402_db, node, dao, chat_url, upstream
):
    payer = new_payer(node)
    bodies = [CHAT, {**CHAT, "max_tokens": 80}, {**CHAT, "stream": True}]
    amounts = [int(agent.requirement(post(chat_url, body))["amount"]) for body in bodies]
    payments = [agent.pay_header(payer, agent.requirement(post(chat_url, body))) for body in bodies]
    before = usdc_of(node, dao)
    responses = concurrently(*[lambda b=b, p=p: post(chat_url, b, p) for b, p in zip(bodies, payments, strict=True)])
    assert [r.status_code for r in responses] == [200, 200, 200], [r.text for r in responses]
    assert usdc_of(node, dao) - before == sum(amounts)
    assert sorted(p.micros_credited for p in await payments_from(x402_db, payer.address)) == sorted(amounts)
    calls = await settled_calls(x402_db, payer.address)
    assert len(calls) == 3 and upstream.calls("chat/completions") == 3
    rows = await ledger_of(x402_db, payer.address)
    assert sorted(r.amount_micros for r in rows if r.reason == "onchain_payment") == sorted(amounts)
    assert sorted(-r.amount_micros for r in rows if r.reason == "llm_usage") == sorted(
        c.user_price_micros for c in calls
    )
    account = await find_account(x402_db, payer.address)
    async with x402_db.connect() as conn:
        balance, held = (
            await conn.execute(
                sa.text("SELECT balance_micros, held_micros FROM billing_accounts WHERE id = :a"), {"a": account.id}
            )
        ).one()
    assert (balance, held) == (sum(amounts) - sum(c.user_price_micros for c in calls), 0)
    await assert_books_balance(x402_db)


async def test_a_transfer_not_mined_in_time_is_503_and_the_same_payment_then_settles_once(
    x402_db, node, dao, chat_url, upstream
):
    payer = new_payer(node)
    accepted = agent.requirement(post(chat_url, CHAT))
    amount = int(accepted["amount"])
    payment = agent.pay_header(payer, accepted, validBefore=int(time.time()) + 300)
    before = usdc_of(node, dao)
    node.set_automine(False)
    try:
        first = post(chat_url, CHAT, payment)  # sent, then waits X402_MAX_TIMEOUT_SECONDS for a block
    finally:
        node.set_automine(True)
        node.mine()
    assert first.status_code == 503 and first.json()["error"] == "unexpected_settle_error", first.text
    sent = agent.decode(first.headers["payment-response"])["transaction"]
    assert await ledger_of(x402_db, payer.address) == [] and upstream.calls("chat/completions") == 0
    again = post(chat_url, CHAT, payment)  # the very same payment resumes the transfer it started
    assert again.status_code == 200 and agent.decode(again.headers["payment-response"])["transaction"] == sent
    await assert_one_payment_one_credit_one_call(x402_db, node, dao, payer, amount, before)
    third = post(chat_url, CHAT, payment)
    assert third.status_code == 402 and third.json()["error"] == "invalid_exact_evm_nonce_already_used"
