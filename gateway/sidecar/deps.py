"""Request dependencies of the sidecar: its services, the session, the CSRF guard and the rate limits.

- `Services`: what requests use: the app's runtime (gateway/runtime.py: settings, database, Redis link, key
  cache), and the nonce store, SIWE policy and rate limiter built on it; built once per app and closed at
  shutdown. One Redis link (the runtime's pool and breaker) serves the nonces, the key cache and the rate
  limits.
- `current_session`: the session cookie -> a live server-side session, else 401. The account of every
  account route comes from here, never from the request.
- `current_operator`: a live session whose wallet is in OPERATOR_WALLETS *now* (decided on the server at
  every request, never stored or taken from the client), else 403 `not_operator`.
- `same_origin_writes` (CSRF, applied to the whole app): a POST/PUT/PATCH/DELETE that carries our session
  cookie must send an Origin that is our own; any write that sends a foreign Origin is refused too (that
  also stops login CSRF). 403 either way.
- `RateLimiter`: moving windows from the `limits` package, in Redis when configured (shared by every
  process), else and while Redis is unavailable in this process's memory; 429 + Retry-After.
"""

from __future__ import annotations

import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated

import limits
from fastapi import Depends, Request, Security
from fastapi.security import APIKeyCookie
from limits.aio.storage import MemoryStorage, RedisStorage
from limits.aio.strategies import MovingWindowRateLimiter
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.auth.nonces import DbNonceStore, NonceStore, RedisNonceStore
from gateway.auth.sessions import Session, get_session
from gateway.auth.siwe import SiwePolicy
from gateway.cache.redis_link import RedisLink, RedisUnavailable
from gateway.cache.ttl import TTLCache
from gateway.config import Settings
from gateway.runtime import Runtime
from gateway.sidecar.errors import ApiError, unauthenticated

SESSION_COOKIE = "gw_session"
_UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


class RateLimiter:
    """Named moving-window limits, counted per identity (client IP, account).

    With Redis, the counts are shared by every process; while Redis is unavailable each process counts in
    its own memory (the limits still hold, per process), and goes back to Redis when its link is up again.
    """

    def __init__(self, settings: Settings, redis: RedisLink | None) -> None:
        self._shared: tuple[RedisLink, MovingWindowRateLimiter] | None = None
        if redis is not None:
            storage = RedisStorage(
                f"async+{settings.redis_url}",
                implementation="redispy",
                key_prefix=f"{settings.sidecar_redis_prefix}:rate",
                # limits types its **options as scalars, but passes them to redis-py, which takes a pool
                connection_pool=redis.client.connection_pool,  # type: ignore[arg-type]
            )
            self._shared = (redis, MovingWindowRateLimiter(storage))
        self._local = MovingWindowRateLimiter(MemoryStorage())
        self._limits = {
            "nonce": limits.parse(settings.rate_limit_nonce),
            "verify": limits.parse(settings.rate_limit_verify),
            "key_create": limits.parse(settings.rate_limit_key_create),
            "payment_confirm": limits.parse(settings.rate_limit_payment_confirm),
        }

    async def hit(self, name: str, *identity: str) -> None:
        """Count one request; raise 429 with Retry-After if it is over the limit."""
        item = self._limits[name]
        keys = (name, *identity)
        allowed, reset_at = await self._count(item, keys)
        if allowed:
            return
        retry_after = max(1, math.ceil(reset_at - time.time()))
        raise ApiError(
            429,
            "rate_limited",
            f"too many {name} requests (limit {item}); retry in {retry_after} s",
            headers={"Retry-After": str(retry_after)},
        )

    async def _count(self, item: limits.RateLimitItem, keys: tuple[str, ...]) -> tuple[bool, float]:
        if self._shared is not None:
            redis, shared = self._shared
            try:
                return await redis.run(lambda _: _count_in(shared, item, keys))
            except RedisUnavailable:
                pass  # counted in this process until the link is up again
        return await _count_in(self._local, item, keys)


async def _count_in(
    limiter: MovingWindowRateLimiter, item: limits.RateLimitItem, keys: tuple[str, ...]
) -> tuple[bool, float]:
    """Count one hit: (allowed, else when the window next frees a slot, epoch seconds)."""
    if await limiter.hit(item, *keys):
        return True, 0.0
    reset_at, _ = await limiter.get_window_stats(item, *keys)
    return False, reset_at


@dataclass
class Services:
    runtime: Runtime
    nonces: NonceStore
    policy: SiwePolicy
    limiter: RateLimiter

    @classmethod
    def on(cls, rt: Runtime) -> Services:
        redis, prefix = rt.redis, rt.settings.sidecar_redis_prefix
        nonces = RedisNonceStore(redis, prefix) if redis is not None else DbNonceStore(rt.db)
        return cls(rt, nonces, SiwePolicy.from_settings(rt.settings), RateLimiter(rt.settings, rt.redis))

    @property
    def settings(self) -> Settings:
        return self.runtime.settings

    @property
    def db(self) -> AsyncEngine:
        return self.runtime.db

    @property
    def redis(self) -> RedisLink | None:
        return self.runtime.redis

    @property
    def key_cache(self) -> TTLCache:
        return self.runtime.key_cache

    async def aclose(self) -> None:
        await self.runtime.aclose()


def services(request: Request) -> Services:
    svc: Services = request.app.state.services  # Starlette's app.state is untyped; create_app puts it there
    return svc


ServicesDep = Annotated[Services, Depends(services)]

session_cookie = APIKeyCookie(
    name=SESSION_COOKIE, auto_error=False, description="Set by POST /api/v1/auth/verify (HttpOnly, SameSite=Lax)"
)
SessionIdDep = Annotated[str | None, Security(session_cookie)]


async def current_session(svc: ServicesDep, session_id: SessionIdDep) -> Session:
    session = await get_session(svc.db, session_id) if session_id else None
    if session is None:
        raise unauthenticated()
    return session


SessionDep = Annotated[Session, Depends(current_session)]


async def current_operator(svc: ServicesDep, session: SessionDep) -> Session:
    if not svc.settings.is_operator(session.wallet_address):
        raise ApiError(403, "not_operator", "this wallet is not an operator of this gateway (OPERATOR_WALLETS)")
    return session


OperatorDep = Annotated[Session, Depends(current_operator)]


def client_ip(request: Request) -> str:
    """The peer address (uvicorn resolves X-Forwarded-For from trusted proxies into it)."""
    return request.client.host if request.client else "unknown"


async def same_origin_writes(request: Request) -> None:
    if request.method not in _UNSAFE_METHODS:
        return
    origin = request.headers.get("origin")
    if origin is None and SESSION_COOKIE not in request.cookies:
        return  # a non-browser client without a session: nothing a forged request could ride on
    if origin is None or origin.lower() not in services(request).policy.origins:
        raise ApiError(403, "cross_origin", f"writes must come from this site's origin; got Origin {origin!r}")


def limit_per_ip(name: str) -> Callable[..., Awaitable[None]]:
    """A dependency counting one `name` request against the client's IP."""

    async def check(request: Request, svc: ServicesDep) -> None:
        await svc.limiter.hit(name, "ip", client_ip(request))

    return check


async def limit_key_creation(request: Request, svc: ServicesDep, session: SessionDep) -> None:
    await svc.limiter.hit("key_create", "ip", client_ip(request))
    await svc.limiter.hit("key_create", "account", str(session.account_id))
