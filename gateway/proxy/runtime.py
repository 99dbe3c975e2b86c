"""Process-wide state of the plugin inside one LiteLLM worker: settings, database engine, key cache, spool.

hooks/ files are executed anew by LiteLLM for each reference, so they must not hold state; everything
shared between the auth function and the callback lives here, created once per process.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.cache.ttl import TTLCache, key_cache_for
from gateway.config import Settings, get_settings
from gateway.db.engine import get_engine
from gateway.ledger.spool import Spool


@dataclass(frozen=True)
class Runtime:
    settings: Settings
    db: AsyncEngine
    key_cache: TTLCache
    spool: Spool


@functools.lru_cache(maxsize=1)
def runtime() -> Runtime:
    settings = get_settings()
    return Runtime(
        settings=settings,
        db=get_engine(settings.effective_database_url),
        key_cache=key_cache_for(settings),
        spool=Spool(settings.effective_spool_dir),
    )
