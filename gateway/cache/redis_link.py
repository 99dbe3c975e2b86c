"""This process's link to Redis: one bounded client, and a breaker that skips Redis for a while after it fails.

Redis holds only caches, SIWE nonces and rate limits; the database is the truth. So a Redis outage must
cost little time, and what the caller does instead is its own choice (the key cache asks the database,
rate limits count in process memory, nonces answer 503). `RedisLink.run` makes that possible:

- At most REDIS_MAX_CONNECTIONS calls run at once (the pool's size); more wait for a free slot instead of
  failing with "Too many connections". A burst on a healthy Redis just queues; when Redis fails, the
  calls still queued give up as they reach the front (the breaker below), without waiting on Redis.
- A running call takes at most REDIS_TIMEOUT_SECONDS, everything included (connecting, a retry, the
  answer); the sockets time out after it too. A hung Redis (it accepts connections and never answers)
  costs one timeout. The pool itself blocks as well (for direct use of `client`, the readiness probe).
- A ConnectionError is retried once, on a fresh connection: connections left dead in the pool by a Redis
  restart or a dropped network cost nothing once Redis answers again. Timeouts are not retried (that would
  double the wait on a hung Redis).
- After a failure the link stays down for REDIS_BACKOFF_SECONDS: calls raise `RedisUnavailable` at once,
  without touching the network. Then one call goes through as a trial; its success brings the link back
  up, its failure starts another back-off. Each process finds its way back on its own.
- An outage is logged when it starts, once a minute while it lasts and when it ends; never per call.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError, RedisError

from gateway.config import Settings

log = logging.getLogger("gateway.redis")

T = TypeVar("T")

# RuntimeError: uvloop raises it for a write on a transport the peer closed ("the handler is closed")
_FAILURES: tuple[type[BaseException], ...] = (RedisError, OSError, asyncio.TimeoutError, RuntimeError)
STILL_DOWN_LOG_SECONDS = 60.0


class RedisUnavailable(Exception):
    """Redis failed or timed out on this call, or did recently (the link is backing off); the cause is logged."""


class RedisLink:
    def __init__(self, client: Redis, timeout_seconds: float, backoff_seconds: float) -> None:
        self.client = client
        self.timeout = timeout_seconds
        self.backoff = backoff_seconds
        self._slots = asyncio.Semaphore(client.connection_pool.max_connections)
        self._down_since: float | None = None  # when the current outage began (monotonic); None while up
        self._retry_at = 0.0  # while down, no call before this
        self._failures = 0  # failed calls in the current outage
        self._next_reminder = 0.0

    async def run(self, op: Callable[[Redis], Awaitable[T]]) -> T:
        """`op(client)`, bounded by the timeout; `RedisUnavailable` if it fails or the link is backing off."""
        async with self._slots:  # waiting for a slot is not part of the timeout: Redis is busy, not down
            started = time.monotonic()
            if not self._admit(started):
                raise RedisUnavailable
            try:
                async with asyncio.timeout(self.timeout):
                    result = await op(self.client)
            except _FAILURES as exc:
                self._failed(exc)
                raise RedisUnavailable from None
        if self._down_since is not None and started > self._down_since:  # a trial, not a call from before
            self._recovered()
        return result

    async def aclose(self) -> None:
        await self.client.aclose()

    def _admit(self, now: float) -> bool:
        if self._down_since is None:
            return True
        if now < self._retry_at:
            return False
        self._retry_at = now + self.backoff  # this call is the trial; the others keep skipping Redis
        return True

    def _failed(self, exc: BaseException) -> None:
        now = time.monotonic()
        self._retry_at = now + self.backoff
        self._failures += 1
        reason = f"{type(exc).__name__}: {str(exc) or f'no answer within {self.timeout:g} s'}"
        if self._down_since is None:
            self._down_since = now
            self._next_reminder = now + STILL_DOWN_LOG_SECONDS
            log.warning("Redis is unavailable (%s); using fallbacks, retrying every %g s", reason, self.backoff)
        elif now >= self._next_reminder:
            self._next_reminder = now + STILL_DOWN_LOG_SECONDS
            log.warning(
                "Redis still unavailable after %.0f s (%d failed calls; last: %s)",
                now - self._down_since,
                self._failures,
                reason,
            )

    def _recovered(self) -> None:
        assert self._down_since is not None
        log.warning(
            "Redis answers again after %.1f s unavailable (%d failed calls)",
            time.monotonic() - self._down_since,
            self._failures,
        )
        self._down_since = None
        self._failures = 0


def redis_link_for(settings: Settings) -> RedisLink | None:
    """A link to REDIS_URL (connections are opened when first needed), or None when Redis is not configured."""
    if not settings.redis_url:
        return None
    timeout = settings.redis_timeout_seconds
    pool = BlockingConnectionPool.from_url(
        settings.redis_url,
        max_connections=settings.redis_max_connections,
        timeout=timeout,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        retry=Retry(NoBackoff(), retries=1, supported_errors=(ConnectionError,)),
    )
    return RedisLink(Redis.from_pool(pool), timeout, settings.redis_backoff_seconds)
