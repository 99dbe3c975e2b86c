"""Which failures are transient (our infrastructure is down or busy: fail closed with 503, spool, retry) and
which are permanent (the database refused this write: retrying it can only fail again).

`is_transient` is the one classification, used by the request path (auth, guard, hold, settle, release), the
settle spool's replay and the hold sweeper:

- transient: the connection was lost, refused or timed out (OSError, TimeoutError, a driver's interface
  error, a connection SQLAlchemy invalidated), the server is shutting down, restarting, overloaded or
  read-only after a failover, a lock or a serialization conflict (PostgreSQL SQLSTATE classes 08, 28, 3D,
  40, 53, 57, 58 and codes 55P03, 25006: each depends on the deployment's state, never on the write
  itself), SQLite busy, locked or unable to do its I/O, Redis unreachable or loading;
- permanent: everything else, above all integrity, data and programming errors (SQLSTATE 23, 22, 42, ...).
  A permanent refusal is never spooled and never blocks the writes behind it: it is logged with its
  request id, counted (`gateway_ledger_refusals`), set aside and reported by `gateway reconcile`.

SQLAlchemy's own classes cannot tell the two apart: asyncpg's refusals that SQLAlchemy does not map (a data
error, an admin shutdown) are all plain `DBAPIError`, and the ledger's own asyncpg path raises
`DBAPIError` around any server error. So the driver's error is read (`.orig`, its SQLSTATE or SQLite code).
"""

from __future__ import annotations

import sqlite3

import asyncpg
from redis import exceptions as redis_errors
from sqlalchemy import exc as sa_errors

# SQLSTATE classes and codes of a refusal that depends on the server's state, not on the statement
TRANSIENT_SQLSTATE_CLASSES = frozenset({"08", "28", "3D", "40", "53", "57", "58"})
TRANSIENT_SQLSTATES = frozenset({"55P03", "25006"})  # lock not available; read-only (a standby after failover)
TRANSIENT_SQLITE_CODES = ("SQLITE_BUSY", "SQLITE_LOCKED", "SQLITE_IOERR", "SQLITE_FULL", "SQLITE_CANTOPEN")
TRANSIENT_REDIS_ERRORS = (
    redis_errors.ConnectionError,
    redis_errors.TimeoutError,
    redis_errors.BusyLoadingError,
    redis_errors.ReadOnlyError,
    redis_errors.TryAgainError,
    redis_errors.MasterDownError,
    redis_errors.ClusterDownError,
)


def is_transient(exc: BaseException) -> bool:
    """True if `exc` means the infrastructure is unreachable or busy (retry later); False if the database
    (or the code) refused the operation itself (retrying cannot help)."""
    if isinstance(exc, sa_errors.DBAPIError):
        if exc.connection_invalidated:
            return True
        return _driver_transient(exc.orig) if exc.orig is not None else False
    if isinstance(exc, sa_errors.TimeoutError):  # SQLAlchemy's pool had no connection to lend in time
        return True
    if isinstance(exc, redis_errors.RedisError):
        return isinstance(exc, TRANSIENT_REDIS_ERRORS)
    return _driver_transient(exc)


def _driver_transient(err: BaseException, depth: int = 0) -> bool:
    if isinstance(err, OSError | TimeoutError):  # ConnectionError, asyncio.TimeoutError and socket errors included
        return True
    sqlstate = getattr(err, "sqlstate", None)  # asyncpg's errors and SQLAlchemy's adapters of them
    if isinstance(sqlstate, str) and sqlstate:
        return sqlstate[:2] in TRANSIENT_SQLSTATE_CLASSES or sqlstate in TRANSIENT_SQLSTATES
    if isinstance(err, sqlite3.Error):
        name = getattr(err, "sqlite_errorname", "") or ""
        return name.startswith(TRANSIENT_SQLITE_CODES) or "database is locked" in str(err)
    if isinstance(err, asyncpg.InterfaceError):  # the connection is closed, or was lost mid-operation
        return True
    cause = err.__cause__  # SQLAlchemy's adapter of a driver error that carries no SQLSTATE of its own
    return cause is not None and depth < 3 and _driver_transient(cause, depth + 1)


def refusal_reason(exc: BaseException) -> str:
    """One line naming a refusal for a log or a report: the exception's class and its message's first line."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:300] if text else ''}"


class ChainUnavailable(RuntimeError):
    """The chain RPC failed, timed out, answered malformed data or serves another chain: fail closed (503)."""
