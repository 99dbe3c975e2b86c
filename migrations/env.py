"""Alembic environment: runs migrations on the async engine named by `config.attributes["url"]` or settings."""

import asyncio

from alembic import context
from sqlalchemy.ext.asyncio import create_async_engine

import gateway.db.auth_schema
import gateway.db.ops_schema
import gateway.db.payments_schema
import gateway.db.x402_schema  # noqa: F401 - registers the x402 tables on the shared metadata
from gateway.config import get_settings
from gateway.db.schema import metadata

config = context.config


def _url() -> str:
    return config.attributes.get("url") or get_settings().effective_database_url


def _run(connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


async def _run_async() -> None:
    engine = create_async_engine(_url())
    try:
        async with engine.connect() as connection:
            await connection.run_sync(_run)
            await connection.commit()
    finally:
        await engine.dispose()


if context.is_offline_mode():
    raise SystemExit("offline migrations are not supported; run `gateway migrate`")
asyncio.run(_run_async())
