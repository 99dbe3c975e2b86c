"""The gateway's x402 against the client agents use: the PyPI `x402` SDK (its httpx transport and exact-EVM
scheme) reads our 402, signs an EIP-3009 authorization into PAYMENT-SIGNATURE, and reads our
PAYMENT-RESPONSE; the call is served and paid once."""

from __future__ import annotations

import pytest
from x402 import x402Client
from x402.http import decode_payment_required_header, decode_payment_response_header
from x402.http.clients import x402HttpxClient
from x402.mechanisms.evm.exact import register_exact_evm_client

from tests.e2e.x402.agent import CHAT
from tests.e2e.x402.helpers import assert_paid_call, new_payer, post, usdc_of

pytestmark = pytest.mark.timeout(180)


def test_the_sdk_reads_our_402(chat_url):
    required = decode_payment_required_header(post(chat_url, CHAT).headers["payment-required"])
    [accepted] = required.accepts
    assert (required.x402_version, accepted.scheme, accepted.network) == (2, "exact", "eip155:8453")
    assert accepted.extra["assetTransferMethod"] == "eip3009"


async def test_the_sdk_pays_for_a_call_and_reads_the_settlement(x402_db, node, dao, chat_url, upstream):
    payer = new_payer(node)
    client = register_exact_evm_client(x402Client(), payer)
    # the tests' USDC is not Base's (the SDK's default asset): allow it, capped as an agent would cap it
    client.set_spend_controls(
        {
            "allowed_assets": [
                {"network": "eip155:8453", "asset": node.usdc.address, "max_amount_per_payment": "1000000"}
            ]
        }
    )
    before = usdc_of(node, dao)
    async with x402HttpxClient(client, timeout=60) as http:
        response = await http.post(chat_url, json=CHAT)
    amount = await assert_paid_call(x402_db, node, dao, payer.address, response, before)
    settled = decode_payment_response_header(response.headers["payment-response"])
    assert settled.success and settled.payer == payer.address.lower() and int(settled.amount) == amount
    assert settled.network == "eip155:8453" and settled.transaction.startswith("0x")
    assert response.json()["choices"][0]["message"]["content"]
    assert upstream.calls("chat/completions") == 1
