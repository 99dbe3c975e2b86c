"""Database engines, tuned for PostgreSQL or SQLite: `create_engine(url)` makes one (a runtime's, which its
owner disposes: gateway/runtime.py); `get_engine(url)` shares one per process and URL among the one-shot
`gateway` commands, the tests and the benchmarks (`dispose_all` closes them).

SQLite (the embedded default) runs in WAL mode with a busy timeout, and every transaction starts with
`BEGIN IMMEDIATE` so that concurrent writers queue instead of failing on a lock upgrade; a read that says so
(`READ_ONLY`, as `read_once_more_after_disconnect` does for the key lookup) begins deferred and takes no
lock. Beside the async engine, a process may also open a synchronous one on the same file
(`get_sync_sqlite_engine`, the same settings): the ledger's writes run on it whole
(gateway/db/sqlite_writer.py).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import ConnectionPoolEntry

_engines: dict[str, AsyncEngine] = {}
READ_ONLY = "gateway_read_only"  # execution option of a connection that only reads (SQLite: no write lock)
# asyncpg's connect arguments, for the engine's pool and for the ledger's own (gateway.ledger.pg_connections)
PG_CONNECT_ARGS: dict[str, float] = {"timeout": 5, "command_timeout": 10}
_sync_engines: dict[str, sa.Engine] = {}


def get_engine(url: str) -> AsyncEngine:
    """The shared engine for `url` in this process (created on first use)."""
    engine = _engines.get(url)
    if engine is None:
        engine = _engines[url] = create_engine(url)
    return engine


def create_engine(url: str) -> AsyncEngine:
    """A new engine for `url`, its caller's to dispose."""
    if url.startswith("sqlite"):
        ensure_sqlite_folder(url)
        engine = create_async_engine(url, connect_args={"timeout": 30})
        _make_sqlite_serializable(engine.sync_engine)
        return engine
    # pool_size is how many connections a process keeps open (each is opened when first needed). Beyond
    # it, max_overflow connections are opened for a burst and closed again when returned, and opening one
    # (a new PostgreSQL backend process) costs far more CPU than the short statements it then runs: with
    # 10 kept, 16 concurrent hold/settle calls spent most of their time opening and closing connections.
    # At most 20 per process (was 30): PostgreSQL allows 100 clients by default, for every process.
    return create_async_engine(
        url,
        pool_size=16,
        max_overflow=4,
        pool_pre_ping=False,
        pool_recycle=1800,
        connect_args=PG_CONNECT_ARGS,
    )


def ensure_sqlite_folder(url: str) -> None:
    """Create the folder of a SQLite database file (the embedded default lives in $GATEWAY_HOME)."""
    db_path = sa.engine.make_url(url).database
    if url.startswith("sqlite") and db_path and db_path != ":memory:":
        Path(db_path).parent.mkdir(parents=True, exist_ok=True)


def get_sync_sqlite_engine(url: str, *, wait: bool = True) -> sa.Engine:
    """A synchronous engine (the standard library's sqlite3) on the SQLite file of `url`, shared in this process,
    with the async engine's settings: WAL, foreign keys, `BEGIN IMMEDIATE`. With `wait`, a busy database is
    waited for (busy timeout, as the async engine); without, a locked database fails at once (SQLITE_BUSY) and
    the connection never checkpoints the WAL itself (`PRAGMA wal_autocheckpoint=0`: the caller runs the
    checkpoints elsewhere), so that nothing run on it ever blocks: it is used on the event loop's thread."""
    sync_url = sa.engine.make_url(url).set(drivername="sqlite+pysqlite")
    key = f"{sync_url.render_as_string(hide_password=False)} wait={wait}"
    engine = _sync_engines.get(key)
    if engine is None:
        ensure_sqlite_folder(url)
        engine = sa.create_engine(sync_url, connect_args={"timeout": 30 if wait else 0, "check_same_thread": False})
        _make_sqlite_serializable(engine, busy_timeout_ms=30000 if wait else 0, autocheckpoint=wait)
        _sync_engines[key] = engine
    return engine


def _make_sqlite_serializable(engine: sa.Engine, busy_timeout_ms: int = 30000, autocheckpoint: bool = True) -> None:
    @sa.event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: DBAPIConnection, _record: ConnectionPoolEntry) -> None:
        dbapi_conn.isolation_level = None  # we emit BEGIN ourselves
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA synchronous=NORMAL")
        if not autocheckpoint:
            cur.execute("PRAGMA wal_autocheckpoint=0")
        cur.close()

    @sa.event.listens_for(engine, "begin")
    def _on_begin(conn: sa.Connection) -> None:
        # a read says so (READ_ONLY): a deferred BEGIN takes no lock (a WAL reader never waits for a writer)
        conn.exec_driver_sql("BEGIN" if conn.get_execution_options().get(READ_ONLY) else "BEGIN IMMEDIATE")


async def read_once_more_after_disconnect(
    db: AsyncEngine, query: Callable[[AsyncConnection], Awaitable[sa.CursorResult[Any]]]
) -> sa.Row[Any] | None:
    """The first row of a read, sent once more on a fresh connection if the pooled one was dead (the server
    restarted, or the network dropped it): SQLAlchemy invalidates the pool on the first such error, so the
    second try connects anew instead of failing a call for a connection nobody could have used."""
    try:
        async with db.connect() as conn:
            return (await query(await conn.execution_options(**{READ_ONLY: True}))).first()
    except sa.exc.DBAPIError as exc:
        if not exc.connection_invalidated:
            raise
    async with db.connect() as conn:
        return (await query(await conn.execution_options(**{READ_ONLY: True}))).first()


async def dispose_all() -> None:
    for engine in list(_engines.values()):
        await engine.dispose()
    _engines.clear()
    for sync_engine in list(_sync_engines.values()):
        sync_engine.dispose()
    _sync_engines.clear()
