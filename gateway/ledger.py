"""The ledger service: every balance change and every hold, each one database transaction.

Vocabulary (as in TigerBeetle): a *grant* credits an account (payment, admin grant, refund); a *hold* is a
pending debit that reserves credit for one request; a *settle* posts it (records `llm_usage`, debits the
actual user price, closes the hold); a *release* voids it. Balance changes append exactly one
`credit_ledger` row in the same transaction; `(reason, reference)` and `request_id` make every write
idempotent: replaying it returns the first result and changes nothing.

"available >= hold" is enforced by the UPDATE's WHERE clause, so concurrent holds can never reserve more
than the balance, on any number of processes.

On PostgreSQL, hold, settle and release (the calls on every LLM request) each run as ONE statement: see
"PostgreSQL: one statement per operation" at the end of this module.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import weakref
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import asyncpg
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from gateway.db.schema import billing_accounts as acc
from gateway.db.schema import credit_holds as holds
from gateway.db.schema import credit_ledger as ledger
from gateway.db.schema import llm_usage as usage_t

log = logging.getLogger("gateway.ledger")

REASONS = frozenset({"onchain_payment", "llm_usage", "admin_grant", "refund", "adjustment"})
# $1e9 a write: far above any real top-up, far below BIGINT (SQLite would silently turn an overflow into a float)
MAX_ENTRY_MICROS = 10**15


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
    user_price_micros: int  # what the call cost at user prices
    balance_after_micros: int
    replayed: bool
    uncollected_micros: int = 0  # the part of the price above what the account could be charged (operator loss)

    @property
    def charged_micros(self) -> int:
        return self.user_price_micros - self.uncollected_micros


def collectable_micros(price: int, hold: int | None, balance: int, held: int) -> int:
    """What a settle may take from the account: never more than the call's pending hold, and never so much
    that the balance would no longer cover the other holds (so it never goes below zero).

    `held` is the account's held total *including* `hold`; `hold` is None when no hold was pending (it
    expired before the call ended). The PostgreSQL statement `_PG_SETTLE` computes the same expression.
    """
    cover = hold or 0
    room = max(balance - held + cover, 0)
    return min(price, room) if hold is None else min(price, cover, room)


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
    try:
        async with db.begin() as conn:
            return await post_entry_in(conn, account_id, amount_micros, reason, reference)
    except IntegrityError:  # a concurrent writer committed the same (reason, reference) first
        async with db.connect() as conn:
            existing = await _existing_entry(conn, reason, reference)
        if existing is None:
            raise
        return existing


async def post_entry_in(
    conn: AsyncConnection, account_id: int, amount_micros: int, reason: str, reference: str
) -> LedgerEntry:
    """`post_entry` inside the caller's transaction, so that the entry commits together with the caller's
    own writes (a payment row marked credited). A concurrent duplicate surfaces as an IntegrityError in
    the caller's transaction unless the caller serialises on a row of its own (as gateway.payments does).
    """
    if reason not in REASONS:
        raise ValueError(f"unknown ledger reason {reason!r}")
    if not isinstance(amount_micros, int) or isinstance(amount_micros, bool):
        raise TypeError("amounts are integers of micros")
    if abs(amount_micros) > MAX_ENTRY_MICROS:
        raise ValueError(f"a ledger entry moves at most {MAX_ENTRY_MICROS} micros")
    if not reference:
        raise ValueError("a ledger entry needs a reference")
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
    expires_at = _now() + timedelta(seconds=ttl_seconds)
    if _one_statement_dialect(db):
        try:
            row = await _pg_execute(db, _PG_HOLD, {
                "account_id": account_id, "request_id": request_id, "key_id": key_id, "model": model[:200],
                "amount": amount_micros, "expires_at": expires_at,
            }, account_id)
        except IntegrityError:  # the same request id was held before: return that hold
            existing = await get_hold(db, request_id)
            if existing is None:
                raise
            return existing
        if row is not None:
            return Hold(request_id, account_id, amount_micros, row["balance_micros"], row["held_micros"])
        if min_micros is None:
            current = await get_balance(db, account_id)
            raise InsufficientCredit(current.balance_micros, current.held_micros, amount_micros)
        # a flexible hold that does not fit in full: the portable path below reserves what is available
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
                    expires_at=expires_at,
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

    The debit never exceeds the pending hold, nor what the account has beyond its other holds (a balance
    never goes below zero): a price above that is recorded as `uncollected_micros` (operator loss), logged,
    and listed by `gateway reconcile`. Without a pending hold (it expired before the call ended) the call is
    still charged, from what is available: the service was delivered.
    """
    if usage.user_price_micros < usage.provider_cost_micros:
        raise ValueError("user price below provider cost")
    if _one_statement_dialect(db):
        return await _pg_settle(db, usage)
    price = usage.user_price_micros
    try:
        async with db.begin() as conn:
            closed = await _close_hold(conn, usage.request_id, "posted")
            if closed is None and await _usage_exists(conn, usage.request_id):
                return await _replayed_settlement(conn, usage.request_id)
            held = closed.amount_micros if closed is not None else None
            current = await _read_balance(conn, usage.account_id)  # after our write: the row is ours until commit
            charge = collectable_micros(price, held, current.balance_micros, current.held_micros)
            new_balance = (
                await conn.execute(
                    sa.update(acc)
                    .where(acc.c.id == usage.account_id)
                    .values(balance_micros=acc.c.balance_micros - charge, held_micros=acc.c.held_micros - (held or 0))
                    .returning(acc.c.balance_micros)
                )
            ).scalar_one()
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
                    uncollected_micros=price - charge,
                    markup=usage.markup,
                    streamed=usage.streamed,
                    cost_source=usage.cost_source,
                )
            )
            await _append(conn, usage.account_id, -charge, new_balance, "llm_usage", usage.request_id)
    except IntegrityError:  # a concurrent settle of the same request committed first
        async with db.connect() as conn:
            return await _replayed_settlement(conn, usage.request_id)
    return _settled(usage, held, new_balance, price - charge)


