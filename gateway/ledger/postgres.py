"""The ledger on PostgreSQL: hold, settle and release each as ONE statement.

The portable code (portable.py) runs BEGIN, two to five statements and COMMIT: each a round trip, and each a
SQLAlchemy Core statement built anew. On PostgreSQL, hold, settle and release instead send ONE statement
whose data-modifying CTEs write every table involved; a statement is atomic, so all of its writes happen or
none do, and it is sent outside any transaction block (autocommit: no BEGIN or COMMIT round trips). The
rules are the same, row for row: the conditional UPDATE still refuses a hold that does not fit, and the
unique constraints on request_id and (reason, reference) still decide every race (a duplicate aborts the
whole statement with an IntegrityError, as it aborts the portable transaction). The ledger tests run on
both this path and the portable one.

`OneStatement` is the ledger's backend on PostgreSQL (gateway/ledger/service.py's `Ledger` chooses it once,
when the runtime is built); as instance state it owns its asyncpg connections, its group-commit batchers and
its compiled statements, so a runtime (or a test) that closes its ledger closes them all.

Speed (bench/money_path.py, bench/RESULTS.md): the statement goes straight to an asyncpg connection of the
ledger's own pool (pg_connections.py: SQLAlchemy's execution machinery, and then its pool's checkout, cost
more CPU than asyncpg and PostgreSQL together), compiled once, and prepared once per connection by asyncpg.
Holds and settles are group-committed (pg_batches.py): those a process sends while its previous batch is in
flight go together in the next one, one round trip and one commit for all; so a busy account also has at
most one batch per process waiting on its row lock in PostgreSQL, where every commit wakes all waiters.

Errors are raised as SQLAlchemy's (IntegrityError, OperationalError, DBAPIError), like every other query.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import asyncpg
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.core.limits import KeyLimit, KeyLimitExceeded, PeriodStarts, Reset
from gateway.core.posting import InsufficientCredit
from gateway.ledger import pg_batches, pg_connections, portable
from gateway.ledger.types import MAX_MODEL_CHARS, Hold, HoldRequest, HoldStatus, Settlement, UnknownAccount, Usage

# The key's period start for its reset kind, and its use in that period (0 once the stored period ended).
_KEY_PERIOD = (
    "CASE limit_reset WHEN 'daily' THEN :day WHEN 'weekly' THEN :week WHEN 'monthly' THEN :month ELSE :epoch END"
)
_KEY_USED = f"CASE WHEN period_start = {_KEY_PERIOD} THEN period_used_micros ELSE 0 END"

# How a settle or a release moves the key's count (`key_period` in both): the hold's key and period are read
# from the close's RETURNING, the hold's newest version (set_limit may have marked the hold as counted while
# the statement waited for its row), and the key's row qualifies when its period is the hold's or it has no
# limit in the statement's snapshot; then, if set_limit committed a limit meanwhile, PostgreSQL re-checks the
# key's newest row (READ COMMITTED's re-check of a concurrently updated row) and the CASE moves the count only
# if that row's period is the hold's. A hold of a key without a limit has no period: the key is not written.

# With a key, `acct` locks the account row first (the order settle and release take too), `owned` reads the
# key (of this account) as the statement's snapshot shows it, and `keyed` counts the hold in the key's period
# only if the key has a limit, the account has room and the limit covers it; the account is reserved only if
# the key was counted, or has no limit: the account's room and the key's limit are decided together. A key
# without a limit is not written (its use is read from its calls when shown: gateway/accounts/keys.py), and
# its hold's key_period_start stays NULL, so its settle and release leave the key alone too. A limit removed
# while this statement waits on the key's row still passes (`keyed` re-checks the newest row, where
# `limit_micros IS NULL`); a limit set concurrently is not yet seen (docs/billing.md: the window of set_limit).
HOLD = sa.text(
    f"""
    WITH acct AS (
        SELECT balance_micros - held_micros AS available FROM billing_accounts WHERE id = :account_id FOR UPDATE
    ), owned AS (
        SELECT limit_micros FROM virtual_keys WHERE id = :key_id AND account_id = :account_id
    ), keyed AS (
        UPDATE virtual_keys SET period_start = {_KEY_PERIOD}, period_used_micros = {_KEY_USED} + :amount
        WHERE id = :key_id AND account_id = :account_id AND (SELECT available FROM acct) >= :amount
          AND EXISTS (SELECT FROM owned WHERE limit_micros IS NOT NULL)
          AND (limit_micros IS NULL OR {_KEY_USED} + :amount <= limit_micros)
        RETURNING period_start
    ), reserved AS (
        UPDATE billing_accounts SET held_micros = held_micros + :amount
        WHERE id = :account_id AND balance_micros - held_micros >= :amount
          AND (CAST(:key_id AS BIGINT) IS NULL OR EXISTS (SELECT FROM keyed)
               OR EXISTS (SELECT FROM owned WHERE limit_micros IS NULL))
        RETURNING balance_micros, held_micros
    ), pending AS (
        INSERT INTO credit_holds (account_id, request_id, key_id, model, amount_micros, expires_at, key_period_start)
        SELECT :account_id, :request_id, :key_id, :model, :amount, :expires_at, (SELECT period_start FROM keyed)
        FROM reserved
    )
    SELECT (SELECT balance_micros FROM reserved) AS balance_micros, (SELECT held_micros FROM reserved) AS held_micros
    """
).bindparams(
    sa.bindparam("account_id", type_=sa.BigInteger),
    sa.bindparam("request_id", type_=sa.String),
    sa.bindparam("key_id", type_=sa.BigInteger),
    sa.bindparam("model", type_=sa.String),
    sa.bindparam("amount", type_=sa.BigInteger),
    sa.bindparam("expires_at", type_=sa.DateTime(timezone=True)),
    *(sa.bindparam(name, type_=sa.DateTime(timezone=True)) for name in ("day", "week", "month", "epoch")),
)

# `acct` locks the account row first (FOR UPDATE returns its newest committed version, so the charge is
# computed from the row the UPDATE will change) and gates every write on the account existing (an unknown
# account changes nothing, as the portable rollback does). `charge` is `collectable_micros` in SQL: at most
# the pending hold and never below the other holds. `charged` runs when a pending hold was closed, or when
# there is none and the request was never settled (a late settle after expiry still charges what is
# available); otherwise it is a replay, and the final SELECT returns the first settlement. `counted`: the key
# and period of the hold just closed, else (a late settle after expiry) of the request's earlier hold.
SETTLE = sa.text(
    """
    WITH acct AS (
        SELECT balance_micros, held_micros FROM billing_accounts WHERE id = :account_id FOR UPDATE
    ), closed AS (
        UPDATE credit_holds SET status = 'posted', closed_at = :now
        WHERE request_id = :request_id AND status = 'pending' AND EXISTS (SELECT FROM acct)
        RETURNING amount_micros, key_id, key_period_start
    ), charge AS (
        SELECT CASE WHEN EXISTS (SELECT FROM closed)
                    THEN LEAST(:user_price_micros, (SELECT amount_micros FROM closed),
                               GREATEST(balance_micros - held_micros + (SELECT amount_micros FROM closed), 0))
                    ELSE LEAST(:user_price_micros, GREATEST(balance_micros - held_micros, 0)) END AS amount
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
                               markup, streamed, cost_source, route)
        SELECT :request_id, :account_id, :key_id, :model, :prompt_tokens, :completion_tokens,
               :total_tokens, :provider_cost_micros, :user_price_micros,
               :user_price_micros - (SELECT amount FROM charge), :markup, :streamed, :cost_source, :route
        FROM charged
    ), posted AS (
        INSERT INTO credit_ledger (account_id, amount_micros, balance_after_micros, reason, reference)
        SELECT :account_id, -(SELECT amount FROM charge), balance_micros, 'llm_usage', :request_id FROM charged
    ), counted AS (
        SELECT key_id, key_period_start FROM closed
        UNION ALL
        SELECT key_id, key_period_start FROM credit_holds
        WHERE request_id = :request_id AND NOT EXISTS (SELECT FROM closed)
    ), key_period AS (
        UPDATE virtual_keys SET period_used_micros = CASE WHEN virtual_keys.period_start = counted.key_period_start
            THEN GREATEST(period_used_micros + (SELECT amount FROM charge)
                          - COALESCE((SELECT amount_micros FROM closed), 0), 0)
            ELSE period_used_micros END
        FROM counted
        WHERE virtual_keys.id = counted.key_id AND counted.key_period_start IS NOT NULL
          AND (virtual_keys.period_start = counted.key_period_start OR virtual_keys.limit_micros IS NULL)
          AND EXISTS (SELECT FROM charged)
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
    sa.bindparam("account_id", type_=sa.BigInteger),
    sa.bindparam("request_id", type_=sa.String),
    sa.bindparam("now", type_=sa.DateTime(timezone=True)),
    sa.bindparam("user_price_micros", type_=sa.BigInteger),
    sa.bindparam("key_id", type_=sa.BigInteger),
    sa.bindparam("model", type_=sa.String),
    sa.bindparam("prompt_tokens", type_=sa.Integer),
    sa.bindparam("completion_tokens", type_=sa.Integer),
    sa.bindparam("total_tokens", type_=sa.Integer),
    sa.bindparam("provider_cost_micros", type_=sa.BigInteger),
    sa.bindparam("markup", type_=sa.String),
    sa.bindparam("streamed", type_=sa.Boolean),
    sa.bindparam("cost_source", type_=sa.String),
    sa.bindparam("route", type_=sa.String),
)

