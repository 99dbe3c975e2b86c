"""SIWE sign-in end to end (PostgreSQL + Redis): the happy path, every refusal, sessions and logout."""

from __future__ import annotations

import asyncio
import secrets
from datetime import UTC, datetime, timedelta

import pytest
from eth_account import Account

from gateway.accounts.keys import resolve_key
from gateway.auth.nonces import NONCE_TTL
from tests.integration.sidecar.conftest import (
    DOMAIN,
    ORIGIN,
    client_for,
    new_nonce,
    row_counts,
    sign,
    sign_in,
    siwe_text,
)


async def test_first_sign_in_creates_account_default_key_and_session(client, app, db, wallet):
    body = await sign_in(client, wallet)

    assert body["wallet_address"] == wallet.address.lower()
    assert body["default_key"]["label"] == "default" and body["default_key"]["key"].startswith("sk-cg-")
    session = (await client.get("/api/v1/auth/session")).json()
    assert session == {k: body[k] for k in ("wallet_address", "account_id", "expires_at")}
    summary = (await client.get("/api/v1/credits/summary")).json()
    assert summary["balance_micros"] == 0 and summary["available_credits"] == "0" and summary["recent"] == []

    created = await client.post("/api/v1/keys", json={"label": "laptop"})
    assert created.status_code == 201, created.text
    keys = (await client.get("/api/v1/keys")).json()["data"]
    assert [k["label"] for k in keys] == ["default", "laptop"] and all("key" not in k for k in keys)
    owner = await resolve_key(db, app.state.services.key_cache, created.json()["key"])
    assert owner is not None and owner.account_id == body["account_id"] and owner.key_id == created.json()["id"]


async def test_second_sign_in_reuses_the_account_without_a_new_key(client, wallet, db):
    first = await sign_in(client, wallet)
    before = await row_counts(db)
    second = await sign_in(client, wallet)
    assert second["account_id"] == first["account_id"] and second["default_key"] is None
    after = await row_counts(db)
    assert after == {**before, "sessions": before["sessions"] + 1}


async def test_session_cookie_flags(client, wallet):
    text = siwe_text(wallet.address, await new_nonce(client))
    response = await client.post("/api/v1/auth/verify", json={"message": text, "signature": sign(wallet, text)})
    cookie = response.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=lax" in cookie and "secure" not in cookie  # served over http here
    assert response.headers["cache-control"] == "no-store"


async def test_session_cookie_is_secure_over_https(app, wallet):
    async with client_for(app, origin=f"https://{DOMAIN}") as client:
        await sign_in(client, wallet)
        assert next(iter(client.cookies.jar)).secure
        assert (await client.post("/api/v1/keys", json={"label": "tls"})).status_code == 201


# Each case: the error code expected, and how to build (message, signature) for `w` from a fresh nonce `n`.
REFUSALS = {
    "nonce never issued": ("nonce_invalid", lambda w, n: _signed(w, siwe_text(w.address, secrets.token_hex(16)))),
    "wrong domain": ("domain_mismatch", lambda w, n: _signed(w, siwe_text(w.address, n, domain="evil.example"))),
    "wrong URI origin": (
        "uri_mismatch",
        lambda w, n: _signed(w, siwe_text(w.address, n, uri="https://evil.example/a")),
    ),
    "our host as URI userinfo": (
        "uri_mismatch",
        lambda w, n: _signed(w, siwe_text(w.address, n, uri=f"{ORIGIN}@evil.example/")),
    ),
    "wrong chain id": ("chain_mismatch", lambda w, n: _signed(w, siwe_text(w.address, n, chain_id=1))),
    "expired message": ("message_expired", lambda w, n: _signed(w, siwe_text(w.address, n, expiration_time=_ago(1)))),
    "not yet valid": ("message_not_yet_valid", lambda w, n: _signed(w, siwe_text(w.address, n, not_before=_ago(-300)))),
    "future issued-at": ("issued_in_future", lambda w, n: _signed(w, siwe_text(w.address, n, issued_at=_ago(-300)))),
    "signature from another key": (
        "invalid_signature",
        lambda w, n: _signed(Account.create(), siwe_text(w.address, n)),
    ),
    "message edited after signing": ("invalid_signature", lambda w, n: _edited(w, n)),
    "address with a wrong EIP-55 checksum": (  # refused like `gateway ... --wallet` refuses it (test_cli_errors)
        "malformed_message",
        lambda w, n: _signed(w, siwe_text(w.address, n).replace(w.address, _miscased(w.address))),
    ),
    "not a SIWE message": (
        "malformed_message",
        lambda w, n: (f"{DOMAIN} wants you to sign in with your Ethereum account:\n{n}", "0x00"),
    ),
}


