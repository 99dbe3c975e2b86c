"""Every x402 refusal through the real proxy: the x402 reason in PAYMENT-REQUIRED (and the body), and nothing
moved: no USDC left the payer, nothing was credited, no account was charged, the provider was not called."""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from eth_account import Account
from web3 import Web3
from web3.contract import Contract

from devtools.chain.anvil import Anvil
from tests.e2e.x402 import agent
from tests.e2e.x402.agent import CHAT
from tests.e2e.x402.helpers import USDC, ledger_of, new_payer, payments_from, post, usdc_of

pytestmark = pytest.mark.timeout(180)


@dataclass
class Case:
    node: Anvil
    accepted: dict[str, Any]
    factory: Contract
    untrusted_factory: Contract

    def eoa(self, usdc: int = USDC):
        return new_payer(self.node, usdc)

    def counterfactual(self, factory: Contract) -> tuple[Any, str, bytes]:
        owner = Account.create()
        salt = secrets.token_bytes(32)
        address = factory.functions.addressOf(owner.address, salt).call()
        self.node.usdc_mint(address, USDC)
        deploy = bytes.fromhex(factory.functions.deploy(owner.address, salt)._encode_transaction_data()[2:])
        return owner, address, deploy


Build = Callable[[Case], tuple[str, str]]  # -> (payer address, PAYMENT-SIGNATURE)


def signed_by(case: Case, signer_of: str = "payer", chain_id: int | None = None, **fields: Any) -> tuple[str, str]:
    payer = case.eoa()
    signer = payer if signer_of == "payer" else Account.create()
    auth = agent.authorization(payer.address, case.accepted, **fields)
    return payer.address, agent.header(case.accepted, auth, agent.eoa_signature(signer, case.accepted, auth, chain_id))


def accepted_changed(case: Case, **overrides: Any) -> tuple[str, str]:
    payer = case.eoa()
    auth = agent.authorization(payer.address, case.accepted)
    return payer.address, agent.header(
        case.accepted, auth, agent.eoa_signature(payer, case.accepted, auth), **overrides
    )


def raw_payload(case: Case, document: dict[str, Any]) -> tuple[str, str]:
    return case.eoa().address, base64.b64encode(json.dumps(document).encode()).decode()


def eoa_wrapped_in_6492(case: Case) -> tuple[str, str]:
    """x402 PR #1265: an EOA's address with an ERC-6492 wrapper around a garbage inner signature."""
    payer = case.eoa()
    auth = agent.authorization(payer.address, case.accepted)
    calldata = bytes.fromhex(case.factory.functions.deploy(payer.address, b"\0" * 32)._encode_transaction_data()[2:])
    forged = agent.wrap_6492(case.factory.address, calldata, secrets.token_bytes(65))
    return payer.address, agent.header(case.accepted, auth, forged)


def smart_wallet_signed_by_a_stranger(case: Case) -> tuple[str, str]:
    wallet = case.node.deploy("SmartWallet", Account.create().address)
    case.node.usdc_mint(wallet.address, USDC)
    auth = agent.authorization(wallet.address, case.accepted)
    return wallet.address, agent.header(
        case.accepted, auth, agent.owner_signature(Account.create(), case.accepted, auth)
    )


def counterfactual_with_garbage_inner(case: Case) -> tuple[str, str]:
    _, address, deploy = case.counterfactual(case.factory)
    auth = agent.authorization(address, case.accepted)
    return address, agent.header(
        case.accepted, auth, agent.wrap_6492(case.factory.address, deploy, secrets.token_bytes(65))
    )


def counterfactual_of_an_untrusted_factory(case: Case) -> tuple[str, str]:
    owner, address, deploy = case.counterfactual(case.untrusted_factory)
    auth = agent.authorization(address, case.accepted)
    inner = agent.owner_signature(owner, case.accepted, auth)
    return address, agent.header(case.accepted, auth, agent.wrap_6492(case.untrusted_factory.address, deploy, inner))


def nonce_used_outside(case: Case) -> tuple[str, str]:
    """The authorization was submitted on chain by someone else before it reached the gateway."""
    payer = case.eoa()
    auth = agent.authorization(payer.address, case.accepted)
    signature = agent.eoa_signature(payer, case.accepted, auth)
    v, r, s = signature[64], signature[:32], signature[32:64]
    case.node.transact(
        case.node.usdc.functions.transferWithAuthorization(
            auth["from"],
            Web3.to_checksum_address(auth["to"]),
            auth["value"],
            auth["validAfter"],
            auth["validBefore"],
            bytes.fromhex(auth["nonce"][2:]),
            v,
            r,
            s,
        )
    )
    return payer.address, agent.header(case.accepted, auth, signature)


