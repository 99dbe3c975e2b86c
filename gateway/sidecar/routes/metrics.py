"""`GET /metrics`: the sidecar's Prometheus text (its requests; under `gateway up` also the watcher's head
lag, which writes to the same PROMETHEUS_MULTIPROC_DIR) plus the database gauges read at scrape time.
401 without `Authorization: Bearer <METRICS_BEARER_TOKEN>`, and always when that setting is unset."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from gateway.observability import metrics
from gateway.observability.db_gauges import database_families
from gateway.sidecar.deps import ServicesDep

router = APIRouter(tags=["metrics"])


@router.get("/metrics", include_in_schema=False)
async def prometheus_metrics(request: Request, svc: ServicesDep) -> Response:
    if not metrics.authorized(request.headers.get("authorization"), svc.settings.metrics_bearer_token):
        return Response(
            metrics.NEEDS_TOKEN,
            status_code=401,
            headers={"WWW-Authenticate": "Bearer"},
            media_type="text/plain",
        )
    body = metrics.exposition(await database_families(svc.db))
    return Response(body, media_type=metrics.CONTENT_TYPE)
