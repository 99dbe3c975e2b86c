"""Health probes: /healthz (the process is up) and /readyz (database and, if configured, Redis answer)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

import sqlalchemy as sa
from fastapi import APIRouter
from pydantic import BaseModel

from gateway.failures import is_transient
from gateway.sidecar.deps import Services, ServicesDep
from gateway.sidecar.errors import ApiError, documented

router = APIRouter(tags=["health"])
log = logging.getLogger("gateway.sidecar")
PROBE_TIMEOUT_SECONDS = 2.0


class Health(BaseModel):
    status: str


class Readiness(BaseModel):
    status: str
    database: str
    redis: str


@router.get("/healthz", response_model=Health)
async def healthz() -> Health:
    return Health(status="ok")


async def _probe_database(svc: Services) -> None:
    async with svc.db.connect() as conn:
        await conn.execute(sa.text("SELECT 1"))


@router.get("/readyz", response_model=Readiness, responses=documented())
async def readyz(svc: ServicesDep) -> Readiness:
    """Ready when the database and (if REDIS_URL is set) Redis answer within 2 s; 503 otherwise."""
    probes: dict[str, Callable[[], Awaitable[object]]] = {"database": lambda: _probe_database(svc)}
    if svc.redis is not None:
        probes["redis"] = svc.redis.client.ping  # directly: the probe reports Redis itself, not the breaker
    for name, probe in probes.items():
        try:
            await asyncio.wait_for(probe(), PROBE_TIMEOUT_SECONDS)
        except Exception as exc:
            if not is_transient(exc):
                raise
            log.warning("not ready: %s unreachable: %r", name, exc)
            raise ApiError(503, "not_ready", f"{name} is unreachable") from None
    return Readiness(status="ready", database="ok", redis="ok" if svc.redis is not None else "not configured")
