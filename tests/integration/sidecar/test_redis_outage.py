"""The sidecar while Redis is cut or hung (the real Redis behind devtools/forwarder.py): sign-in answers 503 in
our error shape (nonces have no weaker stand-in), rate limits hold per process, keys and sessions keep
working from the database, and everything is back on Redis after it returns.
"""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from gateway.accounts.keys import resolve_key
from gateway.sidecar.app import create_app
from gateway.sidecar.deps import SESSION_COOKIE
from tests.integration.sidecar.conftest import client_for, new_nonce, running, sign, sign_in, siwe_text

BACKOFF = 0.5  # REDIS_BACKOFF_SECONDS in these tests
AUTH_UNAVAILABLE = {
    "error": {
        "code": "auth_unavailable",
        "message": "sign-in is unavailable: the session store (nonces) cannot be reached; retry shortly",
    }
}


@pytest.fixture
def outage_settings(make_settings, redis_forwarder):
    """Settings for apps whose Redis is behind the test's forwarder."""

    def make(**overrides: object):
        return make_settings(
            redis_url=f"redis://{redis_forwarder.netloc}/0", redis_backoff_seconds=BACKOFF, **overrides
        )

    return make


@pytest.mark.parametrize("outage", ["cut", "hang"])
async def test_sign_in_answers_503_while_redis_is_down_and_the_nonce_survives(
    outage_settings, redis_forwarder, wallet, outage
):
    async with running(create_app(outage_settings())) as app, client_for(app) as client:
        text = siwe_text(wallet.address, await new_nonce(client))  # issued while Redis is up
        body = {"message": text, "signature": sign(wallet, text)}

        getattr(redis_forwarder, outage)()
        started = time.monotonic()
        for response in (await client.get("/api/v1/auth/nonce"), await client.post("/api/v1/auth/verify", json=body)):
            assert response.status_code == 503 and response.json() == AUTH_UNAVAILABLE
        assert time.monotonic() - started < 0.5  # a hung Redis costs one timeout, then the link skips it
        assert SESSION_COOKIE not in client.cookies

        redis_forwarder.restore()
        await asyncio.sleep(BACKOFF)
        signed_in = await client.post("/api/v1/auth/verify", json=body)  # the nonce was neither lost nor used
        assert signed_in.status_code == 200, signed_in.text
        assert (await client.get("/api/v1/auth/session")).json()["wallet_address"] == wallet.address.lower()
        assert (await client.post("/api/v1/auth/verify", json=body)).json()["error"]["code"] == "nonce_invalid"


async def test_rate_limits_count_per_process_while_redis_is_cut_and_are_shared_again_after(
    outage_settings, redis_forwarder, wallet, db
):
    settings = outage_settings(rate_limit_key_create="2 per 60 seconds")
    peer = "198.51.100.23"  # this test's own rate-limit windows
    async with (
        running(create_app(settings)) as first,
        running(create_app(settings)) as second,  # two processes
        client_for(first, peer=peer) as one,
        client_for(second, peer=peer) as other,
    ):
        me = await sign_in(one, wallet)
        other.cookies = one.cookies

        async def create_keys(client: httpx.AsyncClient, count: int) -> list[int]:
            return [(await client.post("/api/v1/keys", json={})).status_code for _ in range(count)]

        redis_forwarder.cut()
        assert await create_keys(one, 3) == [201, 201, 429]  # the limit holds, counted in this process...
        assert await create_keys(other, 1) == [201]  # ...and apart in that one
        revoked = await one.delete(f"/api/v1/keys/{me['default_key']['id']}")  # keys and sessions: the database
        assert revoked.status_code == 200 and revoked.json()["active"] is False
        assert await resolve_key(db, first.state.services.key_cache, me["default_key"]["key"]) is None

        redis_forwarder.restore()
        await asyncio.sleep(BACKOFF)
        assert await create_keys(one, 2) == [201, 201]  # counted in Redis again (its window was empty)...
        assert await create_keys(other, 1) == [429]  # ...and shared: that process's own count would allow it
        assert (await other.get("/api/v1/auth/nonce")).status_code == 200