def _settled(usage: Usage, held: int | None, balance_after: int, uncollected: int) -> Settlement:
    if uncollected:
        log.warning(
            "uncollected: request %s account %d price %d held %s: %d micros not charged (operator loss)",
            usage.request_id, usage.account_id, usage.user_price_micros, held, uncollected,
        )
    if held is None:
        log.warning("settled without a pending hold: request %s", usage.request_id)
    return Settlement(usage.request_id, usage.user_price_micros, balance_after, False, uncollected)


async def _usage_exists(conn: AsyncConnection, request_id: str) -> bool:
    return (await conn.execute(sa.select(usage_t.c.id).where(usage_t.c.request_id == request_id))).first() is not None


async def _replayed_settlement(conn: AsyncConnection, request_id: str) -> Settlement:
    row = (
        await conn.execute(
            sa.select(usage_t.c.user_price_micros, usage_t.c.uncollected_micros, ledger.c.balance_after_micros)
            .join(ledger, sa.and_(ledger.c.reason == "llm_usage", ledger.c.reference == usage_t.c.request_id))
            .where(usage_t.c.request_id == request_id)
        )
    ).first()
    if row is None:
        raise LookupError(f"no settlement for request {request_id}")
    return Settlement(request_id, row.user_price_micros, row.balance_after_micros, True, row.uncollected_micros)


async def release(db: AsyncEngine, request_id: str, *, status: str = "voided") -> bool:
    """Void a pending hold (failed or cancelled call): nothing is charged. False if it was not pending."""
    if _one_statement_dialect(db):
        return await _pg_execute(db, _PG_RELEASE, {"request_id": request_id, "status": status, "now": _now()}) is not None
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


