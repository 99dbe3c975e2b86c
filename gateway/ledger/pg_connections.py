"""The PostgreSQL connections of the ledger's one-statement path (postgres.py): plain asyncpg connections,
owned by the ledger that uses them (postgres.py's `OneStatement`, one per runtime), lent LIFO.

SQLAlchemy's pool lent them before, and its checkout and return (an AsyncConnection, a greenlet hop, the
pool's bookkeeping and reset) cost more of the proxy's CPU per call than asyncpg and the statement itself
(bench/RESULTS.md, issue 14). Here a checkout is a list pop, a return a list append: the connection is
returned only after a statement that completed (asyncpg leaves no transaction open after one autocommit
statement), and a connection whose statement failed on the wire or was cancelled is closed, never lent
again.

Each pool belongs to the event loop that opened its connections (tests run one loop per test: its ledger opens
a new pool in a new loop); closing the ledger, or disposing its engine, closes it. At most `size` connections
per pool: beyond that a statement waits its turn.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.db.engine import PG_CONNECT_ARGS

POOL_SIZE = 16  # per process, like the SQLAlchemy pool it replaces on this path
# what a connection that failed on the wire raises (the server went away, the network dropped, it hung)
WIRE_ERRORS = (TimeoutError, OSError, asyncpg.PostgresConnectionError, asyncpg.InterfaceError)


class Connections:
    def __init__(self, connect_kwargs: dict[str, Any], size: int = POOL_SIZE) -> None:
        self._connect_kwargs = connect_kwargs
        self._loop = asyncio.get_running_loop()
        self._idle: list[asyncpg.Connection] = []
        self._slots = asyncio.Semaphore(size)
        self._closed = False

    @contextlib.asynccontextmanager
    async def lend(self) -> AsyncIterator[asyncpg.Connection]:
        """A connection for one statement. It goes back to the pool after the statement completed or the
        server refused it (an error response leaves an autocommit connection idle); after anything else (the
        wire failed, the call was cancelled mid-statement) it is closed: its state is unknown. When the wire
        failed, the idle connections are closed too (as SQLAlchemy's pool does): they were opened before the
        failure, so the statement's retry gets a fresh connection instead of another dead one."""
        async with self._slots:
            conn = self._idle.pop() if self._idle else await self._connect()
            try:
                yield conn
            except asyncpg.PostgresError as exc:
                if isinstance(exc, asyncpg.PostgresConnectionError):
                    conn.terminate()
                    self._close_idle()
                else:
                    self._keep(conn)
                raise
            except BaseException as exc:
                conn.terminate()
                if isinstance(exc, WIRE_ERRORS):
                    self._close_idle()
                raise
            self._keep(conn)

    def _keep(self, conn: asyncpg.Connection) -> None:
        if not self._closed and not conn.is_closed():
            self._idle.append(conn)
        else:
            conn.terminate()

    async def _connect(self) -> asyncpg.Connection:
        """A new connection; failing to open one is an OperationalError, as from SQLAlchemy's pool (the
        statement is not retried: the server is unreachable, not one pooled connection stale)."""
        try:
            return await asyncpg.connect(**self._connect_kwargs)
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            raise sa.exc.OperationalError("connect", {}, exc) from exc

    def close(self) -> None:
        """Close every idle connection now, and each lent one when it comes back."""
        self._closed = True
        self._close_idle()

    def _close_idle(self) -> None:
        idle, self._idle = self._idle, []
        for conn in idle:
            conn.terminate()

    def serves_running_loop(self) -> bool:
        return self._loop is asyncio.get_running_loop() and not self._loop.is_closed()


def connect_args(db: AsyncEngine) -> dict[str, Any]:
    """asyncpg's arguments for a connection to `db`'s database, with the engine's own timeouts."""
    _, params = db.dialect.create_connect_args(db.url)
    return {**params, **PG_CONNECT_ARGS}
