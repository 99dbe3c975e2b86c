"""Top-level pytest config: a fresh PostgreSQL database per test run, migrated; the test Redis behind a
forwarder (to cut or hang it); shared fixture plugins."""

from __future__ import annotations

import contextlib
import os
import secrets
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from sqlalchemy.ext.asyncio import AsyncEngine

from devtools.forwarder import TcpForwarder
from devtools.pg import PG_ADMIN_DSN, migrated_database
from gateway import ledger
from gateway.accounts.wallets import get_or_create_account
from gateway.db.engine import dispose_all, get_engine

pytest_plugins = ["tests.fixtures.chain"]


@pytest.fixture(scope="session")
def pg_url() -> str:
    """A PostgreSQL database of this test run's own, migrated to head, dropped at the end."""
    with migrated_database() as url:
        yield url


@pytest.fixture(scope="session")
async def db(pg_url: str) -> AsyncEngine:
    engine = get_engine(pg_url)
    yield engine
    await dispose_all()


@contextlib.asynccontextmanager
async def ledger_on(db: AsyncEngine) -> AsyncIterator[ledger.Ledger]:
    """A ledger of the caller's own on `db` (as a runtime builds one), closed after (its connections)."""
    book = ledger.open_ledger(db)
    try:
        yield book
    finally:
        book.close()


@pytest.fixture
async def book(db: AsyncEngine) -> AsyncIterator[ledger.Ledger]:
    """The ledger on the test's `db` (hold, settle, release), closed after the test."""
    async with ledger_on(db) as opened:
        yield opened


@pytest.fixture
def redis_forwarder() -> Iterator[TcpForwarder]:
    """The test Redis (127.0.0.1:6379) behind a forwarder of this test's own: point a client at
    `redis://{redis_forwarder.netloc}/0`, then cut, hang or restore it (the real Redis is never touched)."""
    with TcpForwarder("127.0.0.1", 6379) as forwarder:
        yield forwarder


def random_wallet() -> str:
    return "0x" + secrets.token_hex(20)


@pytest.fixture
async def account(db: AsyncEngine):
    """A new, empty billing account for one test."""
    return await get_or_create_account(db, random_wallet())


def new_request_id() -> str:
    return f"test-{uuid.uuid4()}"


__all__ = ["PG_ADMIN_DSN", "new_request_id", "random_wallet"]
