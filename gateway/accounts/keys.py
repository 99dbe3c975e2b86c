"""Virtual API keys: create (raw key shown once), list, revoke, set a credit limit, and the cached key -> account
lookup (which also says whether the account is frozen by an operator).

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
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.cache.ttl import TTLCache
from gateway.core.limits import KeyLimit, Reset, key_limit
from gateway.core.money import micros_to_credits
from gateway.db.engine import read_once_more_after_disconnect
from gateway.db.schema import as_utc, billing_accounts
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


def _info(row: sa.Row[Any], now: datetime | None = None) -> KeyInfo:
    since = as_utc(row.period_start) if row.period_start else None
    limit = key_limit(row.limit_micros, row.limit_reset, row.period_used_micros, since, now or datetime.now(UTC))
    return KeyInfo(row.id, row.account_id, row.key_prefix, row.label, row.created_at, row.revoked_at, limit)


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
    return NewKey(_info(row), raw)


async def set_limit(
    db: AsyncEngine, key_id: int, limit_micros: int | None, reset: str, *, account_id: int | None = None
) -> KeyInfo | None:
    """Set (or, with None, remove) a key's credit limit and its reset period; the key's use in the current
    period is kept (a new reset period starts counting at its next hold). None if there is no such key (on
    `account_id`'s account, when given)."""
    check_limit(limit_micros, reset)
    where = [vk.c.id == key_id] + ([vk.c.account_id == account_id] if account_id is not None else [])
    async with db.begin() as conn:
        row = (
            await conn.execute(
                sa.update(vk).where(*where).values(limit_micros=limit_micros, limit_reset=str(reset)).returning(vk)
            )
        ).first()
    return _info(row) if row is not None else None


async def get_key(db: AsyncEngine, key_id: int, now: datetime | None = None) -> KeyInfo | None:
    async with db.connect() as conn:
        row = (await conn.execute(sa.select(vk).where(vk.c.id == key_id))).first()
    return _info(row, now) if row is not None else None


async def list_keys(db: AsyncEngine, account_id: int) -> list[KeyInfo]:
    async with db.connect() as conn:
        rows = (await conn.execute(sa.select(vk).where(vk.c.account_id == account_id).order_by(vk.c.id))).all()
    return [_info(r) for r in rows]


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
    if cache is not None:
        await cache.delete(row.key_hash)
    return _info(row)


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
