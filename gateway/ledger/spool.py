"""The settle spool: a call the provider served is billed even when the billing database is unreachable.

A settle (or release) that cannot reach the database is written to a local SQLite journal on the proxy's
host (`SPOOL_DIR`, one file shared by the host's proxy processes; WAL, `synchronous=FULL`, so an entry is
on disk before the call's response completes) and applied when the database answers again, by whichever
proxy process replays first (every process replays in the background, and once at start-up, so a process
killed with entries in its spool has them applied by its successor). Applying is idempotent on the request
id (`Ledger.settle` / `Ledger.release`), so a replay racing another, or a settle that did commit before
its connection dropped, changes nothing twice.

The journal is read and written on the event loop, not in a thread: an entry is a few hundred bytes and one
fsync, written only while the database is down, and the idle check is one stat() every few seconds. (The
first version used `asyncio.to_thread`; under uvloop, with streams in flight, the proxy worker crashed with a
segmentation fault within a few thousand streamed calls, `python -m bench.soak --streams`.)

The hold sweeper gives spooled settles time: it expires only holds past their TTL plus
`HOLD_SWEEP_GRACE_SECONDS`; if it wins anyway, the replayed settle still charges (from what is available).
An entry the ledger refuses permanently (`gateway.failures.is_transient` is False: an integrity, data or
programming error) is set aside: kept in the journal marked failed with its reason, logged at ERROR with its
request id, counted (`gateway_ledger_refusals`), never retried and never in the way of the entries behind
it. A settle or release refused permanently on the request path is recorded the same way (`put_refused`),
never spooled. `gateway reconcile` lists every set-aside entry (`refused`).
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

from gateway import ledger
from gateway.failures import is_transient, refusal_reason
from gateway.observability import metrics

log = logging.getLogger("gateway.spool")

SETTLE = "settle"
RELEASE = "release"


class SpoolUnavailable(RuntimeError):
    """The spool itself could not be written (disk full, folder not writable)."""


@dataclasses.dataclass(frozen=True)
class RefusedEntry:
    """A settle or release the ledger refused permanently, set aside in the spool for an operator."""

    request_id: str
    kind: str
    payload: dict[str, Any]
    refused_at: float  # when it was spooled (or refused on the request path), Unix seconds
    reason: str

    @property
    def account_id(self) -> int | None:
        account = self.payload.get("account_id")
        return account if isinstance(account, int) else None


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

    def _applied(self, request_id: str) -> None:
        with contextlib.closing(self._connect()) as conn:
            conn.execute("DELETE FROM spooled WHERE request_id = ?", (request_id,))

    def set_aside(self, kind: str, request_id: str, exc: BaseException) -> None:
        """A spooled entry the ledger refused permanently: kept, marked failed, never replayed again."""
        reason = refusal_reason(exc)
        log.error(
            "spooled %s of request %s refused by the ledger (%s); set aside in %s", kind, request_id, reason, self.path
        )
        metrics.LEDGER_REFUSALS.labels(kind).inc()
        with contextlib.closing(self._connect()) as conn:
            conn.execute("UPDATE spooled SET failed = 1, error = ? WHERE request_id = ?", (reason, request_id))

    async def put_refused(self, kind: str, request_id: str, payload: dict[str, Any], exc: BaseException) -> None:
        """Record a settle or release the ledger refused permanently on the request path (for `gateway
        reconcile`; never replayed). The caller has logged and counted it; a spool that cannot be written
        raises SpoolUnavailable (the log line is then the only record)."""
        try:
            with contextlib.closing(self._connect()) as conn:
                conn.execute(
                    "INSERT OR REPLACE INTO spooled (request_id, kind, payload, spooled_at, failed, error) "
                    "VALUES (?, ?, ?, ?, 1, ?)",
                    (request_id, kind, json.dumps(payload), time.time(), refusal_reason(exc)),
                )
        except (OSError, sqlite3.Error) as err:
            raise SpoolUnavailable(f"cannot write the settle spool {self.path}: {err}") from err

    def refused(self) -> list[RefusedEntry]:
        """Every set-aside entry, the oldest first."""
        if not self.path.exists():
            return []
        with contextlib.closing(self._connect()) as conn:
            rows = conn.execute(
                "SELECT request_id, kind, payload, spooled_at, error FROM spooled WHERE failed = 1 ORDER BY spooled_at"
            ).fetchall()
        return [RefusedEntry(rid, kind, json.loads(payload), at, error or "") for rid, kind, payload, at, error in rows]

    async def replay(self, book: ledger.Ledger) -> int:
        """Apply spooled entries until the spool is empty or the database fails again; how many were applied."""
        applied = 0
        while batch := self._pending(500):
            for request_id, kind, payload in batch:
                try:
                    if kind == SETTLE:
                        await book.settle(ledger.Usage(**json.loads(payload)))
                    else:
                        await book.release(request_id)
                except Exception as exc:  # noqa: BLE001 - sorted by is_transient
                    if is_transient(exc):
                        return applied  # still down: try again later
                    self.set_aside(kind, request_id, exc)  # never retried, never blocks the entries behind it
                    continue
                self._applied(request_id)
                applied += 1
        if applied:
            log.warning("applied %d spooled settles/releases from %s", applied, self.path)
        return applied

    async def replay_forever(self, book: ledger.Ledger, interval_seconds: float) -> None:
        while True:
            try:
                await self.replay(book)
            except Exception:
                log.exception("settle spool replay failed")
            await asyncio.sleep(interval_seconds)
