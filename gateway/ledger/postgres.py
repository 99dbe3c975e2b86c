"""The ledger on PostgreSQL: hold, settle and release each as ONE statement.

The portable code (portable.py) runs BEGIN, two to five statements and COMMIT: each a round trip, and each a
SQLAlchemy Core statement built anew. On PostgreSQL, hold, settle and release instead send ONE statement
whose data-modifying CTEs write every table involved; a statement is atomic, so all of its writes happen or
none do, and it is sent outside any transaction block (autocommit: no BEGIN or COMMIT round trips). The
rules are the same, row for row: the conditional UPDATE still refuses a hold that does not fit, and the
unique constraints on request_id and (reason, reference) still decide every race (a duplicate aborts the
whole statement with an IntegrityError, as it aborts the portable transaction). The ledger tests run on
both this path and the portable one.

Speed (bench/money_path.py, bench/RESULTS.md): the statement goes straight to an asyncpg connection of the
ledger's own pool (pg_connections.py: SQLAlchemy's execution machinery, and then its pool's checkout, cost
more CPU than asyncpg and PostgreSQL together), compiled once, and prepared once per connection by asyncpg.
Holds and settles are group-committed (pg_batches.py): those a process sends while its previous batch is in
flight go together in the next one, one round trip and one commit for all; so a busy account also has at
most one batch per process waiting on its row lock in PostgreSQL, where every commit wakes all waiters.

Errors are raised as SQLAlchemy's (IntegrityError, OperationalError, DBAPIError), like every other query.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

import asyncpg
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.core.limits import PeriodStarts
from gateway.ledger import pg_batches, pg_connections
from gateway.ledger.types import MAX_MODEL_CHARS, Usage

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


def serves(db: AsyncEngine) -> bool:
    """Whether `db` takes the one-statement path."""
    return db.dialect.name == "postgresql"


async def hold(
    db: AsyncEngine,
    account_id: int,
    request_id: str,
    amount: int,
    expires_at: datetime,
    key_id: int | None,
    model: str,
    periods: PeriodStarts,
) -> asyncpg.Record | None:
    """Reserve exactly `amount` (and count it in the period of a key with a limit): the account's (balance,
    held) after it, or None if it does not fit the account or the key's limit (the statement's one row then
    holds NULLs)."""
    params = {
        "day": periods.daily,
        "week": periods.weekly,
        "month": periods.monthly,
        "epoch": periods.none,
        "account_id": account_id,
        "request_id": request_id,
        "key_id": key_id,
        "model": model[:MAX_MODEL_CHARS],
        "amount": amount,
        "expires_at": expires_at,
    }
    row = await _execute(db, HOLD, params, account_id)
    return row if row is not None and row["balance_micros"] is not None else None


async def settle(db: AsyncEngine, usage: Usage, now: datetime) -> asyncpg.Record:
    params = usage.row(uncollected_micros=0)
    del params["uncollected_micros"]  # computed by the statement
    row = await _execute(db, SETTLE, {**params, "now": now}, usage.account_id)
    assert row is not None  # the statement always returns its one summary row
    return row


async def release(db: AsyncEngine, request_id: str, status: str, now: datetime) -> bool:
    return await _execute(db, RELEASE, {"request_id": request_id, "status": status, "now": now}) is not None


_compiled: dict[int, tuple[str, tuple[str, ...]]] = {}


async def _execute(
    db: AsyncEngine, statement: sa.TextClause, params: Mapping[str, Any], account_id: int | None = None
) -> asyncpg.Record | None:
    """Run one statement (autocommit) and return its first row or None; one on an account (hold, settle) goes
    in this process's next batch of its kind (pg_batches.py: group commit)."""
    sql, names = _compiled.get(id(statement)) or _compile(statement, db)
    args = [params[name] for name in names]
    if account_id is None:
        (row,) = await _send(db, sql, [args])
        return row
    return await pg_batches.batcher(db, sql, _send).run(account_id, args)


async def _send(db: AsyncEngine, sql: str, arg_sets: list[list[Any]]) -> list[asyncpg.Record | None]:
    """The first row of each statement (one per argument set, all in one atomic batch when several). Every
    statement here is idempotent (on the request id), so a batch that met a dead pooled connection (the
    server restarted, or the network dropped it) is sent once more on a fresh one before it fails."""
    try:
        return await _send_once(db, sql, arg_sets)
    except _DeadConnection:
        pass
    try:
        return await _send_once(db, sql, arg_sets)
    except _DeadConnection as dead:
        raise sa.exc.OperationalError(sql, arg_sets, dead.cause) from dead.cause


class _DeadConnection(Exception):
    """The pooled connection failed before or while the statement ran (the pool has closed it)."""

    def __init__(self, cause: BaseException) -> None:
        super().__init__(str(cause))
        self.cause = cause


async def _send_once(db: AsyncEngine, sql: str, arg_sets: list[list[Any]]) -> list[asyncpg.Record | None]:
    try:
        async with pg_connections.for_engine(db).lend() as driver:  # closes it unless the batch completed
            if len(arg_sets) == 1:
                return [await driver.fetchrow(sql, *arg_sets[0])]
            return list(await driver.fetchmany(sql, arg_sets))
    except asyncpg.IntegrityConstraintViolationError as exc:
        raise IntegrityError(sql, arg_sets, exc) from exc
    except pg_connections.WIRE_ERRORS as exc:
        raise _DeadConnection(exc) from exc
    except asyncpg.PostgresError as exc:
        raise sa.exc.DBAPIError(sql, arg_sets, exc) from exc


def _compile(statement: sa.TextClause, db: AsyncEngine) -> tuple[str, tuple[str, ...]]:
    compiled = statement.compile(dialect=db.dialect)  # "$1::BIGINT"-style SQL and the names of $1, $2, ...
    _compiled[id(statement)] = result = (str(compiled), tuple(compiled.positiontup or ()))
    return result
