"""Rate limits (429 + Retry-After, then recovery), the error body everywhere, and the health probes."""

from __future__ import annotations

import asyncio

import pytest

from gateway.sidecar.app import create_app
from tests.integration.sidecar.conftest import client_for, running, sign_in


@pytest.mark.parametrize(
    ("setting", "method", "path", "body"),
    [
        ("rate_limit_nonce", "GET", "/api/v1/auth/nonce", None),
        ("rate_limit_verify", "POST", "/api/v1/auth/verify", {"message": "x", "signature": "0x00"}),
        ("rate_limit_key_create", "POST", "/api/v1/keys", {"label": "burst"}),
    ],
)
async def test_a_burst_gets_429_with_retry_after_then_recovers(make_settings, wallet, setting, method, path, body):
    async with running(create_app(make_settings(**{setting: "3 per 1 second"}))) as app, client_for(app) as client:
        if path == "/api/v1/keys":
            await sign_in(client, wallet)
        statuses = [(await client.request(method, path, json=body)).status_code for _ in range(3)]
        assert 429 not in statuses
        limited = await client.request(method, path, json=body)
        assert limited.status_code == 429 and limited.json()["error"]["code"] == "rate_limited"
        assert limited.headers["Retry-After"] == "1"
        await asyncio.sleep(1.05)
        assert (await client.request(method, path, json=body)).status_code != 429


async def test_key_creation_is_limited_per_account_too(make_settings, wallet):
    settings = make_settings(rate_limit_key_create="2 per 10 seconds")
    async with running(create_app(settings)) as app, client_for(app) as client:
        await sign_in(client, wallet)
        for _ in range(2):
            assert (await client.post("/api/v1/keys", json={})).status_code == 201
        async with client_for(app, peer="203.0.113.7") as elsewhere:  # the same account from another IP
            elsewhere.cookies = client.cookies
            limited = await elsewhere.post("/api/v1/keys", json={})
        assert limited.status_code == 429 and 1 <= int(limited.headers["Retry-After"]) <= 10


@pytest.mark.parametrize(
    ("method", "path", "status", "code"),
    [
        ("GET", "/nope", 404, "not_found"),
        ("PUT", "/api/v1/keys", 405, "method_not_allowed"),
        ("GET", "/api/v1/credits/ledger?limit=abc", 422, "invalid_request"),
        ("DELETE", "/api/v1/keys/abc", 422, "invalid_request"),
        ("DELETE", f"/api/v1/keys/{2**63}", 422, "invalid_request"),
        ("GET", "/api/v1/usage?cursor=-1", 422, "invalid_request"),
        ("GET", "/api/v1/usage?since=2024-02-30", 422, "invalid_request"),
    ],
)
async def test_errors_share_one_shape(client, wallet, method, path, status, code):
    await sign_in(client, wallet)
    response = await client.request(method, path)
    assert response.status_code == status, response.text
    assert response.json() == {"error": {"code": code, "message": response.json()["error"]["message"]}}
    assert response.json()["error"]["message"]


async def test_malformed_json_is_422(client):
    response = await client.post(
        "/api/v1/auth/verify", content=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 422 and response.json()["error"]["code"] == "invalid_request"


async def test_oversized_sign_in_fields_are_422(client):
    for body in ({"message": "x" * 4097, "signature": "0x00"}, {"message": "x", "signature": "0x" + "0" * 2002}):
        assert (await client.post("/api/v1/auth/verify", json=body)).status_code == 422


async def test_health_and_readiness(client):
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    assert (await client.get("/readyz")).json() == {"status": "ready", "database": "ok", "redis": "ok"}


async def test_not_ready_when_redis_is_unreachable(make_settings):
    async with running(create_app(make_settings(redis_url="redis://127.0.0.1:1/0"))) as app, client_for(app) as client:
        response = await client.get("/readyz")
        assert response.status_code == 503 and response.json()["error"] == {
            "code": "not_ready",
            "message": "redis is unreachable",
        }
        assert (await client.get("/healthz")).status_code == 200


async def test_openapi_documents_every_route_and_its_errors(client):
    document = (await client.get("/api/v1/openapi.json")).json()
    operations = {(m.upper(), p): op for p, item in document["paths"].items() for m, op in item.items()}
    expected = {
        ("GET", "/api/v1/auth/nonce"),
        ("POST", "/api/v1/auth/verify"),
        ("POST", "/api/v1/auth/logout"),
        ("GET", "/api/v1/auth/session"),
        ("GET", "/api/v1/keys"),
        ("POST", "/api/v1/keys"),
        ("DELETE", "/api/v1/keys/{key_id}"),
        ("GET", "/api/v1/credits/summary"),
        ("GET", "/api/v1/credits/ledger"),
        ("GET", "/api/v1/usage"),
        ("GET", "/healthz"),
        ("GET", "/readyz"),
    }
    assert expected <= set(operations)
    error_ref = {"$ref": "#/components/schemas/ErrorResponse"}
    for key, op in operations.items():
        if key[1].startswith("/api/"):
            assert op["responses"]["503"]["content"]["application/json"]["schema"] == error_ref, key
        if "422" in op["responses"]:
            assert op["responses"]["422"]["content"]["application/json"]["schema"] == error_ref, key
