"""ERC-1271 sign-in: a SmartWallet on the local anvil signs in with its owner's signature, checked on chain."""

from __future__ import annotations

from eth_account import Account

from gateway.sidecar.app import create_app
from tests.integration.sidecar.conftest import client_for, new_nonce, row_counts, running, sign, siwe_text


async def test_smart_wallet_signs_in_with_its_owners_signature_only(make_settings, chain, smart_wallet_factory, db):
    owner, stranger = Account.create(), Account.create()
    wallet = smart_wallet_factory(owner)
    settings = make_settings(chain_rpc_url=chain.url, chain_id=8453)
    async with running(create_app(settings)) as app, client_for(app) as client:
        text = siwe_text(wallet.address, await new_nonce(client))
        before = await row_counts(db)
        refused = await client.post("/api/v1/auth/verify", json={"message": text, "signature": sign(stranger, text)})
        assert refused.status_code == 401 and refused.json()["error"]["code"] == "invalid_signature"
        assert await row_counts(db) == before

        accepted = await client.post("/api/v1/auth/verify", json={"message": text, "signature": sign(owner, text)})
        assert accepted.status_code == 200, accepted.text
        assert accepted.json()["wallet_address"] == wallet.address.lower()
        session = (await client.get("/api/v1/auth/session")).json()
        assert session["wallet_address"] == wallet.address.lower()


async def test_unreachable_chain_rpc_is_503_not_401(make_settings):
    owner = Account.create()
    contract_address = "0x" + "12" * 20  # the RPC is never reached, so any address does
    settings = make_settings(chain_rpc_url="http://127.0.0.1:9", chain_id=8453)
    async with running(create_app(settings)) as app, client_for(app) as client:
        text = siwe_text(contract_address, await new_nonce(client))
        response = await client.post("/api/v1/auth/verify", json={"message": text, "signature": sign(owner, text)})
        assert response.status_code == 503 and response.json()["error"]["code"] == "chain_unavailable"
