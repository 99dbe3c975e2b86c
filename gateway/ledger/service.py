"""The ledger's operations: every balance change and every hold, each one database transaction (or, on
PostgreSQL, one statement for hold, settle and release: postgres.py; elsewhere portable.py).

Balance changes append exactly one `credit_ledger` row in the same transaction; `(reason, reference)` and
`request_id` make every write idempotent: replaying it returns the first result and changes nothing.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from gateway.core.limits import KeyLimit, KeyLimitExceeded, PeriodStarts, Reset
from gateway.core.posting import InsufficientCredit
from gateway.failures import is_transient, refusal_reason
from gateway.ledger import portable, postgres
from gateway.ledger.types import Balance, Hold, HoldStatus, LedgerEntry, Settlement, UnknownAccount, Usage
from gateway.observability import metrics

if TYPE_CHECKING:
    import asyncpg

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


async def hold(
    db: AsyncEngine,
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
    available (in the account and in the key's limit) as long as that is at least `min_micros` (used when the
    client set no max_tokens).
    """
    if amount_micros < 0 or (min_micros is not None and not 0 <= min_micros <= amount_micros):
        raise ValueError("hold amounts must be 0 <= min <= amount")
    now = now or _now()
    expires_at = now + timedelta(seconds=ttl_seconds)
    try:
        if postgres.serves(db):
            periods = PeriodStarts.at(now)
            row = await postgres.hold(db, account_id, request_id, amount_micros, expires_at, key_id, model, periods)
            if row is not None:
                return Hold(request_id, account_id, amount_micros, row["balance_micros"], row["held_micros"])
            if min_micros is None:
                raise await _refusal(db, account_id, key_id, amount_micros, now)
            # a flexible hold that does not fit in full: the portable path reserves what is available
        return await portable.hold(
            db, account_id, request_id, amount_micros, min_micros, expires_at, key_id, model, now
        )
    except IntegrityError:  # the same request id was held before: return that hold
        existing = await get_hold(db, request_id)
        if existing is None:
            raise
        return existing


async def _refusal(db: AsyncEngine, account_id: int, key_id: int | None, amount: int, now: datetime) -> Exception:
    """Why a one-statement hold was refused: the account's credit, else the key's limit."""
    current = await get_balance(db, account_id)
    if current.available_micros < amount or key_id is None:
        return InsufficientCredit(current.balance_micros, current.held_micros, amount)
    limit = await get_key_limit(db, key_id, now)
    if limit is None or limit.limit_micros is None:  # no such key, or one of another account (without a limit)
        limit = KeyLimit(0, Reset.NONE, 0, None)
    return KeyLimitExceeded(limit, amount)


async def get_key_limit(db: AsyncEngine, key_id: int, now: datetime | None = None) -> KeyLimit | None:
    """The key's limit, its counted use in the period of `now` and when that period ends (None: no such key).
    A key without a limit counts nothing: its shown use is gateway.accounts.keys' (read from its calls)."""
    async with db.connect() as conn:
        return await conn.run_sync(portable.read_key_limit, key_id, now or _now())


async def get_hold(db: AsyncEngine, request_id: str) -> Hold | None:
    return await portable.get_hold(db, request_id)


async def settle(db: AsyncEngine, usage: Usage) -> Settlement:
    """Post a call's charge: record llm_usage, debit the user price, close the hold. Once per request id.

    The debit never exceeds the pending hold, nor what the account has beyond its other holds (a balance
    never goes below zero): a price above that is recorded as `uncollected_micros` (operator loss), logged,
    and listed by `gateway reconcile`. Without a pending hold (it expired before the call ended) the call is
    still charged, from what is available: the service was delivered.
    """
    if usage.user_price_micros < usage.provider_cost_micros:
        raise ValueError("user price below provider cost")
    try:
        if postgres.serves(db):
            return _settled(usage, await postgres.settle(db, usage, _now()))
        settlement, held = await portable.settle(db, usage, _now())
    except IntegrityError:  # a concurrent settle of the same request committed first
        async with db.connect() as conn:
            return await conn.run_sync(portable.replayed_settlement, usage.request_id)
    if not settlement.replayed:
        _report(usage, held, settlement.uncollected_micros)
    return settlement


def _settled(usage: Usage, row: asyncpg.Record) -> Settlement:
    """The Settlement a one-statement settle's summary row describes."""
    if row["balance_after_micros"] is None:  # nothing written
        if not row["account_exists"]:
            raise UnknownAccount(usage.account_id)
        if row["first_price_micros"] is None:
            raise LookupError(f"no settlement for request {usage.request_id}")
        return Settlement(
            usage.request_id,
            row["first_price_micros"],
            row["first_balance_after_micros"],
            True,
            row["first_uncollected_micros"],
        )
    uncollected = usage.user_price_micros - row["charged_micros"]
    _report(usage, row["held_micros"], uncollected)
    return Settlement(usage.request_id, usage.user_price_micros, row["balance_after_micros"], False, uncollected)


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


async def release(db: AsyncEngine, request_id: str, *, status: HoldStatus = HoldStatus.VOIDED) -> bool:
    """Void a pending hold (failed or cancelled call): nothing is charged. False if it was not pending."""
    if postgres.serves(db):
        return await postgres.release(db, request_id, status, _now())
    return await portable.release(db, request_id, status, _now())


async def expire_stale_holds(db: AsyncEngine, now: datetime | None = None, grace_seconds: int = 0) -> list[str]:
    """Void every pending hold past its TTL plus `grace_seconds` (each one means a lost settle) and return their
    request ids. The grace leaves time for settles waiting in a proxy's spool (gateway.ledger.spool); the
    expiry is a conditional write (`release` acts only on a pending hold), so two sweepers, or a sweeper and a
    late settle, never act twice on one hold. A hold whose expiry the database refuses permanently is logged
    and counted, and never stops the holds after it; an outage stops the pass (the next one retries)."""
    cutoff = (now or _now()) - timedelta(seconds=grace_seconds)
    expired = []
    for rid in await portable.stale_holds(db, cutoff):
        try:
            if await release(db, rid, status=HoldStatus.EXPIRED):
                expired.append(rid)
                log.error("hold expired without a settle: request %s (released)", rid)
        except Exception as exc:
            if is_transient(exc):
                raise
            metrics.LEDGER_REFUSALS.labels("expire").inc()
            log.error("expiry of hold %s refused by the ledger (%s)", rid, refusal_reason(exc))
    return expired
