"""The settle spool: a call the provider served is billed even when the billing database is unreachable.

A settle (or release) that cannot reach the database is written to a local SQLite journal on the proxy's
host (`SPOOL_DIR`, one file shared by the host's proxy processes; WAL, `synchronous=FULL`, so an entry is
on disk before the call's response completes) and applied when the database answers again, by whichever
proxy process replays first (every process replays in the background, and once at start-up, so a process
killed with entries in its spool has them applied by its successor). Applying is idempotent on the request
id (`ledger.settle` / `ledger.release`), so a replay racing another, or a settle that did commit before
its connection dropped, changes nothing twice.

The journal is read and written on the event loop, not in a thread: an entry is a few hundred bytes and one
fsync, written only while the database is down, and the idle check is one stat() every few seconds. (The
first version used `asyncio.to_thread`; under uvloop, with streams in flight, the proxy worker crashed with a
segmentation fault within a few thousand streamed calls, `python -m bench.soak --streams`.)

The hold sweeper gives spooled settles time: it expires only holds past their TTL plus
`HOLD_SWEEP_GRACE_SECONDS`; if it wins anyway, the replayed settle still charges (from what is available).
An entry the ledger refuses for another reason than an outage is kept, marked failed, and logged at ERROR
for an operator (it is never retried in a loop, never dropped).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import sqlite3
import time
from pathlib import Path
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from gateway import ledger
from gateway.failures import INFRASTRUCTURE_ERRORS

log = logging.getLogger("gateway.spool")

SETTLE = "settle"
RELEASE = "release"


class SpoolUnavailable(RuntimeError):
    """The spool itself could not be written (disk full, folder not writable)."""


class Spool:
    def __init__(self, folder: Path) -> None:
        self.path = folder / "settles.sqlite3"
        self._ready = False

    def _connect(self) -> sqlite3.Connection:
        if not self._ready:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")  # fsync at every commit: an entry survives a crash
        if not self._ready:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS spooled (request_id TEXT PRIMARY KEY, kind TEXT NOT NULL, "
                "payload TEXT NOT NULL, spooled_at REAL NOT NULL, failed INTEGER NOT NULL DEFAULT 0, error TEXT)"
            )
            self._ready = True
        return conn

    def _put(self, kind: str, request_id: str, payload: dict[str, Any]) -> None:
        with contextlib.closing(self._connect()) as conn:
            # a settle replaces a spooled release of the same call (it happened after it); never the reverse
            conn.execute(
                "INSERT INTO spooled (request_id, kind, payload, spooled_at) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (request_id) DO UPDATE SET kind = excluded.kind, payload = excluded.payload "
                "WHERE excluded.kind = 'settle'",
                (request_id, kind, json.dumps(payload), time.time()),
            )

    async def put_settle(self, usage: ledger.Usage) -> None:
        await self._write(SETTLE, usage.request_id, dataclasses.asdict(usage))

    async def put_release(self, request_id: str) -> None:
        await self._write(RELEASE, request_id, {})

    async def _write(self, kind: str, request_id: str, payload: dict[str, Any]) -> None:
        try:
            self._put(kind, request_id, payload)
        except (OSError, sqlite3.Error) as exc:
            raise SpoolUnavailable(f"cannot write the settle spool {self.path}: {exc}") from exc
        log.warning("billing database unreachable: %s of request %s spooled to %s", kind, request_id, self.path)

    def _pending(self, limit: int) -> list[tuple[str, str, str]]:
        if not self.path.exists():
            return []
        with contextlib.closing(self._connect()) as conn:
            return conn.execute(
                "SELECT request_id, kind, payload FROM spooled WHERE failed = 0 ORDER BY spooled_at LIMIT ?", (limit,)
            ).fetchall()

    def _done(self, request_id: str, error: str | None) -> None:
        with contextlib.closing(self._connect()) as conn:
            if error is None:
                conn.execute("DELETE FROM spooled WHERE request_id = ?", (request_id,))
            else:
                conn.execute("UPDATE spooled SET failed = 1, error = ? WHERE request_id = ?", (error, request_id))

    async def replay(self, db: AsyncEngine) -> int:
        """Apply spooled entries until the spool is empty or the database fails again; how many were applied."""
        applied = 0
        while batch := self._pending(500):
            for request_id, kind, payload in batch:
                try:
                    if kind == SETTLE:
                        await ledger.settle(db, ledger.Usage(**json.loads(payload)))
                    else:
                        await ledger.release(db, request_id)
                except INFRASTRUCTURE_ERRORS:
                    return applied  # still down: try again later
                except Exception as exc:
                    log.exception(
                        "spooled %s of request %s refused by the ledger; kept in %s", kind, request_id, self.path
                    )
                    self._done(request_id, f"{type(exc).__name__}: {exc}")
                    continue
                self._done(request_id, None)
                applied += 1
        if applied:
            log.warning("applied %d spooled settles/releases from %s", applied, self.path)
        return applied

    async def replay_forever(self, db: AsyncEngine, interval_seconds: float) -> None:
        while True:
            try:
                await self.replay(db)
            except Exception:
                log.exception("settle spool replay failed")
            await asyncio.sleep(interval_seconds)
