"""Virtual API keys: create (raw key shown once), list, revoke, set a credit limit, each key's use as shown to its
owner, and the cached key -> account lookup (which also says whether the account is frozen by an operator).

A key's use in its current period: the ledger counts it on the key's row (`period_used_micros`) only for a key
with a limit, in the hold's own write (gateway/ledger/); a key without one is not written on the hot path, and
its use is read from its calls when shown: the charges of its settled calls since its period started
(`llm_usage`) plus its pending holds (`credit_holds`). Setting a limit on such a key starts the counter from
that same reading (`set_limit`).

Only the SHA-256 of a key is stored. Lookups are cached briefly (positive and negative) so the hot path
rarely touches the database; revoking deletes the cache entry, and every process forgets it within the
cache TTL (a few seconds at most); freezing or unfreezing an account deletes the entries of all its keys
(`forget_account_keys`). Redis trouble never fails a lookup: the cache then answers a miss and
the database decides (`gateway.cache`); only the database being down does.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from gateway.cache.ttl import TTLCache
from gateway.core.limits import KeyLimit, Reset, key_limit, next_reset, period_start
from gateway.core.money import micros_to_credits
from gateway.db.engine import read_once_more_after_disconnect
from gateway.db.schema import HoldStatus, as_utc, billing_accounts, credit_holds, llm_usage
from gateway.db.schema import virtual_keys as vk

KEY_PREFIX = "sk-cg-"
_KEY_SHAPE = re.compile(r"^sk-cg-[A-Za-z0-9_-]{43}$")
_NEGATIVE = "-"
MAX_LIMIT_MICROS = 10**15  # the most one ledger write may move (gateway.ledger.MAX_ENTRY_MICROS)


@dataclass(frozen=True)
class KeyOwner:
    key_id: int
    account_id: int
    frozen: bool = False  # the account is frozen by an operator: its calls are refused (403 account_frozen)


@dataclass(frozen=True)
class KeyInfo:
    id: int
    account_id: int
    prefix: str
    label: str
    created_at: datetime | None
    revoked_at: datetime | None
    limit: KeyLimit  # its credit limit (limit_micros None: none) and use as of when it was read

    @property
    def active(self) -> bool:
        return self.revoked_at is None


@dataclass(frozen=True)
class NewKey:
    info: KeyInfo
    raw_key: str  # returned once, never stored


def hash_key(raw_key: str) -> str:
    return hashlib.sha256(raw_key.encode()).hexdigest()


def is_well_formed(raw_key: str) -> bool:
    return bool(_KEY_SHAPE.match(raw_key or ""))


def _info(row: sa.Row[Any], now: datetime, used_by_calls: dict[int, int]) -> KeyInfo:
    """The key as shown: with a limit, its counted use; without, its use read from its calls (`used_by_calls`,
    key id -> micros, absent: none)."""
    if row.limit_micros is None:
        limit = KeyLimit(None, row.limit_reset, used_by_calls.get(row.id, 0), next_reset(row.limit_reset, now))
    else:
        since = as_utc(row.period_start) if row.period_start else None
        limit = key_limit(row.limit_micros, row.limit_reset, row.period_used_micros, since, now)
    return KeyInfo(row.id, row.account_id, row.key_prefix, row.label, row.created_at, row.revoked_at, limit)


async def _shown(conn: AsyncConnection, rows: Sequence[sa.Row[Any]], now: datetime) -> list[KeyInfo]:
    """The keys as shown, reading the use of those without a limit from their calls in one grouped query."""
    unlimited = [row for row in rows if row.limit_micros is None]
    used: dict[int, int] = {}
    if unlimited:
        charged = _charged_since_period_start(unlimited, now)
        pending = sa.select(credit_holds.c.key_id, credit_holds.c.amount_micros.label("micros")).where(
            credit_holds.c.account_id.in_(sorted({row.account_id for row in unlimited})),
            credit_holds.c.status == HoldStatus.PENDING,
            credit_holds.c.key_id.in_([row.id for row in unlimited]),
        )
        calls = sa.union_all(charged, pending).subquery()
        query = sa.select(calls.c.key_id, sa.func.sum(calls.c.micros)).group_by(calls.c.key_id)
        used = {key_id: int(micros) for key_id, micros in (await conn.execute(query)).all()}
    return [_info(row, now, used) for row in rows]


def _charged_since_period_start(keys: Sequence[sa.Row[Any]], now: datetime) -> sa.Select[tuple[int, int]]:
    """(key id, charge) of each settled call of `keys` in its key's current period: what the account was
    charged (`user_price_micros - uncollected_micros`), since the period of the key's `limit_reset` started
    (all time for `none`), on the (account_id, created_at) index."""
    by_period: dict[tuple[int, datetime], list[int]] = {}
    for row in keys:
        by_period.setdefault((row.account_id, period_start(row.limit_reset, now)), []).append(row.id)
    t = llm_usage
    return sa.select(t.c.key_id, (t.c.user_price_micros - t.c.uncollected_micros).label("micros")).where(
        sa.or_(
            *(
                sa.and_(t.c.account_id == account_id, t.c.created_at >= since, t.c.key_id.in_(ids))
                for (account_id, since), ids in by_period.items()
            )
        )
    )


def check_limit(limit_micros: int | None, reset: str) -> None:
    """Refuse a limit that is not a whole number of micros in 0..MAX_LIMIT_MICROS, or an unknown period."""
    if reset not in set(Reset):
        raise ValueError(f"the reset period is one of {', '.join(Reset)}")
    if limit_micros is not None and not 0 <= limit_micros <= MAX_LIMIT_MICROS:
        raise ValueError(f"a key limit is between 0 and {micros_to_credits(MAX_LIMIT_MICROS)} credits")


async def create_key(
    db: AsyncEngine, account_id: int, label: str = "", limit_micros: int | None = None, reset: str = Reset.NONE
) -> NewKey:
    if len(label) > 100:
        raise ValueError("a key label has at most 100 characters")
    check_limit(limit_micros, reset)
    raw = KEY_PREFIX + secrets.token_urlsafe(32)
    values = {"limit_micros": limit_micros, "limit_reset": str(reset)}
    async with db.begin() as conn:
        row = (
            await conn.execute(
                sa.insert(vk)
                .values(account_id=account_id, key_hash=hash_key(raw), key_prefix=raw[:12], label=label, **values)
                .returning(vk)
            )
        ).one()
    return NewKey(_info(row, datetime.now(UTC), {}), raw)  # a new key has made no calls


async def set_limit(
    db: AsyncEngine, key_id: int, limit_micros: int | None, reset: str, *, account_id: int | None = None
) -> KeyInfo | None:
    """Set (or, with None, remove) a key's credit limit and its reset period. None if there is no such key (on
    `account_id`'s account, when given).

    A key that had a limit keeps its counted use in the current period (a new reset period starts counting at
    its next hold). A key that had none was not counted: in the same transaction its use starts from its calls
    in the current period of `reset` (charges since the period started plus pending holds, as shown), and its
    pending holds are marked as counted in that period, so their settle or release moves the count as for a
    hold counted from the start. The window left: a hold whose statement runs concurrently with this commit
    (it read the key before the limit) is neither marked nor counted, so each request in flight at that
    instant may escape the new limit's count once (docs/billing.md). Removing a limit needs nothing more: the
    use is then read from the calls."""
    check_limit(limit_micros, reset)
    where = [vk.c.id == key_id] + ([vk.c.account_id == account_id] if account_id is not None else [])
    now = datetime.now(UTC)
    async with db.begin() as conn:
        before = (await conn.execute(sa.select(vk.c.limit_micros).where(*where).with_for_update())).first()
        if before is None:
            return None
        limited = sa.update(vk).where(vk.c.id == key_id).values(limit_micros=limit_micros, limit_reset=str(reset))
        row = (await conn.execute(limited.returning(vk))).one()
        if before.limit_micros is None and limit_micros is not None:
            row = await _start_counting(conn, row, now)
        return (await _shown(conn, [row], now))[0]


async def _start_counting(conn: AsyncConnection, key: sa.Row[Any], now: datetime) -> sa.Row[Any]:
    """Count a key's use from its calls in its current period (it had no limit, so nothing was counted): its
    pending holds are marked as counted in that period (their amounts read from the same write), and its
    settled charges since the period started are added."""
    start = period_start(key.limit_reset, now)
    h = credit_holds
    marked = await conn.execute(
        sa.update(h)
        .where(h.c.account_id == key.account_id, h.c.key_id == key.id, h.c.status == HoldStatus.PENDING)
        .values(key_period_start=start)
        .returning(h.c.amount_micros)
    )
    held = sum(marked.scalars().all())
    charges = _charged_since_period_start([key], now).subquery()
    charged = (await conn.execute(sa.select(sa.func.coalesce(sa.func.sum(charges.c.micros), 0)))).scalar_one()
    counted = sa.update(vk).where(vk.c.id == key.id).values(period_start=start, period_used_micros=int(charged) + held)
    row: sa.Row[Any] = (await conn.execute(counted.returning(vk))).one()
    return row


async def get_key(db: AsyncEngine, key_id: int, now: datetime | None = None) -> KeyInfo | None:
    async with db.connect() as conn:
        row = (await conn.execute(sa.select(vk).where(vk.c.id == key_id))).first()
        return (await _shown(conn, [row], now or datetime.now(UTC)))[0] if row is not None else None


async def list_keys(db: AsyncEngine, account_id: int) -> list[KeyInfo]:
    async with db.connect() as conn:
        rows = (await conn.execute(sa.select(vk).where(vk.c.account_id == account_id).order_by(vk.c.id))).all()
        return await _shown(conn, rows, datetime.now(UTC))


async def revoke_key(
    db: AsyncEngine, key_id: int, cache: TTLCache | None, *, account_id: int | None = None
) -> KeyInfo | None:
    """Revoke a key (only the owner's, when `account_id` is given). None if there is no such key."""
    where = [vk.c.id == key_id]
    if account_id is not None:
        where.append(vk.c.account_id == account_id)
    async with db.begin() as conn:
        row = (await conn.execute(sa.select(vk).where(*where))).first()
        if row is None:
            return None
        if row.revoked_at is None:
            row = (
                await conn.execute(
                    sa.update(vk).where(vk.c.id == key_id).values(revoked_at=datetime.now(UTC)).returning(vk)
                )
            ).one()
        (info,) = await _shown(conn, [row], datetime.now(UTC))
    if cache is not None:
        await cache.delete(row.key_hash)
    return info


async def resolve_key(db: AsyncEngine, cache: TTLCache, raw_key: str) -> KeyOwner | None:
    """The active key's owner (and whether its account is frozen), or None for a malformed, unknown or revoked
    key."""
    if not is_well_formed(raw_key):
        return None
    digest = hash_key(raw_key)
    cached = await cache.get(digest)
    if cached is not None:
        if cached == _NEGATIVE:
            return None
        key_id, account_id, *frozen = cached.split(":")  # "id:account" was cached before accounts could freeze
        return KeyOwner(int(key_id), int(account_id), frozen == ["1"])
    query = (
        sa.select(vk.c.id, vk.c.account_id, billing_accounts.c.frozen_at)
        .join(billing_accounts, billing_accounts.c.id == vk.c.account_id)
        .where(vk.c.key_hash == digest, vk.c.revoked_at.is_(None))
    )
    row = await read_once_more_after_disconnect(db, lambda conn: conn.execute(query))
    owner = KeyOwner(row.id, row.account_id, row.frozen_at is not None) if row else None
    await cache.set(digest, f"{owner.key_id}:{owner.account_id}:{int(owner.frozen)}" if owner else _NEGATIVE)
    return owner


async def forget_account_keys(db: AsyncEngine, cache: TTLCache, account_id: int) -> None:
    """Drop the cached lookups of all the account's keys (after it was frozen or unfrozen): the next call of
    each key reads the database; other processes' in-memory copies expire within the key cache TTL."""
    async with db.connect() as conn:
        digests = (await conn.execute(sa.select(vk.c.key_hash).where(vk.c.account_id == account_id))).scalars()
        for digest in list(digests):
            await cache.delete(digest)
