"""SQLite's locks (the embedded default): writers queue on BEGIN IMMEDIATE, while a read that says it only
reads (the key lookup on the proxy's path) takes no lock, so a writer holding the lock never delays it."""

from __future__ import annotations

import asyncio

import sqlalchemy as sa

from gateway.db.engine import dispose_all, get_engine, get_sync_sqlite_engine, read_once_more_after_disconnect
from gateway.db.migrate import upgrade


async def test_a_read_only_lookup_does_not_wait_for_a_writer_but_a_write_does(tmp_path):
    url = f"sqlite+aiosqlite:///{tmp_path / 'gateway.db'}"
    await asyncio.to_thread(upgrade, url)
    db = get_engine(url)
    writer = get_sync_sqlite_engine(url).connect()
    try:
        held = writer.begin()  # BEGIN IMMEDIATE (engine.py): another process's writer holds the write lock
        writer.exec_driver_sql("INSERT INTO users (wallet_address) VALUES ('0x" + "ab" * 20 + "')")
        row = await asyncio.wait_for(_count_users(db), timeout=2)
        assert row is not None and row[0] == 0  # the committed state, read at once
        write = asyncio.create_task(_insert_user(db, "0x" + "cd" * 20))
        await asyncio.sleep(0.5)
        assert not write.done()  # a write waits for the lock ...
        held.commit()
        await asyncio.wait_for(write, timeout=10)  # ... and gets it once the holder commits
        row = await _count_users(db)
        assert row is not None and row[0] == 2
    finally:
        writer.close()
        await dispose_all()


async def _count_users(db) -> sa.Row | None:
    return await read_once_more_after_disconnect(db, lambda conn: conn.execute(sa.text("SELECT count(*) FROM users")))


async def _insert_user(db, wallet: str) -> None:
    async with db.begin() as conn:
        await conn.execute(sa.text("INSERT INTO users (wallet_address) VALUES (:w)"), {"w": wallet})
