"""`is_transient`: outages (retry, spool, 503) apart from refusals (never retried), across the drivers."""

from __future__ import annotations

import sqlite3

import asyncpg
import pytest
import sqlalchemy as sa
from redis import exceptions as redis_errors

from gateway.failures import is_transient


def sqlite_error(*statements: str, timeout: float = 0) -> sqlite3.Error:
    """What SQLite itself raises for the last statement (a real error, with its SQLite code)."""
    conn = sqlite3.connect(":memory:", timeout=timeout)
    try:
        for statement in statements:
            conn.execute(statement)
    except sqlite3.Error as exc:
        return exc
    finally:
        conn.close()
    raise AssertionError("no error")


def locked_sqlite(tmp_path) -> sqlite3.Error:
    path = tmp_path / "locked.db"
    writer = sqlite3.connect(path, isolation_level=None)
    writer.execute("CREATE TABLE t (x)")
    writer.execute("BEGIN IMMEDIATE")
    try:
        sqlite3.connect(path, timeout=0).execute("BEGIN IMMEDIATE")
    except sqlite3.Error as exc:
        return exc
    finally:
        writer.close()
    raise AssertionError("not locked")


def wrapped(orig: BaseException, cls: type[sa.exc.DBAPIError] = sa.exc.DBAPIError, **kw: bool) -> sa.exc.DBAPIError:
    return cls("SELECT 1", {}, orig, **kw)


TRANSIENT = {
    "connection refused": ConnectionRefusedError(111, "refused"),
    "timeout": TimeoutError(),
    "pool timeout": sa.exc.TimeoutError("QueuePool limit"),
    "wire failure wrapped": wrapped(ConnectionResetError(), sa.exc.OperationalError),
    "invalidated connection": wrapped(Exception("x"), connection_invalidated=True),
    "admin shutdown (plain DBAPIError)": wrapped(asyncpg.AdminShutdownError("terminating connection")),
    "cannot connect now": asyncpg.CannotConnectNowError("starting up"),
    "too many connections": wrapped(asyncpg.TooManyConnectionsError("too many")),
    "statement timeout": wrapped(asyncpg.QueryCanceledError("canceling statement")),
    "serialization failure": wrapped(asyncpg.SerializationError("could not serialize")),
    "deadlock": wrapped(asyncpg.DeadlockDetectedError("deadlock")),
    "connection does not exist": wrapped(asyncpg.ConnectionDoesNotExistError("closed")),
    "asyncpg interface error": wrapped(asyncpg.InterfaceError("connection is closed"), sa.exc.InterfaceError),
    "read-only standby": wrapped(asyncpg.ReadOnlySQLTransactionError("read-only")),
    "redis down": redis_errors.ConnectionError("refused"),
    "redis timeout": redis_errors.TimeoutError(),
    "redis loading": redis_errors.BusyLoadingError(),
}
PERMANENT = {
    "unique violation": wrapped(asyncpg.UniqueViolationError("dup"), sa.exc.IntegrityError),
    "data error (plain DBAPIError)": wrapped(asyncpg.NumericValueOutOfRangeError("out of range")),
    "client-side out of int64 range": wrapped(asyncpg.DataError("value out of int64 range")),
    "undefined table": wrapped(asyncpg.UndefinedTableError("no such relation"), sa.exc.ProgrammingError),
    "raised by a trigger": wrapped(asyncpg.InvalidParameterValueError("poisoned")),
    "sqlite integrity": wrapped(
        sqlite_error("CREATE TABLE t (x UNIQUE)", "INSERT INTO t VALUES (1)", "INSERT INTO t VALUES (1)"),
        sa.exc.IntegrityError,
    ),
    "sqlite integer overflow": wrapped(sqlite_error("SELECT abs(-9223372036854775807 - 1)"), sa.exc.OperationalError),
    "sqlite no such table": wrapped(sqlite_error("SELECT * FROM missing"), sa.exc.OperationalError),
    "python overflow": OverflowError("int too large"),
    "a bug": ValueError("user price below provider cost"),
    "redis wrong type": redis_errors.ResponseError("WRONGTYPE"),
}


@pytest.mark.parametrize("exc", TRANSIENT.values(), ids=TRANSIENT.keys())
def test_outages_are_transient(exc):
    assert is_transient(exc)


@pytest.mark.parametrize("exc", PERMANENT.values(), ids=PERMANENT.keys())
def test_refusals_are_permanent(exc):
    assert not is_transient(exc)


def test_a_locked_sqlite_database_is_transient(tmp_path):
    exc = locked_sqlite(tmp_path)
    assert is_transient(exc) and is_transient(wrapped(exc, sa.exc.OperationalError))
