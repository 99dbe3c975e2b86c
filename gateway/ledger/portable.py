"""The ledger in portable SQLAlchemy Core transactions: what runs on SQLite (the embedded default), and on
PostgreSQL for grants and for flexible holds that do not fit in full.

Each operation is one transaction. "available >= hold" is enforced by the UPDATE's WHERE clause, so
concurrent holds can never reserve more than the balance, on any number of processes; the unique
constraints on `request_id` and `(reason, reference)` make every write idempotent.

The transactions are synchronous functions over a `sqlalchemy.Connection` (`*_in`), written once and run two
ways (`_write`): on a SQLite file whole, in one synchronous call (gateway/db/sqlite_writer.py: the write
lock is held only while they run, not across one event-loop hop per statement);
elsewhere inside the async engine's transaction through `AsyncConnection.run_sync`.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import TypeVar

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.core.limits import KeyLimit, KeyLimitExceeded, PeriodStarts, Reset, key_limit
from gateway.core.posting import InsufficientCredit, collectable_micros
from gateway.db import sqlite_writer
from gateway.db.schema import as_utc
from gateway.db.schema import billing_accounts as acc
from gateway.db.schema import credit_holds as holds
from gateway.db.schema import credit_ledger as ledger
from gateway.db.schema import llm_usage as usage_t
from gateway.db.schema import virtual_keys as vk
from gateway.ledger.types import (
    MAX_ENTRY_MICROS,
    MAX_MODEL_CHARS,
    REASONS,
    Balance,
    Hold,
    HoldRequest,
    HoldStatus,
    LedgerEntry,
    ReferenceReused,
    Settlement,
    UnknownAccount,
    Usage,
)

T = TypeVar("T")


async def _write(db: AsyncEngine, fn: Callable[..., T], *args: object) -> T:
    """`fn(conn, *args)` as one transaction: on a SQLite file through sqlite_writer, else via run_sync."""
    if sqlite_writer.serves(db):
        return await sqlite_writer.run(db, fn, *args)
    async with db.begin() as conn:
        return await conn.run_sync(fn, *args)


class Transactions:
    """The ledger's backend on any engine (the one SQLite uses): hold, settle and release each one portable
    transaction (gateway/ledger/service.py's `Ledger` chooses it once, for an engine that is not PostgreSQL).
    It holds no state of its own; on a SQLite file the writes go through gateway/db/sqlite_writer.py."""

    def __init__(self, db: AsyncEngine) -> None:
        self.db = db

    async def hold(self, wanted: HoldRequest) -> Hold:
        """Reserve the hold (counted in the period of a key with a limit) in one transaction with its row. A
        request id held before raises IntegrityError."""
        return await _write(self.db, hold_in, wanted)

    async def settle(self, usage: Usage, now: datetime) -> tuple[Settlement, int | None]:
        """The settlement and the hold it posted (None: none was pending). Raises IntegrityError when a
        concurrent settle of the same request committed first."""
        return await _write(self.db, settle_in, usage, now)

    async def release(self, request_id: str, status: HoldStatus, now: datetime) -> bool:
        return await _write(self.db, release_in, request_id, status, now)

    def close(self) -> None:
        """Nothing to close: the engine belongs to the runtime, the SQLite writer to the process."""


def read_balance(conn: sa.Connection, account_id: int) -> Balance:
    row = (conn.execute(sa.select(acc.c.balance_micros, acc.c.held_micros).where(acc.c.id == account_id))).first()
    if row is None:
        raise UnknownAccount(account_id)
    return Balance(account_id, row.balance_micros, row.held_micros)


def existing_entry(conn: sa.Connection, reason: str, reference: str) -> LedgerEntry | None:
    row = (conn.execute(sa.select(ledger).where(ledger.c.reason == reason, ledger.c.reference == reference))).first()
    if row is None:
        return None
    return LedgerEntry(
        row.id, row.account_id, row.amount_micros, row.balance_after_micros, row.reason, row.reference, True
    )


def _append(conn: sa.Connection, account_id: int, amount: int, balance_after: int, reason: str, ref: str) -> int:
    entry = sa.insert(ledger).values(
        account_id=account_id, amount_micros=amount, balance_after_micros=balance_after, reason=reason, reference=ref
    )
    return int((conn.execute(entry.returning(ledger.c.id))).scalar_one())


async def post_entry(
    db: AsyncEngine, account_id: int, amount_micros: int, reason: str, reference: str, covered: bool = False
) -> LedgerEntry:
    try:
        return await _write(db, post_entry_in, account_id, amount_micros, reason, reference, covered)
    except IntegrityError:  # a concurrent writer committed the same (reason, reference) first
        async with db.connect() as conn:
            existing = await conn.run_sync(existing_entry, reason, reference)
        if existing is None:
            raise
        return _replay(existing, account_id, amount_micros)


def _replay(existing: LedgerEntry, account_id: int, amount_micros: int) -> LedgerEntry:
    """The first write of a `(reason, reference)`, if this one asks for the same; else ReferenceReused."""
    if (existing.account_id, existing.amount_micros) != (account_id, amount_micros):
        raise ReferenceReused(existing, account_id, amount_micros)
    return existing


def post_entry_in(
    conn: sa.Connection, account_id: int, amount_micros: int, reason: str, reference: str, covered: bool = False
) -> LedgerEntry:
    """Append the entry and move the balance; with `covered`, a debit only if the account's available credit
    (balance minus open holds) covers it, else InsufficientCredit (nothing written)."""
    if reason not in REASONS:
        raise ValueError(f"unknown ledger reason {reason!r}")
    if not isinstance(amount_micros, int) or isinstance(amount_micros, bool):
        raise TypeError("amounts are integers of micros")
    if abs(amount_micros) > MAX_ENTRY_MICROS:
        raise ValueError(f"a ledger entry moves at most {MAX_ENTRY_MICROS} micros")
    if not reference:
        raise ValueError("a ledger entry needs a reference")
    existing = existing_entry(conn, reason, reference)
    if existing is not None:
        return _replay(existing, account_id, amount_micros)
    where = [acc.c.id == account_id]
    if covered and amount_micros < 0:
        where.append(acc.c.balance_micros - acc.c.held_micros >= -amount_micros)
    new_balance = (
        conn.execute(
            sa.update(acc)
            .where(*where)
            .values(balance_micros=acc.c.balance_micros + amount_micros)
            .returning(acc.c.balance_micros)
        )
    ).scalar_one_or_none()
    if new_balance is None:
        current = read_balance(conn, account_id)  # raises UnknownAccount
        raise InsufficientCredit(current.balance_micros, current.held_micros, -amount_micros)
    entry_id = _append(conn, account_id, amount_micros, new_balance, reason, reference)
    return LedgerEntry(entry_id, account_id, amount_micros, new_balance, reason, reference)


def hold_in(conn: sa.Connection, wanted: HoldRequest) -> Hold:
    account_id, key_id, now = wanted.account_id, wanted.key_id, wanted.now
    reserved, row = _reserve(conn, account_id, wanted.amount, wanted.floor, key_id, now)
    counted_in = _count_for_key(conn, key_id, account_id, reserved, now) if key_id is not None else None
    conn.execute(
        sa.insert(holds).values(
            account_id=account_id,
            request_id=wanted.request_id,
            key_id=key_id,
            model=wanted.model[:MAX_MODEL_CHARS],
            amount_micros=reserved,
            expires_at=wanted.expires_at,
            key_period_start=counted_in,
        )
    )
    return Hold(wanted.request_id, account_id, reserved, row.balance_micros, row.held_micros)


def _key_period(periods: PeriodStarts) -> sa.ColumnElement[datetime]:
    """The key's current period start for its reset kind (the SQL twin of PeriodStarts.of)."""
    return sa.case(
        (vk.c.limit_reset == Reset.DAILY, sa.literal(periods.daily, sa.DateTime(timezone=True))),
        (vk.c.limit_reset == Reset.WEEKLY, sa.literal(periods.weekly, sa.DateTime(timezone=True))),
        (vk.c.limit_reset == Reset.MONTHLY, sa.literal(periods.monthly, sa.DateTime(timezone=True))),
        else_=sa.literal(periods.none, sa.DateTime(timezone=True)),
    )


def read_key_limit(conn: sa.Connection, key_id: int, now: datetime, account_id: int | None = None) -> KeyLimit | None:
    """The key's limit and its counted use (what a hold is checked against); None if there is no such key (of
    `account_id`, when given). A key without a limit counts nothing: the use shown for it is read from its
    calls (gateway/accounts/keys.py)."""
    owner = [vk.c.account_id == account_id] if account_id is not None else []
    row = (
        conn.execute(
            sa.select(vk.c.limit_micros, vk.c.limit_reset, vk.c.period_used_micros, vk.c.period_start).where(
                vk.c.id == key_id, *owner
            )
        )
    ).first()
    if row is None:
        return None
    since = as_utc(row.period_start) if row.period_start else None
    return key_limit(row.limit_micros, row.limit_reset, row.period_used_micros, since, now)


def _count_for_key(conn: sa.Connection, key_id: int, account_id: int, amount: int, now: datetime) -> datetime | None:
    """Add `amount` to the use of the key's period in one conditional UPDATE (the limit is the WHERE clause);
    the key's period start it was counted in, or None for a key (of this account) without a limit: it is not
    written (its use is read from its calls when shown). Raises KeyLimitExceeded (the caller's transaction
    rolls back). A limit removed while the UPDATE waits for the key's row still passes (`limit_micros IS
    NULL`); one set concurrently may not be seen yet (the window set_limit documents)."""
    owned = conn.execute(sa.select(vk.c.limit_micros).where(vk.c.id == key_id, vk.c.account_id == account_id))
    key = owned.first()
    if key is None:  # a key of another account
        raise KeyLimitExceeded(KeyLimit(0, Reset.NONE, 0, None), amount)
    if key.limit_micros is None:
        return None
    period = _key_period(PeriodStarts.at(now))
    used = sa.case((vk.c.period_start == period, vk.c.period_used_micros), else_=0)
    counted = (
        conn.execute(
            sa.update(vk)
            .where(
                vk.c.id == key_id,
                vk.c.account_id == account_id,
                sa.or_(vk.c.limit_micros.is_(None), used + amount <= vk.c.limit_micros),
            )
            .values(period_start=period, period_used_micros=used + amount)
            .returning(vk.c.period_start)
        )
    ).first()
    if counted is None:
        limit = read_key_limit(conn, key_id, now)
        assert limit is not None  # the key was read above, and a key is never deleted
        raise KeyLimitExceeded(limit, amount)
    return as_utc(counted.period_start)


def _reserve(
    conn: sa.Connection, account_id: int, amount: int, floor: int | None, key_id: int | None, now: datetime
) -> tuple[int, sa.Row[tuple[int, int]]]:
    """Add to the account's held total in one conditional UPDATE; the database refuses what does not fit. A
    flexible hold is also capped by what the key's limit leaves (re-checked by the key's own UPDATE)."""
    available = acc.c.balance_micros - acc.c.held_micros
    for _ in range(5):
        if floor is None:
            reserve = amount
        else:  # flexible: as much of `amount` as is available now, re-checked by the UPDATE below
            current = read_balance(conn, account_id)
            reserve = min(amount, current.available_micros)
            limit = read_key_limit(conn, key_id, now) if key_id else None
            key_room = limit.remaining_micros if limit else None
            if limit is not None and key_room is not None and key_room < floor <= reserve:
                raise KeyLimitExceeded(limit, floor)
            reserve = reserve if key_room is None else min(reserve, key_room)
            if reserve < floor:
                raise InsufficientCredit(current.balance_micros, current.held_micros, floor)
        row = (
            conn.execute(
                sa.update(acc)
                .where(acc.c.id == account_id, available >= reserve)
                .values(held_micros=acc.c.held_micros + reserve)
                .returning(acc.c.balance_micros, acc.c.held_micros)
            )
        ).first()
        if row is not None:
            return reserve, row
        if floor is None:
            break
    current = read_balance(conn, account_id)
    raise InsufficientCredit(current.balance_micros, current.held_micros, amount if floor is None else floor)


async def get_hold(db: AsyncEngine, request_id: str) -> Hold | None:
    async with db.connect() as conn:
        row = (
            await conn.execute(
                sa.select(holds.c.account_id, holds.c.amount_micros, acc.c.balance_micros, acc.c.held_micros)
                .join(acc, acc.c.id == holds.c.account_id)
                .where(holds.c.request_id == request_id)
            )
        ).first()
    if row is None:
        return None
    return Hold(request_id, row.account_id, row.amount_micros, row.balance_micros, row.held_micros)


def _close_hold(
    conn: sa.Connection, request_id: str, status: HoldStatus, now: datetime
) -> sa.Row[tuple[int, int, int | None, datetime | None]] | None:
    """Move a pending hold to `status`; returns (account_id, amount_micros, key_id, key_period_start) or None if
    none was pending."""
    return (
        conn.execute(
            sa.update(holds)
            .where(holds.c.request_id == request_id, holds.c.status == HoldStatus.PENDING)
            .values(status=status, closed_at=now)
            .returning(holds.c.account_id, holds.c.amount_micros, holds.c.key_id, holds.c.key_period_start)
        )
    ).first()


def settle_in(conn: sa.Connection, usage: Usage, now: datetime) -> tuple[Settlement, int | None]:
    price = usage.user_price_micros
    closed = _close_hold(conn, usage.request_id, HoldStatus.POSTED, now)
    if closed is None and _usage_exists(conn, usage.request_id):
        return replayed_settlement(conn, usage.request_id), None
    held = closed.amount_micros if closed is not None else None
    current = read_balance(conn, usage.account_id)  # after our write: the row is ours until commit
    charge = collectable_micros(price, held, current.balance_micros, current.held_micros)
    new_balance = conn.execute(
        sa.update(acc)
        .where(acc.c.id == usage.account_id)
        .values(balance_micros=acc.c.balance_micros - charge, held_micros=acc.c.held_micros - (held or 0))
        .returning(acc.c.balance_micros)
    ).scalar_one()
    conn.execute(sa.insert(usage_t).values(**usage.row(uncollected_micros=price - charge)))
    _append(conn, usage.account_id, -charge, new_balance, "llm_usage", usage.request_id)
    _give_back_to_key(conn, usage.request_id, charge - (held or 0), closed)
    return Settlement(usage.request_id, price, new_balance, False, price - charge), held


def _usage_exists(conn: sa.Connection, request_id: str) -> bool:
    found = conn.execute(sa.select(usage_t.c.id).where(usage_t.c.request_id == request_id))
    return found.first() is not None


def replayed_settlement(conn: sa.Connection, request_id: str) -> Settlement:
    row = (
        conn.execute(
            sa.select(usage_t.c.user_price_micros, usage_t.c.uncollected_micros, ledger.c.balance_after_micros)
            .join(ledger, sa.and_(ledger.c.reason == "llm_usage", ledger.c.reference == usage_t.c.request_id))
            .where(usage_t.c.request_id == request_id)
        )
    ).first()
    if row is None:
        raise LookupError(f"no settlement for request {request_id}")
    return Settlement(request_id, row.user_price_micros, row.balance_after_micros, True, row.uncollected_micros)


def release_in(conn: sa.Connection, request_id: str, status: HoldStatus, now: datetime) -> bool:
    closed = _close_hold(conn, request_id, status, now)
    if closed is None:
        return False
    conn.execute(
        sa.update(acc).where(acc.c.id == closed.account_id).values(held_micros=acc.c.held_micros - closed.amount_micros)
    )
    _give_back_to_key(conn, request_id, -closed.amount_micros, closed)
    return True


def _give_back_to_key(
    conn: sa.Connection,
    request_id: str,
    delta: int,
    closed: sa.Row[tuple[int, int, int | None, datetime | None]] | None,
) -> None:
    """Move the use of the key period the request's hold was counted in by `delta` (a settle below the hold
    gives the difference back, a release all of it; a late settle after expiry counts its charge). Nothing
    when that period has ended: the key's use started again from zero. `closed`: the hold just closed (its key
    and period, read by the close's RETURNING), else the hold is looked up (one that expired before)."""
    counted = (
        closed
        or (
            conn.execute(sa.select(holds.c.key_id, holds.c.key_period_start).where(holds.c.request_id == request_id))
        ).first()
    )
    if counted is None or counted.key_id is None or counted.key_period_start is None or not delta:
        return
    moved = vk.c.period_used_micros + delta
    conn.execute(
        sa.update(vk)
        .where(vk.c.id == counted.key_id, vk.c.period_start == counted.key_period_start)
        .values(period_used_micros=sa.case((moved > 0, moved), else_=0))
    )


async def stale_holds(db: AsyncEngine, cutoff: datetime) -> list[str]:
    """Request ids of pending holds that expired before `cutoff`."""
    async with db.connect() as conn:
        query = sa.select(holds.c.request_id).where(holds.c.status == HoldStatus.PENDING, holds.c.expires_at < cutoff)
        return list((await conn.execute(query)).scalars().all())
