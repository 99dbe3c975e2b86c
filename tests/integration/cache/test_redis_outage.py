"""Key lookups while Redis is cut, hung and back (the real Redis behind devtools/forwarder.py): the database
answers, each lookup waits one Redis timeout at most, the outage is logged when it starts, now and then
while it lasts and when it ends (never per call), revocation still holds, stale pooled connections cost
nothing, and a burst of lookups waits for pooled connections.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import AsyncIterator, Callable, Iterator

import pytest
import redis
from sqlalchemy.ext.asyncio import AsyncEngine

from devtools.forwarder import TcpForwarder
from gateway.accounts.keys import KEY_PREFIX, KeyOwner, NewKey, create_key, hash_key, resolve_key, revoke_key
from gateway.cache import redis_link
from gateway.cache.ttl import TTLCache, key_cache_for
from gateway.config import Settings

BACKOFF = 0.5  # REDIS_BACKOFF_SECONDS in these tests


@pytest.fixture
def settings(pg_url: str, redis_forwarder: TcpForwarder) -> Settings:
    return Settings(
        _env_file=None,
        database_url=pg_url,
        redis_url=f"redis://{redis_forwarder.netloc}/0",
        redis_backoff_seconds=BACKOFF,
    )


@pytest.fixture
async def cache(settings: Settings) -> AsyncIterator[TTLCache]:
    cache = key_cache_for(settings)
    yield cache
    await cache.redis.aclose()


@pytest.fixture
def direct_redis(redis_forwarder: TcpForwarder) -> Iterator[redis.Redis]:
    """The real Redis, not through the forwarder."""
    host, port = redis_forwarder.target
    with redis.Redis(host=host, port=port) as client:
        yield client


@pytest.fixture
def outage_log(caplog: pytest.LogCaptureFixture) -> Callable[[], list[str]]:
    """What the Redis link has logged so far, each line by its first three words ("Redis is unavailable")."""
    caplog.set_level(logging.INFO, logger="gateway.redis")
    return lambda: [" ".join(r.getMessage().split()[:3]) for r in caplog.records if r.name == "gateway.redis"]


async def served_by_redis(db: AsyncEngine, cache: TTLCache, direct_redis: redis.Redis) -> bool:
    """Whether a lookup reads Redis: the key is cached there only, the database has never seen it."""
    raw = KEY_PREFIX + secrets.token_urlsafe(32)
    direct_redis.set(f"{cache.namespace}:{hash_key(raw)}", "1:1", px=60_000)
    return await resolve_key(db, cache, raw) == KeyOwner(1, 1)


def unknown_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def owner_of(key: NewKey) -> KeyOwner:
    return KeyOwner(key.info.id, key.info.account_id)


async def test_with_redis_cut_the_database_answers_and_redis_is_used_again_after(
    db, account, settings, cache, redis_forwarder, direct_redis, outage_log
):
    keys = [await create_key(db, account.id) for _ in range(3)]
    assert await served_by_redis(db, cache, direct_redis)  # the pool holds a live connection now

    redis_forwarder.cut()
    deadline = time.monotonic() + 2 * cache.local_ttl  # long enough for local entries to expire and be refetched
    lookups = 0
    while time.monotonic() < deadline:
        for key in keys:
            assert await resolve_key(db, cache, key.raw_key) == owner_of(key)
        assert await resolve_key(db, cache, unknown_key()) is None
        lookups += 4
        await asyncio.sleep(0.01)
    assert lookups > 100
    assert outage_log() == ["Redis is unavailable"]  # one line for the outage, not one per call

    redis_forwarder.restore()
    await asyncio.sleep(BACKOFF)
    assert await served_by_redis(db, cache, direct_redis)
    assert outage_log() == ["Redis is unavailable", "Redis answers again"]


async def test_a_long_outage_is_recalled_now_and_then_never_per_call(
    db, settings, redis_forwarder, outage_log, monkeypatch
):
    monkeypatch.setattr(redis_link, "STILL_DOWN_LOG_SECONDS", 0.4)
    cache = key_cache_for(settings.model_copy(update={"redis_backoff_seconds": 0.05}))  # a trial every 50 ms
    redis_forwarder.cut()
    try:
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:
            assert await resolve_key(db, cache, unknown_key()) is None
            await asyncio.sleep(0.01)
    finally:
        await cache.redis.aclose()
    first, *reminders = outage_log()  # some 15 failed trials in 1 s: at most one line per 0.4 s
    assert first == "Redis is unavailable" and reminders in [["Redis still unavailable"] * n for n in (1, 2)]


async def test_revocation_holds_within_the_local_ttl_while_redis_is_cut(db, account, settings, cache, redis_forwarder):
    key = await create_key(db, account.id)
    elsewhere = key_cache_for(settings)  # another process's cache
    try:
        assert await resolve_key(db, elsewhere, key.raw_key) == owner_of(key)  # cached in that process
        redis_forwarder.cut()
        await revoke_key(db, key.info.id, cache)  # the Redis entry cannot be deleted; the database is the truth
        revoked_at = time.monotonic()
        assert await resolve_key(db, cache, key.raw_key) is None
        # polls until the other process's local entry expires: nothing could set an Event for that
        while await resolve_key(db, elsewhere, key.raw_key) is not None:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        assert time.monotonic() - revoked_at <= elsewhere.local_ttl + 0.1
    finally:
        await elsewhere.redis.aclose()


async def test_with_redis_hung_a_lookup_waits_one_timeout_at_most_then_redis_is_skipped(
    db, account, settings, redis_forwarder, direct_redis, outage_log
):
    settings = settings.model_copy(update={"redis_max_connections": 20})
    timeout = settings.redis_timeout_seconds
    keys = [await create_key(db, account.id) for _ in range(4)]
    cache = key_cache_for(settings)
    try:
        assert await served_by_redis(db, cache, direct_redis)  # the pool holds a live connection now

        redis_forwarder.hang()
        started = time.monotonic()
        assert await resolve_key(db, cache, keys[0].raw_key) == owner_of(keys[0])
        assert timeout <= time.monotonic() - started < 0.5  # it waited for Redis once, then asked the database

        redis_forwarder.restore()
        await asyncio.sleep(BACKOFF)
        assert await served_by_redis(db, cache, direct_redis)

        redis_forwarder.hang()  # now with 100 lookups under way on 20 connections: the queued ones wait for
        started = time.monotonic()  # the first 20 to time out, then give up at once (not 5 timeouts in a row)
        burst = [k for k in keys[1:] for _ in range(34)][:100]
        assert await asyncio.gather(*(resolve_key(db, cache, k.raw_key) for k in burst)) == list(map(owner_of, burst))
        assert timeout <= time.monotonic() - started < 2 * timeout

        started = time.monotonic()  # within the back-off Redis is not asked at all
        assert await resolve_key(db, cache, unknown_key()) is None
        assert time.monotonic() - started < timeout

        await asyncio.sleep(BACKOFF)  # then one call is the trial, and costs one timeout again
        started = time.monotonic()
        assert await resolve_key(db, cache, unknown_key()) is None
        assert timeout <= time.monotonic() - started < 0.5

        redis_forwarder.restore()
        await asyncio.sleep(BACKOFF)
        assert await served_by_redis(db, cache, direct_redis)
    finally:
        await cache.redis.aclose()
    assert outage_log() == ["Redis is unavailable", "Redis answers again"] * 2  # the failed trial logged nothing


async def test_connections_left_dead_in_the_pool_by_a_drop_cost_no_error(
    db, cache, redis_forwarder, direct_redis, outage_log
):
    assert all(await asyncio.gather(*(served_by_redis(db, cache, direct_redis) for _ in range(20))))
    redis_forwarder.cut()  # every pooled connection is reset...
    redis_forwarder.restore()  # ...and Redis is back before the next call
    assert all(await asyncio.gather(*(served_by_redis(db, cache, direct_redis) for _ in range(20))))
    assert outage_log() == []  # not a single call fell back


async def test_500_concurrent_lookups_wait_for_pooled_connections_and_all_succeed(db, account, settings, outage_log):
    # 500 calls on 20 connections; a generous timeout: this is about waiting for a connection, on a busy machine
    settings = settings.model_copy(update={"redis_max_connections": 20, "redis_timeout_seconds": 2.0})
    keys = [await create_key(db, account.id) for _ in range(10)]
    wanted = [*keys * 45, *[None] * 50]  # 450 lookups of 10 keys, 50 of unknown keys
    raws = [k.raw_key if k else unknown_key() for k in wanted]
    cache = key_cache_for(settings)
    try:
        for _ in ("cold: Redis misses, the database answers", "warm: Redis answers"):
            fresh = TTLCache(cache.ttl, cache.redis, cache.namespace)  # an empty in-process layer each round
            results = await asyncio.gather(*(resolve_key(db, fresh, raw) for raw in raws))
            assert results == [owner_of(k) if k else None for k in wanted]
    finally:
        await cache.redis.aclose()
    assert outage_log() == []  # no call timed out or was refused