def broken_6492_wrapper(case: Case) -> tuple[str, str]:
    payer = case.eoa()
    auth = agent.authorization(payer.address, case.accepted)
    return payer.address, agent.header(case.accepted, auth, secrets.token_bytes(40) + agent.ERC6492_MAGIC)


def insufficient_usdc(case: Case) -> tuple[str, str]:
    payer = case.eoa(int(case.accepted["amount"]) - 1)
    return payer.address, agent.pay_header(payer, case.accepted)


CASES: dict[str, tuple[Build, int, str]] = {
    "signed by another key": (lambda c: signed_by(c, "stranger"), 402, "invalid_exact_evm_payload_signature"),
    "signed for another chain": (lambda c: signed_by(c, chain_id=1), 402, "invalid_exact_evm_payload_signature"),
    "EOA wrapped in ERC-6492 (PR #1265)": (eoa_wrapped_in_6492, 402, "invalid_exact_evm_payload_signature"),
    "smart wallet, not the owner": (smart_wallet_signed_by_a_stranger, 402, "invalid_exact_evm_payload_signature"),
    "counterfactual, garbage inner": (counterfactual_with_garbage_inner, 402, "invalid_exact_evm_payload_signature"),
    "counterfactual, untrusted factory": (counterfactual_of_an_untrusted_factory, 402, "eip6492_factory_not_allowed"),
    "wrong chain": (lambda c: accepted_changed(c, network="eip155:1"), 402, "invalid_network"),
    "wrong asset": (lambda c: accepted_changed(c, asset="0x" + "ab" * 20), 402, "invalid_payment_requirements"),
    "wrong payTo": (lambda c: accepted_changed(c, payTo="0x" + "cd" * 20), 402, "invalid_payment_requirements"),
    "pays someone else": (
        lambda c: signed_by(c, to="0x" + "cd" * 20),
        402,
        "invalid_exact_evm_payload_recipient_mismatch",
    ),
    "amount too low": (
        lambda c: signed_by(c, value=int(c.accepted["amount"]) - 1),
        402,
        "invalid_exact_evm_payload_authorization_value_mismatch",
    ),
    "expired": (
        lambda c: signed_by(c, validBefore=int(time.time()) - 1),
        402,
        "invalid_exact_evm_payload_authorization_valid_before",
    ),
    "expires too soon to settle": (
        lambda c: signed_by(c, validBefore=int(time.time()) + 3),
        402,
        "invalid_exact_evm_payload_authorization_valid_before",
    ),
    "not yet valid": (
        lambda c: signed_by(c, validAfter=int(time.time()) + 120),
        402,
        "invalid_exact_evm_payload_authorization_valid_after",
    ),
    "nonce used on chain already": (nonce_used_outside, 402, "invalid_exact_evm_nonce_already_used"),
    "insufficient USDC": (insufficient_usdc, 402, "insufficient_funds"),
    "more than MAX_TOPUP_USD": (
        lambda c: signed_by(c, value=10_001 * USDC),
        402,
        "invalid_exact_evm_payload_authorization_value_mismatch",
    ),
    "broken ERC-6492 wrapper": (broken_6492_wrapper, 402, "invalid_exact_evm_payload_signature"),
    "not base64 JSON": (lambda c: (c.eoa().address, "not-a-payment!"), 400, "invalid_payload"),
    "x402 version 1": (lambda c: raw_payload(c, {"x402Version": 1, "scheme": "exact"}), 400, "invalid_x402_version"),
    "unknown field": (
        lambda c: raw_payload(c, {"x402Version": 2, "accepted": {}, "payload": {}, "tip": 1}),
        400,
        "invalid_payload",
    ),
}


async def assert_nothing_moved(
    x402_db, node: Anvil, dao: str, payer: str, dao_before: int, payer_before: int, upstream
) -> None:
    assert await ledger_of(x402_db, payer) == [] and await payments_from(x402_db, payer) == []
    assert usdc_of(node, dao) == dao_before and usdc_of(node, payer) == payer_before
    assert upstream.calls("chat/completions") == 0


