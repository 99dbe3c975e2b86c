"""Top-level pytest config: a fresh PostgreSQL database per test run, migrated; shared fixture plugins."""

from __future__ import annotations

import os
import secrets
import uuid

import pytest

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from sqlalchemy.ext.asyncio import AsyncEngine  # noqa: E402

from gateway.accounts import get_or_create_account  # noqa: E402
from gateway.db.engine import dispose_all, get_engine  # noqa: E402
from tests.pg import PG_ADMIN_DSN, migrated_database  # noqa: E402

pytest_plugins = ["tests.chain.fixtures"]


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


def random_wallet() -> str:
    return "0x" + secrets.token_hex(20)


@pytest.fixture
async def account(db: AsyncEngine):
    """A new, empty billing account for one test."""
    return await get_or_create_account(db, random_wallet())


def new_request_id() -> str:
    return f"test-{uuid.uuid4()}"


__all__ = ["PG_ADMIN_DSN", "random_wallet", "new_request_id"]