async def expire_stale_holds(db: AsyncEngine, now: datetime | None = None, grace_seconds: int = 0) -> list[str]:
    """Void every pending hold past its TTL plus `grace_seconds` (each one means a lost settle) and return their
    request ids. The grace leaves time for settles waiting in a proxy's spool (gateway.spool); the expiry is
    a conditional write (`release` acts only on a pending hold), so two sweepers, or a sweeper and a late
    settle, never act twice on one hold."""
    cutoff = (now or _now()) - timedelta(seconds=grace_seconds)
    async with db.connect() as conn:
        stale = (
            await conn.execute(sa.select(holds.c.request_id).where(holds.c.status == "pending", holds.c.expires_at < cutoff))
        ).scalars().all()
    expired = [rid for rid in stale if await release(db, rid, status="expired")]
    for rid in expired:
        log.error("hold expired without a settle: request %s (released)", rid)
    return expired


# ---- PostgreSQL: one statement per operation ------------------------------------------------------
#
# The portable code above runs BEGIN, two to five statements and COMMIT: each a round trip, and each a
# SQLAlchemy Core statement built anew. On PostgreSQL, hold, settle and release instead send ONE
# statement whose data-modifying CTEs write every table involved; a statement is atomic, so all of
# its writes happen or none do, and it is sent outside any transaction block (autocommit: no BEGIN or
# COMMIT round trips). The rules are the same as above, row for row: the conditional UPDATE still
# refuses a hold that does not fit, and the unique constraints on request_id and (reason, reference)
# still decide every race (a duplicate aborts the whole statement with an IntegrityError, as it aborts
# the transaction above). tests/test_ledger.py runs on PostgreSQL, so it exercises exactly this path;
# SQLite (the embedded default) keeps the portable one.
#
# Speed (bench/money_path.py, bench/RESULTS.md): the statement goes straight to the asyncpg connection
# that SQLAlchemy's pool lends us (SQLAlchemy's per-statement execution machinery cost more CPU than
# asyncpg and PostgreSQL together), compiled once, and prepared once per connection by asyncpg. Calls
# on one account take turns within a process (`_account_turn`), so a busy account has at most one
# statement per process waiting on its row lock in PostgreSQL, where every commit wakes all waiters.

_PG_HOLD = sa.text(
    """
    WITH reserved AS (
        UPDATE billing_accounts SET held_micros = held_micros + :amount
        WHERE id = :account_id AND balance_micros - held_micros >= :amount
        RETURNING balance_micros, held_micros
    ), pending AS (
        INSERT INTO credit_holds (account_id, request_id, key_id, model, amount_micros, expires_at)
        SELECT :account_id, :request_id, :key_id, :model, :amount, :expires_at FROM reserved
    )
    SELECT balance_micros, held_micros FROM reserved
    """
).bindparams(
    sa.bindparam("account_id", type_=sa.BigInteger), sa.bindparam("request_id", type_=sa.String),
    sa.bindparam("key_id", type_=sa.BigInteger), sa.bindparam("model", type_=sa.String),
    sa.bindparam("amount", type_=sa.BigInteger), sa.bindparam("expires_at", type_=sa.DateTime(timezone=True)),
)

