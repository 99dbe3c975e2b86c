"""Test helpers for PostgreSQL: create and drop a database of the test run's own (trust auth on 127.0.0.1)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
from collections.abc import Iterator

import asyncpg

from gateway.db.migrate import upgrade

PG_ADMIN_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"


async def _admin(sql: str) -> None:
    conn = await asyncpg.connect(PG_ADMIN_DSN)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def create_database(name: str) -> None:
    asyncio.run(_admin(f'CREATE DATABASE "{name}"'))


def drop_database(name: str) -> None:
    asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@contextlib.contextmanager
def migrated_database(prefix: str = "gw_test") -> Iterator[str]:
    """A new PostgreSQL database migrated to head; yields its URL and drops it afterwards."""
    name = f"{prefix}_{os.getpid()}_{secrets.token_hex(3)}"
    create_database(name)
    try:
        url = f"postgresql+asyncpg://postgres@127.0.0.1:5432/{name}"
        upgrade(url)
        yield url
    finally:
        drop_database(name)
