"""Short-lived caches: an in-process TTL map in front of Redis (when `REDIS_URL` is set).

Entries are strings. The in-process layer keeps entries for at most `local_ttl` seconds, so a value
deleted in Redis (or expired there) is gone from every process within that time.

Redis only speeds things up here: when it fails, times out or its link is backing off (see
`gateway.redis_link`), a read is a miss (the caller asks the database) and a write or delete is skipped.
A skipped delete leaves the Redis entry to expire within its TTL, so revocation stays bounded by it.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from redis.asyncio import Redis

from gateway.cache.redis_link import RedisLink, RedisUnavailable, redis_link_for
from gateway.config import Settings

T = TypeVar("T")


class TTLCache:
    def __init__(
        self, ttl_seconds: float, redis: RedisLink | None = None, namespace: str = "gw", max_entries: int = 100_000
    ) -> None:
        self.ttl = ttl_seconds
        self.local_ttl = min(1.0, ttl_seconds) if redis is not None else ttl_seconds
        self.redis = redis
        self.namespace = namespace
        self.max_entries = max_entries
        self._local: dict[str, tuple[float, str]] = {}

    def _rkey(self, key: str) -> str:
        return f"{self.namespace}:{key}"

    async def get(self, key: str) -> str | None:
        hit = self._local.get(key)
        now = time.monotonic()
        if hit is not None:
            if hit[0] > now:
                return hit[1]
            del self._local[key]
        value = await self._shared(lambda r: r.get(self._rkey(key)))
        if value is None:
            return None
        text = value.decode() if isinstance(value, bytes) else value
        self._remember(key, text, now)
        return text

    async def set(self, key: str, value: str) -> None:
        self._remember(key, value, time.monotonic())
        await self._shared(lambda r: r.set(self._rkey(key), value, px=int(self.ttl * 1000)))

    async def delete(self, key: str) -> None:
        self._local.pop(key, None)
        await self._shared(lambda r: r.delete(self._rkey(key)))

    async def _shared(self, op: Callable[[Redis], Awaitable[T]]) -> T | None:
        """`op` on Redis; None without Redis or while it is unavailable (the link logs the outage)."""
        if self.redis is None:
            return None
        try:
            return await self.redis.run(op)
        except RedisUnavailable:
            return None

    def _remember(self, key: str, value: str, now: float) -> None:
        if len(self._local) >= self.max_entries:
            self._local.clear()
        self._local[key] = (now + self.local_ttl, value)


def key_cache_for(settings: Settings, redis: RedisLink | None = None) -> TTLCache:
    """The virtual-key lookup cache: Redis-backed when REDIS_URL is set (shared by every process).

    Pass the process's `redis` link to share its pool and breaker; without one, a link is opened here.
    """
    return TTLCache(settings.key_cache_ttl_seconds, redis or redis_link_for(settings), namespace="gw:key")
