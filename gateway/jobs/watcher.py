"""The chain watcher: follows USDC Transfer logs to the DAO wallet and credits them with no confirm call.

Each run scans from the persisted cursor up to the confirmed head (`head - MIN_CONFIRMATIONS + 1`) in
ranges of WATCHER_BATCH_BLOCKS blocks with eth_getLogs. Per range: every transfer is accepted (credited
when the sender has an account, else kept `unclaimed` until that wallet signs in); recorded payments in
the range that the logs do not confirm, and pending ones below it, are re-checked by receipt (a vanished
one becomes `reorged`, reversed if it was credited); only then does the cursor move to the range's end,
with that block's hash. Killing the watcher anywhere is safe: the range is scanned again from the
cursor and crediting is idempotent.

Reorgs: a range counts only if its end block's hash is the same before and after eth_getLogs. Each run
first compares the cursor block's hash with the stored one; if it changed (a reorg deeper than
MIN_CONFIRMATIONS), recorded payments are re-checked from the newest down to the first whose block is
still canonical (a block hash commits to all its ancestors), and the cursor rewinds to that block (or
to WATCHER_START_BLOCK, or genesis, if none is) so that re-included transfers are found again.

After each run it sets the `gateway_watcher_head_lag_blocks` gauge (head minus cursor).

Run it as `gateway watch [--once]` (gateway/cli/payments.py draws its progress bar and sets up logging).

It is a job: this module owns the scan (the cursor, the reorg rewind, the head-lag gauge and the loop); the
payment use cases it runs on what it finds (accepting a transfer, re-checking a payment, claiming for known
senders) are gateway/payments/service.py's, the same ones the sidecar's confirm runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.accounts.wallets import find_account
from gateway.config import Settings
from gateway.db.engine import dispose_all, get_engine
from gateway.db.payments_schema import PaymentStatus, chain_cursor, payments
from gateway.db.schema import insert_for
from gateway.observability.metrics import WATCHER_HEAD_LAG
from gateway.payments.chain import ChainRPC, Transfer
from gateway.payments.service import (
    Payment,
    accept_transfer,
    check_chain_id,
    claim_known_senders,
    recheck_payment,
    require_configured,
)

log = logging.getLogger("gateway.watcher")

_PROGRESS_MIN_RANGES = 5  # show a progress bar for catch-up scans of at least this many ranges

# `progress(total_blocks)` opens a progress display and yields `advance(blocks)`
ProgressBar = Callable[[int], AbstractContextManager[Callable[[int], None]]]


@dataclass
class ScanReport:
    scanned_to: int | None = None  # the cursor after this run (None: nothing scanned)
    rewound_to: int | None = None  # set when a reorg below the cursor made the run rewind
    payments: Counter[str] = field(default_factory=Counter)  # resulting status -> payments touched


class Watcher:
    def __init__(
        self, db: AsyncEngine, rpc: ChainRPC, settings: Settings, *, progress: ProgressBar | None = None
    ) -> None:
        dao = require_configured(settings).dao_wallet
        self.db, self.rpc, self.settings = db, rpc, settings
        self.usdc = settings.usdc_address.lower()
        self.dao = dao.lower()
        self.name = f"usdc-transfers:{settings.chain_id}:{self.usdc}:{self.dao}"
        self.progress = progress

    async def run_once(self) -> ScanReport:
        """Scan up to the confirmed head as it is now, then credit unclaimed payments of known senders."""
        await check_chain_id(self.rpc, self.settings)
        head = await self.rpc.block_number()
        safe = head - max(self.settings.min_confirmations, 1) + 1
        report = ScanReport()
        last = await self._last_processed(safe, head, report)
        if last is not None:
            batch = self.settings.watcher_batch_blocks
            long_scan = self.progress is not None and safe - last >= _PROGRESS_MIN_RANGES * batch
            bar = self.progress(safe - last) if self.progress is not None and long_scan else _no_progress()
            with bar as advance:
                while last < safe:
                    end = min(last + batch, safe)
                    if not await self._scan(last + 1, end, head, report):
                        break
                    advance(end - last)
                    last = end
            WATCHER_HEAD_LAG.set(head - last)
        report.payments.update(p.status for p in await claim_known_senders(self.db))
        return report

    async def run_forever(self, poll_interval: float) -> None:
        while True:
            try:
                await self.run_once()
            except Exception:
                log.exception("watcher run failed; retrying in %.1fs", poll_interval)
            await asyncio.sleep(poll_interval)

    async def _last_processed(self, safe: int, head: int, report: ScanReport) -> int | None:
        """The cursor, after checking its block is still canonical; None while the node is behind it.
        A new cursor starts before WATCHER_START_BLOCK, or at the confirmed head."""
        async with self.db.connect() as conn:
            cursor = (await conn.execute(sa.select(chain_cursor).where(chain_cursor.c.name == self.name))).first()
        if cursor is None:
            start = self.settings.watcher_start_block
            last = safe if start is None else start - 1
            await self._save_cursor(last, await self._hash(last))
            return last
        if cursor.last_block_hash is None:
            return int(cursor.last_block)
        canonical = await self.rpc.block_hash(cursor.last_block)
        if canonical is None:
            return None
        if canonical == cursor.last_block_hash:
            return int(cursor.last_block)
        report.rewound_to = await self._rewind(cursor.last_block, head, report)
        return report.rewound_to

    async def _scan(self, first: int, last: int, head: int, report: ScanReport) -> bool:
        """Process blocks [first, last] and move the cursor to `last`; False if the range changed meanwhile."""
        end_hash = await self.rpc.block_hash(last)
        transfers = await self.rpc.transfers_to(self.usdc, self.dao, first, last)
        if end_hash is None or await self.rpc.block_hash(last) != end_hash:
            log.warning("blocks %d-%d changed while being scanned; scanning them again next run", first, last)
            return False
        for t in transfers:
            report.payments[(await self._accept(t, head)).status] += 1
        seen = {(t.tx_hash, t.log_index, t.block_hash) for t in transfers}
        for row in await self._recorded(first, last):
            if (row.tx_hash, row.log_index, row.block_hash) not in seen:
                await self._recheck(row, head, report)
        await self._save_cursor(last, end_hash)
        report.scanned_to = last
        return True

    async def _accept(self, t: Transfer, head: int) -> Payment:
        owner = await find_account(self.db, t.from_address)
        return await accept_transfer(self.db, self.settings, t, head, owner.id if owner else None)

    async def _recheck(self, row: sa.Row[Any], head: int, report: ScanReport) -> None:
        payment = await recheck_payment(self.db, self.rpc, self.settings, row, head)
        if payment is not None:
            report.payments[payment.status] += 1

    def _ours(self) -> sa.ColumnElement[bool]:
        return sa.and_(
            payments.c.chain_id == self.settings.chain_id,
            payments.c.token_address == self.usdc,
            payments.c.to_address == self.dao,
        )

    async def _recorded(self, first: int, last: int) -> Sequence[sa.Row[Any]]:
        """Live payments recorded in [first, last] (by a confirm, or an earlier scan of another fork) and
        pending ones below it (a confirm that raced the scan of their block)."""
        async with self.db.connect() as conn:
            return (
                await conn.execute(
                    sa.select(payments).where(
                        self._ours(),
                        payments.c.status.in_((PaymentStatus.PENDING, PaymentStatus.UNCLAIMED, PaymentStatus.CREDITED)),
                        payments.c.block_number <= last,
                        sa.or_(payments.c.block_number >= first, payments.c.status == PaymentStatus.PENDING),
                    )
                )
            ).all()

    async def _rewind(self, cursor_block: int, head: int, report: ScanReport) -> int:
        """Re-check payments from the newest down to the first still-canonical block; return that block."""
        async with self.db.connect() as conn:
            rows = (
                await conn.execute(
                    sa.select(payments)
                    .where(
                        self._ours(),
                        payments.c.status != PaymentStatus.REORGED,
                        payments.c.block_number <= cursor_block,
                    )
                    .order_by(payments.c.block_number.desc())
                )
            ).all()
        intact = None
        for number, group in itertools.groupby(rows, key=lambda r: r.block_number):
            members = list(group)
            canonical = await self.rpc.block_hash(number)
            stale = [r for r in members if r.block_hash != canonical]
            for row in stale:
                if row.status != PaymentStatus.REJECTED:
                    await self._recheck(row, head, report)
            if canonical is not None and len(stale) < len(members):
                intact = number
                break
        start = self.settings.watcher_start_block or 0
        target = intact if intact is not None else start - 1
        log.error(
            "REORG below the watcher cursor (block %d changed): rescanning from block %d", cursor_block, target + 1
        )
        await self._save_cursor(target, await self._hash(target))
        return target

    async def _hash(self, number: int) -> str | None:
        return await self.rpc.block_hash(number) if number >= 0 else None

    async def _save_cursor(self, last_block: int, block_hash: str | None) -> None:
        values = {"last_block": last_block, "last_block_hash": block_hash, "updated_at": sa.func.current_timestamp()}
        async with self.db.begin() as conn:
            await conn.execute(
                insert_for(conn)(chain_cursor)
                .values(name=self.name, **values)
                .on_conflict_do_update(index_elements=["name"], set_=values)
            )


@contextlib.contextmanager
def _no_progress() -> Iterator[Callable[[int], None]]:
    yield lambda _blocks: None


async def watch(settings: Settings, *, once: bool = False, progress: ProgressBar | None = None) -> ScanReport | None:
    """Run the watcher against the configured database and RPC: one run (`once`) or until cancelled."""
    rpc_url = require_configured(settings).rpc_url
    db = get_engine(settings.effective_database_url)
    try:
        async with ChainRPC(rpc_url, timeout=settings.chain_rpc_timeout_seconds) as rpc:
            watcher = Watcher(db, rpc, settings, progress=progress)
            if once:
                return await watcher.run_once()
            await watcher.run_forever(settings.watcher_poll_seconds)
            return None
    finally:
        await dispose_all()