# `acct` locks the account row first (FOR UPDATE returns its newest committed version, so the charge is
# computed from the row the UPDATE will change) and gates every write on the account existing (an unknown
# account changes nothing, as the rollback does above). `charge` is `collectable_micros` in SQL: at most the
# pending hold and never below the other holds. `charged` runs when a pending hold was closed, or when there
# is none and the request was never settled (a late settle after expiry still charges what is available);
# otherwise it is a replay, and the final SELECT returns the first settlement.
_PG_SETTLE = sa.text(
    """
    WITH acct AS (
        SELECT balance_micros, held_micros FROM billing_accounts WHERE id = :account_id FOR UPDATE
    ), closed AS (
        UPDATE credit_holds SET status = 'posted', closed_at = :now
        WHERE request_id = :request_id AND status = 'pending' AND EXISTS (SELECT FROM acct)
        RETURNING amount_micros
    ), charge AS (
        SELECT CASE WHEN EXISTS (SELECT FROM closed)
                    THEN LEAST(:price, (SELECT amount_micros FROM closed),
                               GREATEST(balance_micros - held_micros + (SELECT amount_micros FROM closed), 0))
                    ELSE LEAST(:price, GREATEST(balance_micros - held_micros, 0)) END AS amount
        FROM acct
    ), charged AS (
        UPDATE billing_accounts
        SET balance_micros = balance_micros - (SELECT amount FROM charge),
            held_micros = held_micros - COALESCE((SELECT amount_micros FROM closed), 0)
        WHERE id = :account_id
          AND (EXISTS (SELECT FROM closed) OR NOT EXISTS (SELECT FROM llm_usage WHERE request_id = :request_id))
        RETURNING balance_micros
    ), recorded AS (
        INSERT INTO llm_usage (request_id, account_id, key_id, model, prompt_tokens, completion_tokens,
                               total_tokens, provider_cost_micros, user_price_micros, uncollected_micros,
                               markup, streamed, cost_source)
        SELECT :request_id, :account_id, :key_id, :model, :prompt_tokens, :completion_tokens,
               :total_tokens, :provider_cost, :price, :price - (SELECT amount FROM charge),
               :markup, :streamed, :cost_source
        FROM charged
    ), posted AS (
        INSERT INTO credit_ledger (account_id, amount_micros, balance_after_micros, reason, reference)
        SELECT :account_id, -(SELECT amount FROM charge), balance_micros, 'llm_usage', :request_id FROM charged
    )
    SELECT (SELECT amount_micros FROM closed) AS held_micros,
           (SELECT balance_micros FROM charged) AS balance_after_micros,
           (SELECT amount FROM charge) AS charged_micros,
           EXISTS (SELECT FROM acct) AS account_exists,
           first.user_price_micros AS first_price_micros,
           first.uncollected_micros AS first_uncollected_micros,
           entry.balance_after_micros AS first_balance_after_micros
    FROM (SELECT 1) AS one
    LEFT JOIN llm_usage AS first ON first.request_id = :request_id
    LEFT JOIN credit_ledger AS entry ON entry.reason = 'llm_usage' AND entry.reference = :request_id
    """
).bindparams(
    sa.bindparam("account_id", type_=sa.BigInteger), sa.bindparam("request_id", type_=sa.String),
    sa.bindparam("now", type_=sa.DateTime(timezone=True)), sa.bindparam("price", type_=sa.BigInteger),
    sa.bindparam("key_id", type_=sa.BigInteger), sa.bindparam("model", type_=sa.String),
    sa.bindparam("prompt_tokens", type_=sa.Integer), sa.bindparam("completion_tokens", type_=sa.Integer),
    sa.bindparam("total_tokens", type_=sa.Integer), sa.bindparam("provider_cost", type_=sa.BigInteger),
    sa.bindparam("markup", type_=sa.String), sa.bindparam("streamed", type_=sa.Boolean),
    sa.bindparam("cost_source", type_=sa.String),
)

_PG_RELEASE = sa.text(
    """
    WITH closed AS (
        UPDATE credit_holds SET status = :status, closed_at = :now
        WHERE request_id = :request_id AND status = 'pending'
        RETURNING account_id, amount_micros
    )
    UPDATE billing_accounts SET held_micros = billing_accounts.held_micros - closed.amount_micros
    FROM closed WHERE billing_accounts.id = closed.account_id
    RETURNING billing_accounts.id
    """
).bindparams(
    sa.bindparam("request_id", type_=sa.String), sa.bindparam("status", type_=sa.String),
    sa.bindparam("now", type_=sa.DateTime(timezone=True)),
)


def _one_statement_dialect(db: AsyncEngine) -> bool:
    return db.dialect.name == "postgresql"


_compiled: dict[int, tuple[str, tuple[str, ...]]] = {}
_turns: weakref.WeakValueDictionary[int, asyncio.Lock] = weakref.WeakValueDictionary()


def _account_turn(account_id: int) -> asyncio.Lock:
    """The lock that lines up this process's money statements on one account (gone when nobody holds it)."""
    turn = _turns.get(account_id)
    if turn is None:
        turn = _turns[account_id] = asyncio.Lock()
    return turn


