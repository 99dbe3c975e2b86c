"""The hold sweeper: voids holds whose settle was lost (still pending past their TTL plus
`HOLD_SWEEP_GRACE_SECONDS`) and reports each one, on a timer.

One loop, run alone by `gateway sweep` (a deployment's sweeper service) and inside `gateway up` (the embedded
default). Any number of sweepers may run at once, on any hosts: the expiry is a conditional write per hold
(`Ledger.expire_stale_holds` voids only a hold that is still pending), so each hold is expired by exactly
one of them and its amount goes back to the account once (tests/integration/ledger/test_sweepers.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime

from gateway import ledger
from gateway.config import Settings
from gateway.failures import is_transient
from gateway.jobs.low_balance import record_crossings

SWEEP_INTERVAL_SECONDS = 30.0


async def sweep_once(book: ledger.Ledger, settings: Settings, now: datetime | None = None) -> list[str]:
    """One pass: the request ids of the holds it expired; then the low-balance crossings since the last pass
    are recorded (off the request path). A pass that meets a dead pooled connection is tried once more
    (SQLAlchemy has discarded the pool by then, so the second try connects anew). `now`: the sweeper's
    clock (a test's, or bench.chaos's clock jump)."""
    grace = settings.hold_sweep_grace_seconds
    try:
        expired = await book.expire_stale_holds(now=now, grace_seconds=grace)
    except Exception as exc:
        if not is_transient(exc):
            raise
        expired = await book.expire_stale_holds(now=now, grace_seconds=grace)
    await record_crossings(book.db)
    return expired


async def sweep_forever(
    book: ledger.Ledger, settings: Settings, interval_seconds: float, report: Callable[[str], None]
) -> None:
    """Sweep now and then every `interval_seconds` until cancelled; `report` gets one line per pass that
    expired holds or failed. A database outage never stops the loop: the next pass tries again."""
    while True:
        try:
            expired = await sweep_once(book, settings)
        except Exception as exc:  # noqa: BLE001 - keep sweeping; the database may come back
            report(f"hold sweeper: {type(exc).__name__}: {str(exc)[:200]}; retrying in {interval_seconds:g} s")
        else:
            if expired:
                report(
                    f"hold sweeper: released {len(expired)} holds whose settle was lost: {', '.join(expired[:20])}"
                    + (" ..." if len(expired) > 20 else "")
                )
        await asyncio.sleep(interval_seconds)
