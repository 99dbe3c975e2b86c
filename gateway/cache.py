"""Short-lived caches: an in-process TTL map in front of Redis (when `REDIS_URL` is set).

Entries are strings. The in-process layer keeps entries for at most `local_ttl` seconds, so a value
deleted in Redis (or expired there) is gone from every process within that time.
"""

from __future__ import annotations

import time

from redis.asyncio import Redis

from gateway.config import Settings


class TTLCache:
    def __init__(self, ttl_seconds: float, redis: Redis | None = None, namespace: str = "gw", max_entries: int = 100_000):
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
        if self.redis is None:
            return None
        value = await self.redis.get(self._rkey(key))
        if value is None:
            return None
        text = value.decode() if isinstance(value, bytes) else value
        self._remember(key, text, now)
        return text

    async def set(self, key: str, value: str) -> None:
        self._remember(key, value, time.monotonic())
        if self.redis is not None:
            await self.redis.set(self._rkey(key), value, px=int(self.ttl * 1000))

    async def delete(self, key: str) -> None:
        self._local.pop(key, None)
        if self.redis is not None:
            await self.redis.delete(self._rkey(key))

    def _remember(self, key: str, value: str, now: float) -> None:
        if len(self._local) >= self.max_entries:
            self._local.clear()
        self._local[key] = (now + self.local_ttl, value)


def key_cache_for(settings: Settings) -> TTLCache:
    """The virtual-key lookup cache: Redis-backed when REDIS_URL is set (shared by every process)."""
    redis = Redis.from_url(settings.redis_url, socket_timeout=2, socket_connect_timeout=2) if settings.redis_url else None
    return TTLCache(settings.key_cache_ttl_seconds, redis, namespace="gw:key")
