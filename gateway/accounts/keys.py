"""Virtual API keys: create (raw key shown once), list, revoke, and the cached key -> account lookup.

Only the SHA-256 of a key is stored. Lookups are cached briefly (positive and negative) so the hot path
rarely touches the database; revoking deletes the cache entry, and every process forgets it within the
cache TTL (a few seconds at most). Redis trouble never fails a lookup: the cache then answers a miss and
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
from gateway.db.engine import read_once_more_after_disconnect
from gateway.db.schema import virtual_keys as vk

KEY_PREFIX = "sk-cg-"
_KEY_SHAPE = re.compile(r"^sk-cg-[A-Za-z0-9_-]{43}$")
_NEGATIVE = "-"


@dataclass(frozen=True)
class KeyOwner:
    key_id: int
    account_id: int


@dataclass(frozen=True)
class KeyInfo:
    id: int
    account_id: int
    prefix: str
    label: str
    created_at: datetime | None
    revoked_at: datetime | None

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


def _info(row: sa.Row[Any]) -> KeyInfo:
    return KeyInfo(row.id, row.account_id, row.key_prefix, row.label, row.created_at, row.revoked_at)


async def create_key(db: AsyncEngine, account_id: int, label: str = "") -> NewKey:
    if len(label) > 100:
        raise ValueError("a key label has at most 100 characters")
    raw = KEY_PREFIX + secrets.token_urlsafe(32)
    async with db.begin() as conn:
        row = (
            await conn.execute(
                sa.insert(vk)
                .values(account_id=account_id, key_hash=hash_key(raw), key_prefix=raw[:12], label=label)
                .returning(vk)
            )
        ).one()
    return NewKey(_info(row), raw)


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
    """The active key's owner, or None for a malformed, unknown or revoked key."""
    if not is_well_formed(raw_key):
        return None
    digest = hash_key(raw_key)
    cached = await cache.get(digest)
    if cached is not None:
        if cached == _NEGATIVE:
            return None
        key_id, account_id = cached.split(":")
        return KeyOwner(int(key_id), int(account_id))
    query = sa.select(vk.c.id, vk.c.account_id).where(vk.c.key_hash == digest, vk.c.revoked_at.is_(None))
    row = await read_once_more_after_disconnect(db, lambda conn: conn.execute(query))
    owner = KeyOwner(row.id, row.account_id) if row else None
    await cache.set(digest, f"{owner.key_id}:{owner.account_id}" if owner else _NEGATIVE)
    return owner
