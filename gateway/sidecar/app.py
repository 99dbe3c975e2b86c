"""The sidecar's FastAPI app: `create_app(settings)` wires routes, errors, the CSRF guard and the request
body limit (SIDECAR_MAX_BODY_BYTES: 413 before anything else runs), request counting for `GET /metrics`;
`serve` runs it.

The app owns one `Services` (its runtime from gateway/runtime.py: database engine, Redis, key cache; and the
nonce store and rate limiter), built when the app is created and closed at shutdown. The OpenAPI document
is at /api/v1/openapi.json.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import uvicorn
from fastapi import APIRouter, Depends, FastAPI, Request, Response
from starlette.middleware.base import RequestResponseEndpoint

from gateway.config import Settings, get_settings
from gateway.observability.logging import configure as configure_logging
from gateway.runtime import build_runtime
from gateway.sidecar import errors
from gateway.sidecar.body_limit import BodyLimit
from gateway.sidecar.deps import Services, same_origin_writes
from gateway.sidecar.request_metrics import RequestMetrics
from gateway.sidecar.routes import (
    auth,
    config,
    credits,
    generation,
    health,
    keys,
    low_balance,
    metrics,
    models,
    ops,
    ops_actions,
    page,
    payments,
    usage_daily,
)

API_PREFIX = "/api/v1"


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    services = Services.on(build_runtime(settings))

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        await services.aclose()

    app = FastAPI(
        title="credit-gateway sidecar",
        version="1",
        openapi_url=f"{API_PREFIX}/openapi.json",
        docs_url=None,  # Swagger UI loads its assets from a CDN; the JSON document is enough
        redoc_url=None,
        lifespan=lifespan,
        dependencies=[Depends(same_origin_writes)],
    )
    app.state.services = services
    errors.install(app)
    api = APIRouter(prefix=API_PREFIX)
    for module in (
        auth,
        keys,
        credits,
        low_balance,
        generation,
        models,
        payments,
        config,
        usage_daily,
        ops,
        ops_actions,
    ):
        api.include_router(module.router)
    app.include_router(api)
    app.include_router(health.router)
    app.include_router(metrics.router)
    page.install(app)
    app.middleware("http")(_no_store)
    # added last, so outermost: an oversized body is refused before the other middleware run
    app.add_middleware(BodyLimit, max_bytes=settings.sidecar_max_body_bytes, too_large=errors.request_too_large)
    app.add_middleware(RequestMetrics)  # outermost of all: counts the 413s too
    return app


async def _no_store(request: Request, call_next: RequestResponseEndpoint) -> Response:
    """API answers carry sessions, raw keys and balances: no cache may keep them."""
    response = await call_next(request)
    response.headers.setdefault("Cache-Control", "no-store")
    return response


def uvicorn_config(settings: Settings) -> uvicorn.Config:
    return uvicorn.Config(
        create_app(settings),
        host=settings.host,
        port=settings.sidecar_port,
        proxy_headers=True,
        forwarded_allow_ips=settings.forwarded_allow_ips,  # never uvicorn's default, which trusts 127.0.0.1
    )


def serve(settings: Settings) -> None:
    """Run the sidecar in this process until interrupted."""
    configure_logging(settings.log_format)
    uvicorn.Server(uvicorn_config(settings)).run()
