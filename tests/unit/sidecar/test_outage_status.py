"""The sidecar answers 503 for an outage and 500 for a bug, by the one classification (gateway.failures).

Found by bench.chaos (seed 101): PostgreSQL dropping a connection mid-operation reaches the sidecar as a plain
SQLAlchemy DBAPIError (asyncpg's ConnectionDoesNotExistError has no SQLAlchemy class of its own), which its
list of outage classes missed: the page got 500 "internal error" for an outage.
"""

from __future__ import annotations

import sqlite3

import asyncpg
import httpx
import pytest
import sqlalchemy as sa
from fastapi import FastAPI

from gateway.sidecar import errors

OUTAGES = {
    "connection closed mid-operation": sa.exc.DBAPIError(
        "COMMIT", {}, asyncpg.ConnectionDoesNotExistError("connection was closed in the middle of operation")
    ),
    "admin shutdown": sa.exc.DBAPIError("SELECT 1", {}, asyncpg.AdminShutdownError("terminating connection")),
    "connection refused": ConnectionRefusedError(111, "refused"),
}
BUGS = {
    "unique violation": sa.exc.IntegrityError("INSERT", {}, asyncpg.UniqueViolationError("duplicate")),
    "sqlite no such table": sa.exc.OperationalError("SELECT", {}, sqlite3.OperationalError("no such table: users")),
    "a bug": ValueError("boom"),
}


def client_raising(exc: Exception) -> httpx.AsyncClient:
    app = FastAPI()
    errors.install(app)

    @app.get("/boom")
    async def boom() -> None:
        raise exc

    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app, raise_app_exceptions=False), base_url="http://t")


@pytest.mark.parametrize("exc", OUTAGES.values(), ids=OUTAGES.keys())
async def test_an_outage_is_503(exc):
    async with client_raising(exc) as client:
        answer = await client.get("/boom")
    assert answer.status_code == 503 and answer.json()["error"]["code"] == "unavailable"


@pytest.mark.parametrize("exc", BUGS.values(), ids=BUGS.keys())
async def test_a_bug_is_500(exc):
    async with client_raising(exc) as client:
        answer = await client.get("/boom")
    assert answer.status_code == 500 and answer.json()["error"]["code"] == "internal_error"