# The key's period use is given back after the account's row is written (the lock order of hold and settle).
RELEASE = sa.text(
    """
    WITH closed AS (
        UPDATE credit_holds SET status = :status, closed_at = :now
        WHERE request_id = :request_id AND status = 'pending'
        RETURNING account_id, amount_micros, key_id, key_period_start
    ), key_period AS (
        UPDATE virtual_keys SET period_used_micros = CASE WHEN virtual_keys.period_start = closed.key_period_start
            THEN GREATEST(period_used_micros - closed.amount_micros, 0) ELSE period_used_micros END
        FROM closed
        WHERE virtual_keys.id = closed.key_id AND closed.key_period_start IS NOT NULL
          AND (virtual_keys.period_start = closed.key_period_start OR virtual_keys.limit_micros IS NULL)
    )
    UPDATE billing_accounts SET held_micros = billing_accounts.held_micros - closed.amount_micros
    FROM closed WHERE billing_accounts.id = closed.account_id
    RETURNING billing_accounts.id
    """
).bindparams(
    sa.bindparam("request_id", type_=sa.String),
    sa.bindparam("status", type_=sa.String),
    sa.bindparam("now", type_=sa.DateTime(timezone=True)),
)


class OneStatement:
    """The ledger's backend on one PostgreSQL engine: hold, settle and release, one statement each."""

    def __init__(self, db: AsyncEngine) -> None:
        self.db = db
        self._portable = portable.Transactions(db)  # flexible holds that do not fit in full
        self._compiled = {id(statement): _compile(statement, db) for statement in (HOLD, SETTLE, RELEASE)}
        self._connect_args = pg_connections.connect_args(db)
        self._connections: pg_connections.Connections | None = None
        self._batchers: dict[str, pg_batches.Batcher] = {}
        sa.event.listen(db.sync_engine, "engine_disposed", self._disposed)

    async def hold(self, wanted: HoldRequest) -> Hold:
        """Reserve exactly the amount (and count it in the period of a key with a limit) in one statement; when
        it does not fit the account or the key's limit: InsufficientCredit or KeyLimitExceeded, or with a
        `floor` the portable transaction, which reserves what is available."""
        periods = PeriodStarts.at(wanted.now)
        params = {
            "day": periods.daily,
            "week": periods.weekly,
            "month": periods.monthly,
            "epoch": periods.none,
            "account_id": wanted.account_id,
            "request_id": wanted.request_id,
            "key_id": wanted.key_id,
            "model": wanted.model[:MAX_MODEL_CHARS],
            "amount": wanted.amount,
            "expires_at": wanted.expires_at,
        }
        row = await self._execute(HOLD, params, wanted.account_id)
        if row is not None and row["balance_micros"] is not None:  # else the statement's one row holds NULLs
            return Hold(wanted.request_id, wanted.account_id, wanted.amount, row["balance_micros"], row["held_micros"])
        if wanted.floor is None:
            raise await self._refusal(wanted.account_id, wanted.key_id, wanted.amount, wanted.now)
        return await self._portable.hold(wanted)

    async def _refusal(self, account_id: int, key_id: int | None, amount: int, now: datetime) -> Exception:
        """Why a one-statement hold was refused: the account's credit, else the key's limit."""
        async with self.db.connect() as conn:
            current = await conn.run_sync(portable.read_balance, account_id)
            if current.available_micros < amount or key_id is None:
                return InsufficientCredit(current.balance_micros, current.held_micros, amount)
            limit = await conn.run_sync(portable.read_key_limit, key_id, now, account_id)
        if limit is None:  # no such key on this account: it may spend nothing
            return KeyLimitExceeded(KeyLimit(0, Reset.NONE, 0, None), amount)
        if limit.limit_micros is None:  # no limit: a settle freed credit since the refusal
            return InsufficientCredit(current.balance_micros, current.held_micros, amount)
        return KeyLimitExceeded(limit, amount)

    async def settle(self, usage: Usage, now: datetime) -> tuple[Settlement, int | None]:
        """The settlement and the hold it posted (None: none was pending, or a replay)."""
        params = usage.row(uncollected_micros=0)
        del params["uncollected_micros"]  # computed by the statement
        row = await self._execute(SETTLE, {**params, "now": now}, usage.account_id)
        assert row is not None  # the statement always returns its one summary row
        return _settled(usage, row)

    async def release(self, request_id: str, status: HoldStatus, now: datetime) -> bool:
        params = {"request_id": request_id, "status": status, "now": now}
        return await self._execute(RELEASE, params) is not None

    def close(self) -> None:
        """Close this ledger's connections (a lent one when it comes back); the engine is its owner's to dispose."""
        if sa.event.contains(self.db.sync_engine, "engine_disposed", self._disposed):
            sa.event.remove(self.db.sync_engine, "engine_disposed", self._disposed)
        self._disposed(None)

    def _disposed(self, _engine: object) -> None:
        if self._connections is not None:
            self._connections.close()
            self._connections = None

    def connections(self) -> pg_connections.Connections:
        """The pool of the running event loop (created on first use; the pool of an earlier loop is closed)."""
        pool = self._connections
        if pool is not None and pool.serves_running_loop():
            return pool
        if pool is not None:
            pool.close()
        pool = self._connections = pg_connections.Connections(self._connect_args)
        return pool

    async def _execute(
        self, statement: sa.TextClause, params: Mapping[str, Any], account_id: int | None = None
    ) -> asyncpg.Record | None:
        """Run one statement (autocommit) and return its first row or None; one on an account (hold, settle)
        goes in this ledger's next batch of its kind (pg_batches.py: group commit)."""
        sql, names = self._compiled[id(statement)]
        args = [params[name] for name in names]
        if account_id is None:
            (row,) = await self._send(sql, [args])
            return row
        return await self._batcher(sql).run(account_id, args)

    def _batcher(self, sql: str) -> pg_batches.Batcher:
        """The batcher of `sql` for the running event loop."""
        found = self._batchers.get(sql)
        if found is None or found.loop is not asyncio.get_running_loop():
            found = self._batchers[sql] = pg_batches.Batcher(sql, self._send)
        return found

    async def _send(self, sql: str, arg_sets: list[list[Any]]) -> list[asyncpg.Record | None]:
        """The first row of each statement (one per argument set, all in one atomic batch when several). Every
        statement here is idempotent (on the request id), so a batch that met a dead pooled connection (the
        server restarted, or the network dropped it) is sent once more on a fresh one before it fails."""
        try:
            return await self._send_once(sql, arg_sets)
        except _DeadConnection:
            pass
        try:
            return await self._send_once(sql, arg_sets)
        except _DeadConnection as dead:
            raise sa.exc.OperationalError(sql, arg_sets, dead.cause) from dead.cause

    async def _send_once(self, sql: str, arg_sets: list[list[Any]]) -> list[asyncpg.Record | None]:
        try:
            async with self.connections().lend() as driver:  # closes it unless the batch completed
                if len(arg_sets) == 1:
                    return [await driver.fetchrow(sql, *arg_sets[0])]
                return list(await driver.fetchmany(sql, arg_sets))
        except asyncpg.IntegrityConstraintViolationError as exc:
            raise IntegrityError(sql, arg_sets, exc) from exc
        except pg_connections.WIRE_ERRORS as exc:
            raise _DeadConnection(exc) from exc
        except asyncpg.PostgresError as exc:
            raise sa.exc.DBAPIError(sql, arg_sets, exc) from exc


