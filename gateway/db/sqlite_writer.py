"""SQLite's write transactions, each run whole and synchronously: on the event loop's thread when nobody
holds the locks, else in this process's writer thread.

Owns: the per-process writer of a SQLite file, its two synchronous connections (engine.py's
`get_sync_sqlite_engine`: one that never waits, used on the loop's thread; one that waits, used by the writer
thread), and the lock file that queues the writers of every process on that file.

Why: through aiosqlite, a transaction is BEGIN IMMEDIATE, then each statement an await that hops to
aiosqlite's thread and back through the (busy) event loop, so SQLite's write lock was held for many
milliseconds per transaction while the other LiteLLM worker slept in SQLite's busy handler (sleeps growing
to 100 ms): the embedded default's tail. A writer thread alone was not enough (each statement's return into
Python waits for the GIL while the lock is held), so `run(db, fn, *args)` first tries `fn(conn, *args)` right
on the loop's thread: a non-blocking `flock` of `<database>.write-lock`, BEGIN IMMEDIATE with a zero busy
timeout, fn's statements, COMMIT, all in C code for microseconds. When either lock is taken nothing has been
written: it yields to the loop and tries again, and after ~0.5 s hands the transaction to the writer thread,
which waits on the flock (the kernel wakes it as soon as the lock is released) and then on SQLite's busy
timeout. The loop itself never blocks on a lock: the holder may be an aiosqlite transaction on that same
loop. The flock only queues; SQLite's own lock still decides (a writer that does not take the flock, e.g.
the sidecar's key writes, is waited for as before). The loop's connection never checkpoints the WAL (that
would fsync on the loop); the writer thread runs a passive checkpoint every `_CHECKPOINT_EVERY` commits.

The writers (and their synchronous engines, engine.py's `_sync_engines`) are per process and file, not part of
a runtime (gateway/runtime.py), on purpose: every writer of a file in this process must queue behind the
same thread and lock, whichever runtime or engine it comes from; a forked child gets its own.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.db.engine import get_sync_sqlite_engine

T = TypeVar("T")


def serves(db: AsyncEngine) -> bool:
    """Whether `db`'s writes go through a writer thread: a SQLite file (an in-memory database is private to its
    connection, so a second connection would not see it)."""
    database = db.url.database
    return db.dialect.name == "sqlite" and bool(database) and database != ":memory:"


_BUSY = (5, 6)  # SQLITE_BUSY, SQLITE_LOCKED (primary codes)
_INLINE_TRIES = 500  # ~0.5 s, then the writer thread, which waits (for a writer holding the lock across awaits)
_CHECKPOINT_EVERY = 200  # inline commits (each a few pages; SQLite's own default is every 1000 WAL pages)


def _busy(exc: sa.exc.OperationalError) -> bool:
    return (getattr(exc.orig, "sqlite_errorcode", 0) & 0xFF) in _BUSY


class _Writer:
    """One SQLite file's writer in this process: a connection used on the event loop's thread that never waits,
    the thread and connection that do, and a lock-file descriptor for each (two descriptors: flock excludes
    them from each other as it excludes other processes)."""

    def __init__(self, url: str, database: str) -> None:
        self.inline_engine = get_sync_sqlite_engine(url, wait=False)
        self.engine = get_sync_sqlite_engine(url)
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite-writer")
        self.lock_path = Path(database + ".write-lock")
        self.inline_fd = self._open_lock()
        self.thread_fd = self._open_lock()
        self.inline_mutex = threading.Lock()  # one inline transaction at a time if several threads run loops
        self.inline_commits = 0

    def _open_lock(self) -> int:
        return os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o600)

    def try_inline(self, fn: Callable[..., T], args: tuple[object, ...]) -> tuple[bool, T | None]:
        """(True, result) if `fn` ran, (False, None) if the lock was taken (nothing written; try again)."""
        if not self.inline_mutex.acquire(blocking=False):
            return False, None
        try:
            try:
                fcntl.flock(self.inline_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return False, None
            try:
                with self.inline_engine.begin() as conn:
                    result = fn(conn, *args)
            except sa.exc.OperationalError as exc:  # a writer outside the flock holds SQLite's lock: rolled back
                if _busy(exc):
                    return False, None
                raise
            finally:
                fcntl.flock(self.inline_fd, fcntl.LOCK_UN)
            self.inline_commits += 1
            if self.inline_commits % _CHECKPOINT_EVERY == 0:  # the inline connection never checkpoints itself
                self.executor.submit(self.checkpoint)
            return True, result
        finally:
            self.inline_mutex.release()

    def call(self, fn: Callable[..., T], args: tuple[object, ...]) -> T:
        """`fn` in the writer thread: waits for the lock file, then for SQLite's lock (busy timeout)."""
        fcntl.flock(self.thread_fd, fcntl.LOCK_EX)
        try:
            with self.engine.begin() as conn:
                return fn(conn, *args)
        finally:
            fcntl.flock(self.thread_fd, fcntl.LOCK_UN)

    def checkpoint(self) -> None:
        """Copy the WAL's pages back into the database file, as far as readers allow (never blocks writers)."""
        with self.engine.connect() as conn:
            conn.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)")


_writers: dict[tuple[int, str], _Writer] = {}
_writers_lock = threading.Lock()


def _writer(db: AsyncEngine) -> _Writer:
    url = db.url.render_as_string(hide_password=False)
    key = (os.getpid(), url)  # a forked child gets a thread and connection of its own
    writer = _writers.get(key)
    if writer is None:
        with _writers_lock:
            writer = _writers.get(key)
            if writer is None:
                writer = _writers[key] = _Writer(url, str(db.url.database))
    return writer


async def run(db: AsyncEngine, fn: Callable[..., T], *args: object) -> T:
    """`fn(conn, *args)` in one transaction (BEGIN IMMEDIATE ... COMMIT, rolled back if it raises) on `db`'s
    file, on the loop's thread or else in this process's writer thread; its result or its exception."""
    writer = _writer(db)
    for attempt in range(_INLINE_TRIES):
        ran, result = writer.try_inline(fn, args)
        if ran:
            return result  # type: ignore[return-value]  # T itself may be Optional
        await asyncio.sleep(0 if attempt < 4 else 0.001)  # let the holder (maybe on this loop) finish
    return await asyncio.get_running_loop().run_in_executor(writer.executor, writer.call, fn, args)
