"""The embedded default: SQLite file, no Redis (nonces in `siwe_nonces`, rate limits in memory)."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from gateway.accounts.keys import resolve_key
from gateway.auth.nonces import DbNonceStore
from gateway.db.engine import get_engine
from gateway.db.migrate import upgrade
from gateway.sidecar.app import create_app
from tests.integration.sidecar.conftest import client_for, new_nonce, row_counts, running, sign, sign_in, siwe_text


async def test_sign_in_and_keys_on_sqlite_without_redis(make_settings, tmp_path, wallet):
    url = f"sqlite+aiosqlite:///{tmp_path / 'gateway.db'}"
    upgrade(url)
    settings = make_settings(database_url=url, redis_url=None)
    async with running(create_app(settings)) as app, client_for(app) as client:
        assert isinstance(app.state.services.nonces, DbNonceStore)
        me = await sign_in(client, wallet)
        assert me["default_key"]["key"]
        assert (await client.get("/api/v1/credits/summary")).json()["available_credits"] == "0"
        created = await client.post("/api/v1/keys", json={"label": "embedded"})
        assert created.status_code == 201
        assert [k["label"] for k in (await client.get("/api/v1/keys")).json()["data"]] == ["default", "embedded"]
        owner = await resolve_key(get_engine(url), app.state.services.key_cache, created.json()["key"])
        assert owner is not None and owner.account_id == me["account_id"]
        assert (await client.get("/readyz")).json()["redis"] == "not configured"

        text = siwe_text(wallet.address, await new_nonce(client))
        body = {"message": text, "signature": sign(wallet, text)}
        assert (await client.post("/api/v1/auth/verify", json=body)).status_code == 200
        before = await row_counts(get_engine(url))
        replay = await client.post("/api/v1/auth/verify", json=body)
        assert replay.status_code == 401 and replay.json()["error"]["code"] == "nonce_invalid"
        assert await row_counts(get_engine(url)) == before


async def test_table_nonces_expire_and_are_single_use(tmp_path):
    url = f"sqlite+aiosqlite:///{tmp_path / 'gateway.db'}"
    upgrade(url)
    store = DbNonceStore(get_engine(url))
    expiring = await store.issue(timedelta(milliseconds=50))
    kept = await store.issue()
    await asyncio.sleep(0.1)
    assert not await store.is_live(expiring.nonce) and not await store.consume(expiring.nonce)
    assert await store.is_live(kept.nonce)
    assert await store.consume(kept.nonce) and not await store.consume(kept.nonce)
