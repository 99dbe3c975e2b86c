"""Migrations and the SQLAlchemy schema agree, on PostgreSQL and on the embedded SQLite default."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.ext.asyncio import create_async_engine

import gateway.db.auth_schema
import gateway.db.ops_schema
import gateway.db.payments_schema
import gateway.db.x402_schema  # noqa: F401 - registers its tables on the shared metadata
from gateway.db.migrate import upgrade
from gateway.db.schema import metadata


async def _diff(url: str) -> list:
    engine = create_async_engine(url)
    try:
        async with engine.connect() as conn:
            return await conn.run_sync(lambda sync: compare_metadata(MigrationContext.configure(sync), metadata))
    finally:
        await engine.dispose()


async def test_postgres_schema_matches_models(pg_url):
    assert await _diff(pg_url) == []


@pytest.mark.parametrize("twice", [False, True])
async def test_sqlite_migrates_from_scratch_and_matches_models(tmp_path, twice):
    url = f"sqlite+aiosqlite:///{tmp_path / 'nested' / 'gateway.db'}"
    upgrade(url)
    if twice:
        upgrade(url)  # idempotent: `gateway up` migrates on every start
    assert await _diff(url) == []
