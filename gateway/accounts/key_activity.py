"""When each of an account's keys was last used: its latest billed call in `llm_usage` (read-only).

Read from the usage rows the proxy already writes, so the hot path stores nothing more per call.
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.db.schema import as_utc, llm_usage


async def last_used_by_key(db: AsyncEngine, account_id: int) -> dict[int, datetime]:
    """key id -> the time of its latest billed call; keys never used are absent."""
    t = llm_usage
    query = (
        sa.select(t.c.key_id, sa.func.max(t.c.created_at).label("last_used"))
        .where(t.c.account_id == account_id, t.c.key_id.is_not(None))
        .group_by(t.c.key_id)
    )
    async with db.connect() as conn:
        rows = (await conn.execute(query)).all()
    return {row.key_id: as_utc(row.last_used) for row in rows}
