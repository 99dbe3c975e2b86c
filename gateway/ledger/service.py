"""The ledger's operations: every balance change and every hold, each one database transaction (or, on
PostgreSQL, one statement for hold, settle and release: postgres.py; elsewhere portable.py).

Hold, settle and release (and the sweep of stale holds, which releases) are methods of a `Ledger`: one per
runtime (gateway/runtime.py), built by `open_ledger(db)`, which chooses its backend once, from the engine's
dialect: PostgreSQL's one-statement path (`postgres.OneStatement`, which owns connections and batchers, so
the ledger is closed with its runtime) or the portable transactions (`portable.Transactions`). The other
operations (credits and debits, reads) are the same transactions on every database and hold no state: they
stay functions of an engine.

Balance changes append exactly one `credit_ledger` row in the same transaction; `(reason, reference)` and
`request_id` make every write idempotent: replaying it returns the first result and changes nothing.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Protocol

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from gateway.core.limits import KeyLimit
from gateway.failures import is_transient, refusal_reason
from gateway.ledger import portable, postgres
from gateway.ledger.types import Balance, Hold, HoldRequest, HoldStatus, LedgerEntry, Settlement, Usage
from gateway.observability import metrics

log = logging.getLogger("gateway.ledger")


def _now() -> datetime:
    return datetime.now(UTC)


async def get_balance(db: AsyncEngine, account_id: int) -> Balance:
    async with db.connect() as conn:
        return await conn.run_sync(portable.read_balance, account_id)


async def post_entry(db: AsyncEngine, account_id: int, amount_micros: int, reason: str, reference: str) -> LedgerEntry:
    """Credit (or, negative, debit) an account once per `(reason, reference)`; a replay returns the first entry,
    and the reference reused for another account or amount raises ReferenceReused (nothing written).

    Debits made here (reversals, adjustments) may take the balance below zero: they record facts
    (a payment vanished in a reorg) that happened whether or not the account can cover them.
    """
    return await portable.post_entry(db, account_id, amount_micros, reason, reference)


ADJUSTMENT_REASONS = ("adjustment", "refund")


async def adjust(db: AsyncEngine, account_id: int, amount_micros: int, reason: str, reference: str) -> LedgerEntry:
    """An operator's correction, once per `(reason, reference)`: a `refund` credits, an `adjustment` credits or
    debits. Unlike `post_entry`, a debit must be covered by the account's available credit (balance minus open
    holds), else InsufficientCredit and nothing is written: an operator never takes a balance below zero."""
    if reason not in ADJUSTMENT_REASONS:
        raise ValueError(f"an adjustment's reason is one of {', '.join(ADJUSTMENT_REASONS)}")
    if amount_micros == 0 or (reason == "refund" and amount_micros < 0):
        raise ValueError("a refund credits a positive amount" if amount_micros else "an adjustment must not be 0")
    return await portable.post_entry(db, account_id, amount_micros, reason, reference, covered=True)


async def get_entry(db: AsyncEngine, reason: str, reference: str) -> LedgerEntry | None:
    """The entry `(reason, reference)` names, if any (marked `replayed`: it was written before)."""
    async with db.connect() as conn:
        return await conn.run_sync(portable.existing_entry, reason, reference)


async def post_entry_in(
    conn: AsyncConnection, account_id: int, amount_micros: int, reason: str, reference: str
) -> LedgerEntry:
    """`post_entry` inside the caller's transaction, so that the entry commits together with the caller's
    own writes (a payment row marked credited). A concurrent duplicate surfaces as an IntegrityError in
    the caller's transaction unless the caller serialises on a row of its own (as gateway.payments does).
    """
    return await conn.run_sync(portable.post_entry_in, account_id, amount_micros, reason, reference)


class Backend(Protocol):
    """How hold, settle and release run on one engine (postgres.OneStatement, portable.Transactions)."""

    async def hold(self, wanted: HoldRequest) -> Hold: ...

    async def settle(self, usage: Usage, now: datetime) -> tuple[Settlement, int | None]: ...

    async def release(self, request_id: str, status: HoldStatus, now: datetime) -> bool: ...

    def close(self) -> None: ...


def open_ledger(db: AsyncEngine) -> Ledger:
    """The ledger on `db`, its backend chosen here, once: one statement each on PostgreSQL, else portable."""
    if db.dialect.name == "postgresql":
        return Ledger(db, postgres.OneStatement(db))
    return Ledger(db, portable.Transactions(db))


class Ledger:
    """Hold, settle and release on one engine, through the backend chosen for it (`open_ledger`)."""

    def __init__(self, db: AsyncEngine, backend: Backend) -> None:
        self.db = db
        self.backend = backend

    async def hold(
        self,
        account_id: int,
        request_id: str,
        amount_micros: int,
        *,
        min_micros: int | None = None,
        ttl_seconds: int = 900,
        key_id: int | None = None,
        model: str = "",
        now: datetime | None = None,
    ) -> Hold:
        """Reserve credit for one request; raises InsufficientCredit if the account cannot cover it, and
        KeyLimitExceeded if `key_id`'s credit limit for the period of `now` cannot (the hold counts in it).

        With `min_micros`, the hold is flexible: it reserves `amount_micros` if available, else everything
        available (in the account and in the key's limit) as long as that is at least `min_micros` (used when
        the client set no max_tokens).
        """
        if amount_micros < 0 or (min_micros is not None and not 0 <= min_micros <= amount_micros):
            raise ValueError("hold amounts must be 0 <= min <= amount")
        now = now or _now()
        expires_at = now + timedelta(seconds=ttl_seconds)
        try:
            wanted = HoldRequest(account_id, request_id, amount_micros, min_micros, expires_at, key_id, model, now)
            return await self.backend.hold(wanted)
        except IntegrityError:  # the same request id was held before: return that hold
            existing = await get_hold(self.db, request_id)
            if existing is None:
                raise
            return existing

    async def settle(self, usage: Usage) -> Settlement:
        """Post a call's charge: record llm_usage, debit the user price, close the hold. Once per request id.

        The debit never exceeds the pending hold, nor what the account has beyond its other holds (a balance
        never goes below zero): a price above that is recorded as `uncollected_micros` (operator loss), logged,
        and listed by `gateway reconcile`. Without a pending hold (it expired before the call ended) the call
        is still charged, from what is available: the service was delivered.
        """
        if usage.user_price_micros < usage.provider_cost_micros:
            raise ValueError("user price below provider cost")
        try:
            settlement, held = await self.backend.settle(usage, _now())
        except IntegrityError:  # a concurrent settle of the same request committed first
            async with self.db.connect() as conn:
                return await conn.run_sync(portable.replayed_settlement, usage.request_id)
        if not settlement.replayed:
            _report(usage, held, settlement.uncollected_micros)
        return settlement

    async def release(self, request_id: str, *, status: HoldStatus = HoldStatus.VOIDED) -> bool:
        """Void a pending hold (failed or cancelled call): nothing is charged. False if it was not pending."""
        return await self.backend.release(request_id, status, _now())

    async def expire_stale_holds(self, now: datetime | None = None, grace_seconds: int = 0) -> list[str]:
        """Void every pending hold past its TTL plus `grace_seconds` (each one means a lost settle) and return
        their request ids. The grace leaves time for settles waiting in a proxy's spool (gateway.ledger.spool);
        the expiry is a conditional write (`release` acts only on a pending hold), so two sweepers, or a
        sweeper and a late settle, never act twice on one hold. A hold whose expiry the database refuses
        permanently is logged and counted, and never stops the holds after it; an outage stops the pass (the
        next one retries)."""
        cutoff = (now or _now()) - timedelta(seconds=grace_seconds)
        expired = []
        for rid in await portable.stale_holds(self.db, cutoff):
            try:
                if await self.release(rid, status=HoldStatus.EXPIRED):
                    expired.append(rid)
                    log.error("hold expired without a settle: request %s (released)", rid)
            except Exception as exc:
                if is_transient(exc):
                    raise
                metrics.LEDGER_REFUSALS.labels("expire").inc()
                log.error("expiry of hold %s refused by the ledger (%s)", rid, refusal_reason(exc))
        return expired

    def close(self) -> None:
        """Close what the backend opened (PostgreSQL: its connections); the engine is the runtime's."""
        self.backend.close()


async def get_key_limit(db: AsyncEngine, key_id: int, now: datetime | None = None) -> KeyLimit | None:
    """The key's limit, its counted use in the period of `now` and when that period ends (None: no such key).
    A key without a limit counts nothing: its shown use is gateway.accounts.keys' (read from its calls)."""
    async with db.connect() as conn:
        return await conn.run_sync(portable.read_key_limit, key_id, now or _now())


async def get_hold(db: AsyncEngine, request_id: str) -> Hold | None:
    return await portable.get_hold(db, request_id)


def _report(usage: Usage, held: int | None, uncollected: int) -> None:
    if uncollected:
        log.warning(
            "uncollected: request %s account %d price %d held %s: %d micros not charged (operator loss)",
            usage.request_id,
            usage.account_id,
            usage.user_price_micros,
            held,
            uncollected,
        )
    if held is None:
        log.warning("settled without a pending hold: request %s", usage.request_id)
