"""The health of the books, for operators: open holds (how many, the oldest), holds past their TTL still
open, holds the sweeper expired whose call was never settled (lost settles: what `gateway reconcile` lists),
the settle spool on this host (when the proxies share this process's SPOOL_DIR, as under `gateway up`), and
the last reconcile an operator ran (from the audit trail).
"""

from __future__ import annotations

import asyncio
import sqlite3
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.db.schema import as_utc, credit_holds, llm_usage
from gateway.ledger.types import HoldStatus
from gateway.ops.audit import Action, audit_page

SPOOL_FILE = "settles.sqlite3"  # gateway.ledger.spool.Spool's journal


def _spool_depth(folder: Path) -> dict[str, Any] | None:
    """Entries waiting in this host's spool (and those kept as failed); None when there is no spool here."""
    path = folder / SPOOL_FILE
    if not path.exists():
        return None
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5) as conn:
        pending, failed = conn.execute(
            "SELECT coalesce(sum(failed = 0), 0), coalesce(sum(failed = 1), 0) FROM spooled"
        ).fetchone()
    return {"path": str(path), "pending": int(pending), "failed": int(failed)}


async def books(db: AsyncEngine, spool_dir: Path, now: datetime | None = None) -> dict[str, Any]:
    now = now or datetime.now(UTC)
    h = credit_holds
    pending = h.c.status == HoldStatus.PENDING.value
    lost = sa.and_(
        h.c.status == HoldStatus.EXPIRED.value,
        ~sa.exists().where(llm_usage.c.request_id == h.c.request_id),
    )
    async with db.connect() as conn:
        open_row = (
            await conn.execute(
                sa.select(
                    sa.func.count(), sa.func.min(h.c.created_at), sa.func.coalesce(sa.func.sum(h.c.amount_micros), 0)
                ).where(pending)
            )
        ).one()
        past_ttl = (await conn.execute(sa.select(sa.func.count()).where(pending, h.c.expires_at < now))).scalar_one()
        lost_row = (
            await conn.execute(
                sa.select(sa.func.count(), sa.func.coalesce(sa.func.sum(h.c.amount_micros), 0)).where(lost)
            )
        ).one()
    oldest = as_utc(open_row[1]) if open_row[1] else None
    last = await audit_page(db, limit=1, action=Action.RECONCILE)
    return {
        "holds_open": int(open_row[0]),
        "holds_open_micros": int(open_row[2]),
        "oldest_open_hold_at": oldest,
        "oldest_open_hold_age_seconds": int((now - oldest).total_seconds()) if oldest else None,
        "holds_open_past_ttl": int(past_ttl),
        "holds_expired_unsettled": int(lost_row[0]),
        "holds_expired_unsettled_micros": int(lost_row[1]),
        "spool": await asyncio.to_thread(_spool_depth, spool_dir),
        "last_reconcile": asdict(last[0]) if last else None,
    }