def _miscased(address: str) -> str:
    """The address with its first letter's case flipped: its EIP-55 checksum no longer matches."""
    at = next(i for i, c in enumerate(address) if i > 1 and c.isalpha())
    return address[:at] + address[at].swapcase() + address[at + 1 :]


def _ago(seconds: float) -> datetime:
    return datetime.now(UTC) - timedelta(seconds=seconds)


def _signed(signer, text: str) -> tuple[str, str]:
    return text, sign(signer, text)


def _edited(wallet, nonce: str) -> tuple[str, str]:
    text = siwe_text(wallet.address, nonce)
    return text.replace("Sign in to credit-gateway.", "Sign in to credit-gateway!"), sign(wallet, text)


@pytest.mark.parametrize("case", REFUSALS)
async def test_refused_sign_in_is_401_and_changes_nothing(case, client, db, wallet):
    code, build = REFUSALS[case]
    message, signature = build(wallet, await new_nonce(client))
    before = await row_counts(db)
    response = await client.post("/api/v1/auth/verify", json={"message": message, "signature": signature})
    assert response.status_code == 401, response.text
    assert response.json()["error"]["code"] == code and response.json()["error"]["message"]
    assert "set-cookie" not in response.headers
    assert await row_counts(db) == before


async def test_reused_nonce_is_refused(client, db, wallet):
    text = siwe_text(wallet.address, await new_nonce(client))
    body = {"message": text, "signature": sign(wallet, text)}
    assert (await client.post("/api/v1/auth/verify", json=body)).status_code == 200
    before = await row_counts(db)
    replay = await client.post("/api/v1/auth/verify", json=body)
    assert replay.status_code == 401 and replay.json()["error"]["code"] == "nonce_invalid"
    assert await row_counts(db) == before


async def test_expired_nonce_is_refused(client, app, db, wallet):
    issued = await app.state.services.nonces.issue(timedelta(milliseconds=50))
    await asyncio.sleep(0.2)
    text = siwe_text(wallet.address, issued.nonce)
    before = await row_counts(db)
    response = await client.post("/api/v1/auth/verify", json={"message": text, "signature": sign(wallet, text)})
    assert response.status_code == 401 and response.json()["error"]["code"] == "nonce_invalid"
    assert await row_counts(db) == before


async def test_a_refused_signature_leaves_the_nonce_usable(client, wallet):
    nonce = await new_nonce(client)
    text = siwe_text(wallet.address, nonce)
    refused = await client.post(
        "/api/v1/auth/verify", json={"message": text, "signature": sign(Account.create(), text)}
    )
    assert refused.status_code == 401
    ok = await client.post("/api/v1/auth/verify", json={"message": text, "signature": sign(wallet, text)})
    assert ok.status_code == 200


def test_nonce_lifetime_is_ten_minutes():
    assert timedelta(minutes=10) == NONCE_TTL


async def test_nonces_are_fresh_and_long(client):
    nonces = {await new_nonce(client) for _ in range(5)}
    assert len(nonces) == 5 and all(len(n) >= 16 and n.isalnum() for n in nonces)


async def test_logout_revokes_the_session_server_side(client, wallet):
    await sign_in(client, wallet)
    old_cookie = client.cookies["gw_session"]
    response = await client.post("/api/v1/auth/logout")
    assert response.status_code == 204
    client.cookies.set("gw_session", old_cookie)  # a copy of the cookie kept by an attacker or another tab
    assert (await client.get("/api/v1/auth/session")).status_code == 401
    assert (await client.get("/api/v1/keys")).status_code == 401
    assert (await client.post("/api/v1/auth/logout")).status_code == 401


async def test_without_a_session_account_routes_are_401(client):
    client.cookies.set("gw_session", "made-up")
    for path in (
        "/api/v1/auth/session",
        "/api/v1/keys",
        "/api/v1/credits/summary",
        "/api/v1/credits/ledger",
        "/api/v1/usage",
    ):
        response = await client.get(path)
        assert response.status_code == 401 and response.json()["error"]["code"] == "unauthenticated", path


async def test_verify_from_a_foreign_origin_is_403(client, wallet, db):
    text = siwe_text(wallet.address, await new_nonce(client))
    before = await row_counts(db)
    response = await client.post(
        "/api/v1/auth/verify",
        json={"message": text, "signature": sign(wallet, text)},
        headers={"Origin": "https://evil.example"},
    )
    assert response.status_code == 403 and await row_counts(db) == before


async def test_verify_without_origin_is_allowed_for_non_browser_clients(client, wallet):
    text = siwe_text(wallet.address, await new_nonce(client))
    del client.headers["Origin"]
    response = await client.post("/api/v1/auth/verify", json={"message": text, "signature": sign(wallet, text)})
    assert response.status_code == 200
    # the session it got still needs our Origin for writes (CSRF)
    assert (await client.post("/api/v1/keys", json={"label": "x"})).status_code == 403