def assert_refused(response: httpx.Response, status: int, reason: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    document = agent.decode(response.headers["payment-required"])
    assert document == response.json() and document["error"] == reason, document
    assert document["message"] and document["accepts"][0]["scheme"] == "exact"
    return document


@pytest.mark.parametrize("name", list(CASES))
async def test_refused_and_nothing_moved(name, x402_db, node, dao, chat_url, factory, untrusted_factory, upstream):
    build, status, reason = CASES[name]
    case = Case(node, agent.requirement(post(chat_url, CHAT)), factory, untrusted_factory)
    payer, payment = build(case)
    dao_before, payer_before = usdc_of(node, dao), usdc_of(node, payer)
    assert_refused(post(chat_url, CHAT, payment), status, reason)
    if name == "nonce used on chain already":  # its transfer moved before the gateway saw it; nothing was credited
        assert await ledger_of(x402_db, payer) == [] and upstream.calls("chat/completions") == 0
        return
    await assert_nothing_moved(x402_db, node, dao, payer, dao_before, payer_before, upstream)


async def test_transfer_that_reverts_when_mined_is_refused_and_credits_nothing(x402_db, node, dao, chat_url, upstream):
    """The payer moves its USDC away in the block that mines the settlement (ordered first by its higher tip)."""
    payer = new_payer(node, USDC)
    accepted = agent.requirement(post(chat_url, CHAT))
    payment = agent.pay_header(payer, accepted)
    dao_before = usdc_of(node, dao)
    node.set_automine(False)
    result: dict[str, httpx.Response] = {}
    try:
        request = threading.Thread(target=lambda: result.update(r=post(chat_url, CHAT, payment)))
        request.start()
        deadline = time.monotonic() + 30
        while int(node.rpc("txpool_status")["pending"], 16) < 1:
            assert time.monotonic() < deadline, "the settlement was never sent"
            await asyncio.sleep(0.05)
        node.set_balance(payer.address, 10**18)
        fn = node.usdc.functions.transfer(Web3.to_checksum_address("0x" + "ee" * 20), USDC)
        node.send(
            {
                "to": node.usdc.address,
                "data": fn._encode_transaction_data(),
                "gas": 100_000,
                "maxPriorityFeePerGas": 50 * 10**9,
                "maxFeePerGas": 100 * 10**9,
            },
            payer,
            wait=False,
        )
        node.mine()
    finally:
        node.set_automine(True)
    request.join(60)
    document = assert_refused(result["r"], 402, "invalid_transaction_state")
    settlement = agent.decode(result["r"].headers["payment-response"])
    assert settlement["success"] is False and settlement["errorReason"] == "invalid_transaction_state"
    assert node.w3.eth.get_transaction_receipt(settlement["transaction"])["status"] == 0
    assert "reverted" in document["message"]
    assert await ledger_of(x402_db, payer.address) == [] and usdc_of(node, dao) == dao_before
    assert upstream.calls("chat/completions") == 0


async def test_chain_rpc_down_is_503_and_charges_nothing(x402_db, node, dao, chat_url, rpc_link, upstream):
    payer = new_payer(node)
    payment = agent.pay_header(payer, agent.requirement(post(chat_url, CHAT)))
    dao_before = usdc_of(node, dao)
    rpc_link.cut()
    try:
        response = post(chat_url, CHAT, payment)
    finally:
        rpc_link.restore()
    assert_refused(response, 503, "unexpected_verify_error")
    await assert_nothing_moved(x402_db, node, dao, payer.address, dao_before, 5 * USDC, upstream)
    assert post(chat_url, CHAT, payment).status_code == 200  # the same payment, once the chain is back


async def test_empty_gas_wallet_is_503_logged_at_error_and_charges_nothing(
    x402_db, node, dao, chat_url, gas_wallet, x402_proxy, upstream
):
    payer = new_payer(node)
    payment = agent.pay_header(payer, agent.requirement(post(chat_url, CHAT)))
    dao_before = usdc_of(node, dao)
    funds = node.w3.eth.get_balance(gas_wallet.address)
    node.set_balance(gas_wallet.address, 0)
    try:
        response = post(chat_url, CHAT, payment)
    finally:
        node.set_balance(gas_wallet.address, funds)
    document = assert_refused(response, 503, "unexpected_settle_error")
    assert "gas" in document["message"]
    await assert_nothing_moved(x402_db, node, dao, payer.address, dao_before, 5 * USDC, upstream)
    assert f"x402 GAS WALLET EMPTY: {gas_wallet.address}" in x402_proxy.log_path.read_text()  # level: test_gas_wallet


async def test_a_frozen_payers_call_is_refused_before_any_usdc_moves(x402_db, node, dao, chat_url, upstream):
    from gateway.accounts.wallets import get_or_create_account, set_frozen

    payer = new_payer(node)
    account = await get_or_create_account(x402_db, payer.address)
    await set_frozen(x402_db, account.id, True)
    accepted = agent.requirement(post(chat_url, CHAT))
    auth = agent.authorization(payer.address, accepted)
    refused = post(chat_url, CHAT, payment=agent.header(accepted, auth, agent.eoa_signature(payer, accepted, auth)))
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "account_frozen"
    assert usdc_of(node, payer.address) == USDC * 5 and await payments_from(x402_db, payer.address) == []
    assert upstream.calls("chat/completions") == 0