async def _pg_execute(db: AsyncEngine, statement: sa.TextClause, params: dict, account_id: int | None = None):  # noqa: ANN201
    """Run one statement on its own (autocommit) and return its first row (an asyncpg Record) or None.

    Errors are raised as SQLAlchemy's (IntegrityError, OperationalError, DBAPIError), like every other query.
    """
    if account_id is None:
        return await _pg_fetchrow(db, statement, params)
    async with _account_turn(account_id):  # wait here, before taking a connection from the pool
        return await _pg_fetchrow(db, statement, params)


async def _pg_fetchrow(db: AsyncEngine, statement: sa.TextClause, params: dict):  # noqa: ANN202
    """Every statement here is idempotent (on the request id), so one that met a dead pooled connection (the
    server restarted, or the network dropped it) is sent once more on a fresh one before the call fails."""
    sql, names = _compiled.get(id(statement)) or _compile(statement, db)
    args = [params[name] for name in names]
    try:
        return await _fetchrow_once(db, sql, args)
    except _DeadConnection:
        pass
    try:
        return await _fetchrow_once(db, sql, args)
    except _DeadConnection as dead:
        raise sa.exc.OperationalError(sql, args, dead.__cause__) from dead.__cause__


class _DeadConnection(Exception):
    """The pooled connection failed before or while the statement ran (it has been discarded)."""


async def _fetchrow_once(db: AsyncEngine, sql: str, args: list):  # noqa: ANN202
    async with db.connect() as conn:
        driver = (await conn.get_raw_connection()).driver_connection
        try:
            return await driver.fetchrow(sql, *args)
        except asyncpg.IntegrityConstraintViolationError as exc:
            raise IntegrityError(sql, args, exc) from exc
        except (asyncpg.PostgresConnectionError, asyncpg.InterfaceError, OSError, asyncio.TimeoutError) as exc:
            await _discard(conn)
            raise _DeadConnection from exc
        except asyncpg.PostgresError as exc:
            raise sa.exc.DBAPIError(sql, args, exc) from exc
        except BaseException:  # cancelled mid-statement: the connection may still be busy with it
            await _discard(conn)
            raise


async def _discard(conn: AsyncConnection) -> None:
    """Make sure the pool never lends this connection again (its state is unknown)."""
    with contextlib.suppress(Exception):
        await conn.invalidate()


def _compile(statement: sa.TextClause, db: AsyncEngine) -> tuple[str, tuple[str, ...]]:
    compiled = statement.compile(dialect=db.dialect)  # "$1::BIGINT"-style SQL and the names of $1, $2, ...
    _compiled[id(statement)] = result = (str(compiled), tuple(compiled.positiontup or ()))
    return result


async def _pg_settle(db: AsyncEngine, usage: Usage) -> Settlement:
    price = usage.user_price_micros
    try:
        row = await _pg_execute(db, _PG_SETTLE, {
            "account_id": usage.account_id, "request_id": usage.request_id, "now": _now(), "price": price,
            "key_id": usage.key_id, "model": usage.model[:200], "prompt_tokens": usage.prompt_tokens,
            "completion_tokens": usage.completion_tokens, "total_tokens": usage.prompt_tokens + usage.completion_tokens,
            "provider_cost": usage.provider_cost_micros, "markup": usage.markup, "streamed": usage.streamed,
            "cost_source": usage.cost_source,
        }, usage.account_id)
    except IntegrityError:  # a concurrent settle of the same request committed first
        async with db.connect() as conn:
            return await _replayed_settlement(conn, usage.request_id)
    if row["balance_after_micros"] is None:  # nothing written
        if not row["account_exists"]:
            raise UnknownAccount(usage.account_id)
        if row["first_price_micros"] is None:
            raise LookupError(f"no settlement for request {usage.request_id}")
        return Settlement(
            usage.request_id, row["first_price_micros"], row["first_balance_after_micros"], True, row["first_uncollected_micros"]
        )
    return _settled(usage, row["held_micros"], row["balance_after_micros"], price - row["charged_micros"])
