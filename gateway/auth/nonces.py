"""SIWE nonces: random, single-use, 10 minutes.

In Redis (`SET NX EX` to issue, `GETDEL` to consume) when it is configured, else in the `siwe_nonces` table
(`DELETE ... RETURNING` to consume). With Redis configured but unavailable, nonces can be neither issued nor
checked (`NonceStoreUnavailable`, HTTP 503): there is no weaker stand-in.
"""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol, TypeVar

import sqlalchemy as sa
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.cache.redis_link import RedisLink, RedisUnavailable
from gateway.db.auth_schema import siwe_nonces

NONCE_TTL = timedelta(minutes=10)

T = TypeVar("T")


class NonceStoreUnavailable(Exception):
    """Nonces cannot be issued or checked because their store (Redis) is unavailable (HTTP 503)."""


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class IssuedNonce:
    nonce: str
    expires_at: datetime


class NonceStore(Protocol):
    async def issue(self, ttl: timedelta = NONCE_TTL) -> IssuedNonce: ...

    async def is_live(self, nonce: str) -> bool: ...

    async def consume(self, nonce: str) -> bool:
        """Atomically delete a live nonce; True for exactly one caller."""
        ...


def _new_nonce() -> str:
    return secrets.token_hex(16)  # 32 alphanumeric characters, 128 random bits


class RedisNonceStore:
    def __init__(self, redis: RedisLink, prefix: str) -> None:
        self.redis = redis
        self.prefix = f"{prefix}:siwe-nonce:"

    async def _run(self, op: Callable[[Redis], Awaitable[T]]) -> T:
        try:
            return await self.redis.run(op)
        except RedisUnavailable:
            raise NonceStoreUnavailable("the sign-in nonce store (Redis) is unavailable") from None

    async def issue(self, ttl: timedelta = NONCE_TTL) -> IssuedNonce:
        px = int(ttl.total_seconds() * 1000)
        nonce = _new_nonce()
        while not await self._claim(nonce, px):
            nonce = _new_nonce()
        return IssuedNonce(nonce, utc_now() + ttl)

    async def _claim(self, nonce: str, px: int) -> bool:
        """Store a fresh nonce for `px` milliseconds; False if that nonce is already live."""
        return bool(await self._run(lambda r: r.set(self.prefix + nonce, "1", nx=True, px=px)))

    async def is_live(self, nonce: str) -> bool:
        return bool(await self._run(lambda r: r.exists(self.prefix + nonce)))

    async def consume(self, nonce: str) -> bool:
        return await self._run(lambda r: r.getdel(self.prefix + nonce)) is not None


class DbNonceStore:
    def __init__(self, db: AsyncEngine) -> None:
        self.db = db

    async def issue(self, ttl: timedelta = NONCE_TTL) -> IssuedNonce:
        now = utc_now()
        issued = IssuedNonce(_new_nonce(), now + ttl)
        async with self.db.begin() as conn:
            await conn.execute(sa.delete(siwe_nonces).where(siwe_nonces.c.expires_at <= now))
            await conn.execute(sa.insert(siwe_nonces).values(nonce=issued.nonce, expires_at=issued.expires_at))
        return issued

    def _live(self, nonce: str) -> list[sa.ColumnElement[bool]]:
        return [siwe_nonces.c.nonce == nonce, siwe_nonces.c.expires_at > utc_now()]

    async def is_live(self, nonce: str) -> bool:
        async with self.db.connect() as conn:
            return (await conn.execute(sa.select(siwe_nonces.c.nonce).where(*self._live(nonce)))).first() is not None

    async def consume(self, nonce: str) -> bool:
        async with self.db.begin() as conn:
            deleted = sa.delete(siwe_nonces).where(*self._live(nonce)).returning(siwe_nonces.c.nonce)
            return (await conn.execute(deleted)).first() is not None
