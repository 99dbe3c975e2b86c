"""Fixtures for the sidecar tests: settings on the run's PostgreSQL + a namespaced Redis, in-process
clients (httpx over ASGI, lifespan run), SIWE message building and signing, and row counts.

Every Redis key a run writes (nonces, rate limits) sits under a per-run prefix, so concurrent runs on
the shared Redis never see each other's nonces or rate-limit windows.
"""

from __future__ import annotations

import secrets
import socket
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from datetime import UTC, datetime, timedelta

import httpx
import pytest
import redis
import sqlalchemy as sa
import uvicorn
from eth_account import Account
from eth_account.messages import encode_defunct
from eth_account.signers.local import LocalAccount
from fastapi import FastAPI
from siwe import ISO8601Datetime, SiweMessage
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.config import Settings
from gateway.sidecar.app import create_app, uvicorn_config

DOMAIN = "localhost:8000"
ORIGIN = f"http://{DOMAIN}"
REDIS_URL = "redis://127.0.0.1:6379/0"
COUNTED_TABLES = ("users", "billing_accounts", "virtual_keys", "sessions")


@pytest.fixture(scope="session")
def redis_prefix() -> Iterator[str]:
    """This run's Redis namespace; its keys are deleted at the end."""
    prefix = f"gwtest:{secrets.token_hex(6)}"
    yield prefix
    with redis.Redis.from_url(REDIS_URL) as client:
        for key in client.scan_iter(match=f"{prefix}:*"):
            client.delete(key)


@pytest.fixture(scope="session")
def make_settings(pg_url: str, redis_prefix: str) -> Callable[..., Settings]:
    """Settings for a test app: the run's database and Redis, generous rate limits, overridable."""

    def make(**overrides: object) -> Settings:
        values: dict[str, object] = {
            "database_url": pg_url,
            "redis_url": REDIS_URL,
            "sidecar_redis_prefix": redis_prefix,
            "siwe_domain": DOMAIN,
            "chain_id": 8453,
            "chain_rpc_url": None,
            "rate_limit_nonce": "1000/minute",
            "rate_limit_verify": "1000/minute",
            "rate_limit_key_create": "1000/minute",
        }
        values.update(overrides)
        return Settings(_env_file=None, **values)

    return make


@asynccontextmanager
async def running(app: FastAPI) -> AsyncIterator[FastAPI]:
    """Run the app's lifespan (httpx's ASGI transport does not)."""
    async with app.router.lifespan_context(app):
        yield app


def client_for(app: FastAPI, peer: str = "127.0.0.1", origin: str = ORIGIN) -> httpx.AsyncClient:
    """A browser-like client of `app` at `origin`, from IP `peer`: its own cookie jar, Origin on every request."""
    transport = httpx.ASGITransport(app=app, client=(peer, 50000))
    return httpx.AsyncClient(transport=transport, base_url=origin, headers={"Origin": origin})


@pytest.fixture
async def app(make_settings) -> AsyncIterator[FastAPI]:
    async with running(create_app(make_settings())) as started:
        yield started


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with client_for(app) as c:
        yield c


@pytest.fixture
def wallet() -> LocalAccount:
    return Account.create()


def siwe_text(address: str, nonce: str, **fields: object) -> str:
    """An EIP-4361 message for our domain; any field can be overridden (datetimes are formatted)."""
    now = datetime.now(UTC)
    values: dict[str, object] = {
        "domain": DOMAIN,
        "address": address,
        "statement": "Sign in to credit-gateway.",
        "uri": f"{ORIGIN}/",
        "version": "1",
        "chain_id": 8453,
        "nonce": nonce,
        "issued_at": now,
        "expiration_time": now + timedelta(minutes=5),
    }
    values.update(fields)
    for name, value in values.items():
        if isinstance(value, datetime):
            values[name] = ISO8601Datetime.from_datetime(value)
    return SiweMessage(**values).prepare_message()


def sign(signer: LocalAccount, text: str) -> str:
    return signer.sign_message(encode_defunct(text=text)).signature.to_0x_hex()


async def new_nonce(client: httpx.AsyncClient) -> str:
    response = await client.get("/api/v1/auth/nonce")
    assert response.status_code == 200, response.text
    return response.json()["nonce"]


async def sign_in(client: httpx.AsyncClient, signer: LocalAccount, address: str | None = None) -> dict:
    """Nonce -> message -> signature -> verify; the client keeps the session cookie. Returns the body."""
    text = siwe_text(address or signer.address, await new_nonce(client))
    response = await client.post("/api/v1/auth/verify", json={"message": text, "signature": sign(signer, text)})
    assert response.status_code == 200, response.text
    return response.json()


async def row_counts(db: AsyncEngine) -> dict[str, int]:
    async with db.connect() as conn:
        return {t: (await conn.execute(sa.text(f"SELECT count(*) FROM {t}"))).scalar_one() for t in COUNTED_TABLES}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def served(settings: Settings) -> Iterator[str]:
    """The sidecar under uvicorn, as deployed (proxy headers and all), in a background thread; its base URL."""
    server = uvicorn.Server(uvicorn_config(settings))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the sidecar did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{settings.sidecar_port}"
    finally:
        server.should_exit = True
        thread.join(10)