def _settled(usage: Usage, row: asyncpg.Record) -> tuple[Settlement, int | None]:
    """The Settlement a one-statement settle's summary row describes, and the hold it posted."""
    if row["balance_after_micros"] is None:  # nothing written
        if not row["account_exists"]:
            raise UnknownAccount(usage.account_id)
        if row["first_price_micros"] is None:
            raise LookupError(f"no settlement for request {usage.request_id}")
        first = Settlement(
            usage.request_id,
            row["first_price_micros"],
            row["first_balance_after_micros"],
            True,
            row["first_uncollected_micros"],
        )
        return first, None
    uncollected = usage.user_price_micros - row["charged_micros"]
    settlement = Settlement(usage.request_id, usage.user_price_micros, row["balance_after_micros"], False, uncollected)
    return settlement, row["held_micros"]


class _DeadConnection(Exception):
    """The pooled connection failed before or while the statement ran (the pool has closed it)."""

    def __init__(self, cause: BaseException) -> None:
        super().__init__(str(cause))
        self.cause = cause


def _compile(statement: sa.TextClause, db: AsyncEngine) -> tuple[str, tuple[str, ...]]:
    """ "$1::BIGINT"-style SQL for `db`'s dialect and the names of $1, $2, ..."""
    compiled = statement.compile(dialect=db.dialect)
    return str(compiled), tuple(compiled.positiontup or ())
