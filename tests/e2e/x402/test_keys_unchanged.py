"""x402 changes nothing for keys: with X402_ENABLED off a call without a key is 401 as always (a payment header
is ignored), and with it on a call with a key is billed to the key's account and moves no USDC."""

from __future__ import annotations

import pytest

from gateway import ledger
from gateway.accounts.keys import create_key
from gateway.accounts.wallets import get_or_create_account
from tests.conftest import random_wallet
from tests.e2e.x402 import agent
from tests.e2e.x402.agent import CHAT
from tests.e2e.x402.helpers import new_payer, post, usdc_of

pytestmark = pytest.mark.timeout(180)


async def test_x402_off_a_call_without_a_key_is_401_even_with_a_payment(proxy, node, upstream):
    url = f"{proxy.base_url}/chat/completions"
    accepted = {
        "scheme": "exact",
        "network": "eip155:8453",
        "amount": "1000",
        "asset": node.usdc.address,
        "payTo": "0x" + "11" * 20,
        "maxTimeoutSeconds": 60,
        "extra": {"name": "USD Coin", "version": "2"},
    }
    for payment in (None, agent.pay_header(new_payer(node), accepted)):
        response = post(url, CHAT, payment)
        assert response.status_code == 401 and response.json()["error"]["code"] == "invalid_api_key"
        assert "payment-required" not in response.headers
    assert upstream.calls("chat/completions") == 0


async def test_x402_on_a_call_with_a_key_is_billed_to_the_key_and_moves_no_usdc(x402_db, node, dao, chat_url):
    account = await get_or_create_account(x402_db, random_wallet())
    await ledger.post_entry(x402_db, account.id, 100_000, "admin_grant", f"x402-keys-{account.id}")
    key = await create_key(x402_db, account.id, "x402 test")
    payer = new_payer(node)
    payment = agent.pay_header(payer, agent.requirement(post(chat_url, CHAT)))
    before = usdc_of(node, dao)
    response = post(chat_url, CHAT, payment, key=key.raw_key)
    assert response.status_code == 200 and "payment-response" not in response.headers
    assert usdc_of(node, dao) == before
    assert (await ledger.get_balance(x402_db, account.id)).balance_micros < 100_000
