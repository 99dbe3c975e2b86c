"""The ledger service: every balance change and every hold, each one database transaction.

Vocabulary (as in TigerBeetle): a *grant* credits an account (payment, admin grant, refund); a *hold* is a
pending debit that reserves credit for one request; a *settle* posts it (records `llm_usage`, debits the
actual user price, closes the hold); a *release* voids it. Balance changes append exactly one
`credit_ledger` row in the same transaction; `(reason, reference)` and `request_id` make every write
idempotent: replaying it returns the first result and changes nothing.

"available >= hold" is enforced by the UPDATE's WHERE clause, so concurrent holds can never reserve more
than the balance, on any number of processes.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from gateway.db.schema import billing_accounts as acc
from gateway.db.schema import credit_holds as holds
from gateway.db.schema import credit_ledger as ledger
from gateway.db.schema import llm_usage as usage_t

log = logging.getLogger("gateway.ledger")

REASONS = frozenset({"onchain_payment", "llm_usage", "admin_grant", "refund", "adjustment"})


class InsufficientCredit(Exception):
    def __init__(self, balance_micros: int, held_micros: int, requested_micros: int):
        super().__init__(f"available {balance_micros - held_micros} < requested {requested_micros}")
        self.balance_micros = balance_micros
        self.held_micros = held_micros
        self.requested_micros = requested_micros


class UnknownAccount(LookupError):
    pass


@dataclass(frozen=True)
class Balance:
    account_id: int
    balance_micros: int
    held_micros: int

    @property
    def available_micros(self) -> int:
        return self.balance_micros - self.held_micros


@dataclass(frozen=True)
class LedgerEntry:
    id: int
    account_id: int
    amount_micros: int
    balance_after_micros: int
    reason: str
    reference: str
    replayed: bool = False


@dataclass(frozen=True)
class Hold:
    request_id: str
    account_id: int
    amount_micros: int
    balance_micros: int
    held_micros: int  # account's total held after this hold


@dataclass(frozen=True)
class Usage:
    """What a finished call cost: the facts `settle` records."""

    request_id: str
    account_id: int
    key_id: int | None
    model: str
    prompt_tokens: int
    completion_tokens: int
    provider_cost_micros: int
    user_price_micros: int
    markup: str
    streamed: bool = False
    cost_source: str = "litellm"


@dataclass(frozen=True)
class Settlement:
    request_id: str
    user_price_micros: int
    balance_after_micros: int
    replayed: bool
    over_hold_micros: int = 0  # > 0 when the actual price exceeded the hold (charged anyway)


def _now() -> datetime:
    return datetime.now(timezone.utc)


async def get_balance(db: AsyncEngine, account_id: int) -> Balance:
    async with db.connect() as conn:
        return await _read_balance(conn, account_id)


async def _read_balance(conn: AsyncConnection, account_id: int) -> Balance:
    row = (
        await conn.execute(sa.select(acc.c.balance_micros, acc.c.held_micros).where(acc.c.id == account_id))
    ).first()
    if row is None:
        raise UnknownAccount(account_id)
    return Balance(account_id, row.balance_micros, row.held_micros)


async def _existing_entry(conn: AsyncConnection, reason: str, reference: str) -> LedgerEntry | None:
    row = (
        await conn.execute(sa.select(ledger).where(ledger.c.reason == reason, ledger.c.reference == reference))
    ).first()
    if row is None:
        return None
    return LedgerEntry(
        row.id, row.account_id, row.amount_micros, row.balance_after_micros, row.reason, row.reference, True
    )


async def _append(conn: AsyncConnection, account_id: int, amount: int, balance_after: int, reason: str, ref: str) -> int:
    return (
        await conn.execute(
            sa.insert(ledger)
            .values(
                account_id=account_id,
                amount_micros=amount,
                balance_after_micros=balance_after,
                reason=reason,
                reference=ref,
            )
            .returning(ledger.c.id)
        )
    ).scalar_one()


async def post_entry(
    db: AsyncEngine, account_id: int, amount_micros: int, reason: str, reference: str
) -> LedgerEntry:
    """Credit (or, negative, debit) an account once per `(reason, reference)`; a replay returns the first entry.

    Debits made here (reversals, adjustments) may take the balance below zero: they record facts
    (a payment vanished in a reorg) that happened whether or not the account can cover them.
    """
    if reason not in REASONS:
        raise ValueError(f"unknown ledger reason {reason!r}")
    if not isinstance(amount_micros, int) or isinstance(amount_micros, bool):
        raise TypeError("amounts are integers of micros")
    if not reference:
        raise ValueError("a ledger entry needs a reference")
    try:
        async with db.begin() as conn:
            existing = await _existing_entry(conn, reason, reference)
            if existing is not None:
                return existing
            new_balance = (
                await conn.execute(
                    sa.update(acc)
                    .where(acc.c.id == account_id)
                    .values(balance_micros=acc.c.balance_micros + amount_micros)
                    .returning(acc.c.balance_micros)
                )
            ).scalar_one_or_none()
            if new_balance is None:
                raise UnknownAccount(account_id)
            entry_id = await _append(conn, account_id, amount_micros, new_balance, reason, reference)
            return LedgerEntry(entry_id, account_id, amount_micros, new_balance, reason, reference)
    except IntegrityError:  # a concurrent writer committed the same (reason, reference) first
        async with db.connect() as conn:
            existing = await _existing_entry(conn, reason, reference)
        if existing is None:
            raise
        return existing


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
) -> Hold:
    """Reserve credit for one request; raises InsufficientCredit if the account cannot cover it.

    With `min_micros`, the hold is flexible: it reserves `amount_micros` if available, else everything
    available as long as that is at least `min_micros` (used when the client set no max_tokens).
    """
    if amount_micros < 0 or (min_micros is not None and not 0 <= min_micros <= amount_micros):
        raise ValueError("hold amounts must be 0 <= min <= amount")
    try:
        async with db.begin() as conn:
            reserved, row = await _reserve(conn, account_id, amount_micros, min_micros)
            await conn.execute(
                sa.insert(holds).values(
                    account_id=account_id,
                    request_id=request_id,
                    key_id=key_id,
                    model=model[:200],
                    amount_micros=reserved,
                    expires_at=_now() + timedelta(seconds=ttl_seconds),
                )
            )
            return Hold(request_id, account_id, reserved, row.balance_micros, row.held_micros)
    except IntegrityError:  # the same request id was held before: return that hold
        existing = await get_hold(db, request_id)
        if existing is None:
            raise
        return existing


async def _reserve(conn: AsyncConnection, account_id: int, amount: int, floor: int | None) -> tuple[int, sa.Row]:
    """Add to the account's held total in one conditional UPDATE; the database refuses what does not fit."""
    available = acc.c.balance_micros - acc.c.held_micros
    for _ in range(5):
        if floor is None:
            reserve = amount
        else:  # flexible: as much of `amount` as is available now, re-checked by the UPDATE below
            current = await _read_balance(conn, account_id)
            reserve = min(amount, current.available_micros)
            if reserve < floor:
                raise InsufficientCredit(current.balance_micros, current.held_micros, floor)
        row = (
            await conn.execute(
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
    current = await _read_balance(conn, account_id)
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


async def _close_hold(conn: AsyncConnection, request_id: str, status: str) -> sa.Row | None:
    """Move a pending hold to `status`; returns (account_id, amount_micros) or None if none was pending."""
    return (
        await conn.execute(
            sa.update(holds)
            .where(holds.c.request_id == request_id, holds.c.status == "pending")
            .values(status=status, closed_at=_now())
            .returning(holds.c.account_id, holds.c.amount_micros)
        )
    ).first()


async def settle(db: AsyncEngine, usage: Usage) -> Settlement:
    """Post a call's charge: record llm_usage, debit the user price, close the hold. Once per request id.

    Without a pending hold (it expired and was swept, or the call was never held) the call is still
    charged: the service was delivered. If the price exceeds the hold it is charged in full and counted.
    """
    if usage.user_price_micros < usage.provider_cost_micros:
        raise ValueError("user price below provider cost")
    price = usage.user_price_micros
    try:
        async with db.begin() as conn:
            closed = await _close_hold(conn, usage.request_id, "posted")
            held = closed.amount_micros if closed is not None else 0
            if closed is None and await _usage_exists(conn, usage.request_id):
                return await _replayed_settlement(conn, usage.request_id)
            new_balance = (
                await conn.execute(
                    sa.update(acc)
                    .where(acc.c.id == usage.account_id)
                    .values(balance_micros=acc.c.balance_micros - price, held_micros=acc.c.held_micros - held)
                    .returning(acc.c.balance_micros)
                )
            ).scalar_one_or_none()
            if new_balance is None:
                raise UnknownAccount(usage.account_id)
            await conn.execute(
                sa.insert(usage_t).values(
                    request_id=usage.request_id,
                    account_id=usage.account_id,
                    key_id=usage.key_id,
                    model=usage.model[:200],
                    prompt_tokens=usage.prompt_tokens,
                    completion_tokens=usage.completion_tokens,
                    total_tokens=usage.prompt_tokens + usage.completion_tokens,
                    provider_cost_micros=usage.provider_cost_micros,
                    user_price_micros=price,
                    markup=usage.markup,
                    streamed=usage.streamed,
                    cost_source=usage.cost_source,
                )
            )
            await _append(conn, usage.account_id, -price, new_balance, "llm_usage", usage.request_id)
    except IntegrityError:  # a concurrent settle of the same request committed first
        async with db.connect() as conn:
            return await _replayed_settlement(conn, usage.request_id)
    over = price - held if closed is not None and price > held else 0
    if over:
        log.warning("charge above hold: request %s price %d held %d", usage.request_id, price, held)
    if closed is None:
        log.warning("settled without a pending hold: request %s", usage.request_id)
    return Settlement(usage.request_id, price, new_balance, False, over)


async def _usage_exists(conn: AsyncConnection, request_id: str) -> bool:
    return (await conn.execute(sa.select(usage_t.c.id).where(usage_t.c.request_id == request_id))).first() is not None


async def _replayed_settlement(conn: AsyncConnection, request_id: str) -> Settlement:
    entry = await _existing_entry(conn, "llm_usage", request_id)
    if entry is None:
        raise LookupError(f"no settlement for request {request_id}")
    return Settlement(request_id, -entry.amount_micros, entry.balance_after_micros, True)


async def release(db: AsyncEngine, request_id: str, *, status: str = "voided") -> bool:
    """Void a pending hold (failed or cancelled call): nothing is charged. False if it was not pending."""
    async with db.begin() as conn:
        closed = await _close_hold(conn, request_id, status)
        if closed is None:
            return False
        await conn.execute(
            sa.update(acc)
            .where(acc.c.id == closed.account_id)
            .values(held_micros=acc.c.held_micros - closed.amount_micros)
        )
        return True


async def expire_stale_holds(db: AsyncEngine, now: datetime | None = None) -> list[str]:
    """Void every pending hold past its TTL (each one means a lost settle) and return their request ids."""
    async with db.connect() as conn:
        stale = (
            await conn.execute(
                sa.select(holds.c.request_id).where(holds.c.status == "pending", holds.c.expires_at < (now or _now()))
            )
        ).scalars().all()
    expired = [rid for rid in stale if await release(db, rid, status="expired")]
    for rid in expired:
        log.error("hold expired without a settle: request %s (released)", rid)
    return expired
