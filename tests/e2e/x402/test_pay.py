"""x402 pay-per-call through the real proxy, on anvil and PostgreSQL: 402 -> sign -> retry -> 200, the money
on chain and in the ledger, plain and streamed, by EOAs and smart wallets."""

from __future__ import annotations

import re

import httpx
import pytest
from eth_account import Account
from web3 import Web3

from gateway.accounts.wallets import find_account
from gateway.config import REPO_ROOT
from gateway.jobs.reconcile import reconcile
from gateway.payments.chain import ChainRPC
from tests.e2e.x402 import agent
from tests.e2e.x402.agent import CHAT
from tests.e2e.x402.helpers import USDC, assert_paid_call, call_rows, new_payer, post, usdc_of

pytestmark = pytest.mark.timeout(180)
README = REPO_ROOT / "README.md"


def readme_client():
    """`call_paying_with_x402` exactly as the README's agents section prints it."""
    section = README.read_text().split("## For agents: pay per call with x402", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    namespace: dict = {}
    exec(compile(code, str(README), "exec"), namespace)
    return namespace["call_paying_with_x402"]


async def test_readme_client_pays_and_is_served_and_the_books_reconcile(
    x402_db, node, dao, chat_url, upstream, chain_settings
):
    payer = new_payer(node)
    before = usdc_of(node, dao)
    response = readme_client()(chat_url, CHAT, "0x" + bytes(payer.key).hex())
    amount = await assert_paid_call(x402_db, node, dao, payer.address, response, before)
    assert response.json()["choices"][0]["message"]["content"]
    assert usdc_of(node, payer.address) == 5 * USDC - amount
    assert upstream.calls("chat/completions") == 1
    async with ChainRPC(node.url) as rpc:
        report = await reconcile(x402_db, chain_settings, rpc)
    assert report.ok, report.mismatches
    assert report.chain_checked and report.credited_payments >= 1


async def test_402_is_the_hold_of_this_request_and_no_key_is_needed(chat_url, upstream):
    small = agent.requirement(post(chat_url, CHAT))
    big = agent.requirement(post(chat_url, {**CHAT, "max_tokens": 500}))
    unbounded = agent.requirement(post(chat_url, {k: v for k, v in CHAT.items() if k != "max_tokens"}))
    # gpt-4o-mini: $0.60 per 1M output tokens x markup 2: each output token held is 1.2 micros
    assert int(big["amount"]) - int(small["amount"]) == 450 * 6 // 5
    assert int(unbounded["amount"]) > int(big["amount"])  # no max_tokens: the model's whole output limit
    assert small["scheme"] == "exact"
    assert small["extra"] == {"name": "USD Coin", "version": "2", "assetTransferMethod": "eip3009"}
    assert upstream.calls("chat/completions") == 0


async def test_unpriced_model_and_bad_body_are_400_not_402(chat_url, upstream):
    unpriced = post(chat_url, {**CHAT, "model": "unpriced"})
    assert unpriced.status_code == 400 and unpriced.json()["error"]["code"] == "model_not_priced"
    unknown = post(chat_url, {**CHAT, "mock_response": "free"})
    assert unknown.status_code == 400 and unknown.json()["error"]["code"] == "unsupported_parameter"
    assert "payment-required" not in unpriced.headers and upstream.calls("chat/completions") == 0


async def test_streamed_call_is_paid_before_the_first_byte(x402_db, node, dao, chat_url, upstream):
    payer = new_payer(node)
    body = {**CHAT, "stream": True}
    accepted = agent.requirement(post(chat_url, body))
    before = usdc_of(node, dao)
    with httpx.stream(
        "POST", chat_url, json=body, timeout=60, headers={"PAYMENT-SIGNATURE": agent.pay_header(payer, accepted)}
    ) as stream:
        assert stream.status_code == 200
        assert agent.decode(stream.headers["payment-response"])["success"] is True  # with the headers, before data
        lines = [line for line in stream.iter_lines() if line.startswith("data: ")]
    assert lines[-1] == "data: [DONE]" and len(lines) > 3
    await assert_paid_call(x402_db, node, dao, payer.address, stream, before)
    account = await find_account(x402_db, payer.address)
    [usage], _ = await call_rows(x402_db, account.id)
    assert usage.streamed is True and upstream.calls("chat/completions") == 1


async def test_embeddings_are_paid_too(x402_db, node, dao, x402_proxy):
    url = f"{x402_proxy.base_url}/embeddings"
    body = {"model": "text-embedding-3-small", "input": ["hello", "world"]}
    payer = new_payer(node)
    before = usdc_of(node, dao)
    response = post(url, body, agent.pay_header(payer, agent.requirement(post(url, body))))
    await assert_paid_call(x402_db, node, dao, payer.address, response, before)


async def test_deployed_smart_wallet_pays_through_erc1271(x402_db, node, dao, chat_url):
    owner = Account.create()
    wallet = node.deploy("SmartWallet", owner.address)
    node.usdc_mint(wallet.address, USDC)
    accepted = agent.requirement(post(chat_url, CHAT))
    auth = agent.authorization(wallet.address, accepted)
    before = usdc_of(node, dao)
    response = post(chat_url, CHAT, agent.header(accepted, auth, agent.owner_signature(owner, accepted, auth)))
    await assert_paid_call(x402_db, node, dao, wallet.address, response, before)


async def test_counterfactual_wallet_is_deployed_by_a_trusted_factory_and_pays(x402_db, node, dao, chat_url, factory):
    owner = Account.create()
    salt = b"\x01" * 32
    address = factory.functions.addressOf(owner.address, salt).call()
    assert node.w3.eth.get_code(address) == b""
    node.usdc_mint(address, USDC)
    accepted = agent.requirement(post(chat_url, CHAT))
    auth = agent.authorization(address, accepted)
    deploy = bytes.fromhex(factory.functions.deploy(owner.address, salt)._encode_transaction_data()[2:])
    signature = agent.wrap_6492(factory.address, deploy, agent.owner_signature(owner, accepted, auth))
    before = usdc_of(node, dao)
    response = post(chat_url, CHAT, agent.header(accepted, auth, signature))
    await assert_paid_call(x402_db, node, dao, address, response, before)
    assert node.w3.eth.get_code(Web3.to_checksum_address(address)) != b""


async def test_the_other_billed_apis_ask_for_their_own_hold_and_a_paid_messages_call_is_served(
    x402_db, node, dao, x402_proxy, upstream
):
    root = x402_proxy.base_url.removesuffix("/v1")
    hi = [{"role": "user", "content": "hi"}]
    calls = {  # path: (body, its output bound, user micros per output token held)
        "/v1/messages": ({"model": "claude-haiku-4-5", "max_tokens": 50, "messages": hi}, "max_tokens", 10),
        "/v1/responses": ({"model": "gpt-4o-mini", "input": "hi", "max_output_tokens": 50}, "max_output_tokens", 1.2),
        "/v1/completions": ({"model": "gpt-3.5-turbo-instruct", "prompt": "hi", "max_tokens": 50}, "max_tokens", 4),
    }
    for path, (body, bound, per_token) in calls.items():
        small = agent.requirement(post(root + path, body))
        big = agent.requirement(post(root + path, {**body, bound: 550}))
        assert int(big["amount"]) - int(small["amount"]) == 500 * per_token, path
    assert sum(n for p, n in upstream.calls().items() if p != "/v1/models") == 0
    payer = new_payer(node)
    body = calls["/v1/messages"][0]
    accepted = agent.requirement(post(root + "/v1/messages", body))
    before = usdc_of(node, dao)
    response = post(root + "/v1/messages", body, agent.pay_header(payer, accepted))
    assert response.json()["content"][0]["text"]
    await assert_paid_call(x402_db, node, dao, payer.address, response, before)
