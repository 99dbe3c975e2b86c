"""Which exceptions mean "our infrastructure is down" (fail closed with 503) rather than a bug."""

from __future__ import annotations

import asyncio

from redis.exceptions import RedisError
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

INFRASTRUCTURE_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    asyncio.TimeoutError,
    OperationalError,
    InterfaceError,
    DBAPIError,
    PoolTimeout,
    RedisError,
)


class ChainUnavailable(RuntimeError):
    """The chain RPC failed, timed out, answered malformed data or serves another chain: fail closed (503)."""
