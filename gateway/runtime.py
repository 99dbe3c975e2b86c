"""The runtime: what one process builds once from its settings and hands down, and tears down as a whole.

`build_runtime(settings)` makes it: the database engine (its own, not the per-URL one the one-shot commands
share), the ledger on it (`ledger.open_ledger`: the backend chosen here, once), the Redis link (one pool and
breaker, or None without REDIS_URL), the key cache in front of it and the settle spool. `Runtime.aclose()`
closes the ledger's connections and the Redis link and disposes the engine. Who builds one: a LiteLLM worker
(`gateway.proxy.runtime.runtime()`, on its first call), the sidecar app (`create_app`, closed by its
lifespan), the `gateway up` supervisor and `gateway sweep` (for the sweeper); a test builds, swaps and
closes its own.

What stays process-wide outside it, on purpose: the Prometheus metric objects (registered once per process by
the library, gateway/observability/metrics.py) and SQLite's writer of a file (one thread and lock file per
process and file, gateway/db/sqlite_writer.py: it queues every writer of that file in this process).
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.cache.redis_link import RedisLink, redis_link_for
from gateway.cache.ttl import TTLCache, key_cache_for
from gateway.config import Settings
from gateway.db.engine import create_engine
from gateway.ledger import Ledger, open_ledger
from gateway.ledger.spool import Spool


@dataclass(frozen=True)
class Runtime:
    settings: Settings
    db: AsyncEngine
    ledger: Ledger
    redis: RedisLink | None
    key_cache: TTLCache
    spool: Spool

    async def aclose(self) -> None:
        """Close everything it opened: the ledger's connections, the Redis link, the engine."""
        self.ledger.close()
        if self.redis is not None:
            await self.redis.aclose()
        await self.db.dispose()


def build_runtime(settings: Settings) -> Runtime:
    """The runtime for `settings` (nothing connects before its first use)."""
    db = create_engine(settings.effective_database_url)
    redis = redis_link_for(settings)
    return Runtime(
        settings=settings,
        db=db,
        ledger=open_ledger(db),
        redis=redis,
        key_cache=key_cache_for(settings, redis),
        spool=Spool(settings.effective_spool_dir),
    )
