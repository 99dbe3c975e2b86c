"""ASGI middleware counting sidecar requests by route template (`/api/v1/keys/{key_id}`, never the ids in
the path), method and status. Unmatched paths count as route "unmatched"; the template is the one the
router matched, so the label values are bounded by the app's routes."""

from __future__ import annotations

from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.observability.metrics import SIDECAR_REQUESTS

UNMATCHED = "unmatched"
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class RequestMetrics:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        status = 500  # an exception before the response started is answered 500 by the server

        async def recording(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, recording)
        finally:
            SIDECAR_REQUESTS.labels(_template(scope), _method(scope), str(status)).inc()


def _template(scope: Scope) -> str:
    """The matched route's full template. FastAPI >= 0.16x keeps included routers as they are, so the
    route's own `path` lacks their prefixes; the effective route context it records has the full one."""
    effective: Any = (scope.get("fastapi") or {}).get("effective_route_context")
    path = getattr(effective, "path_format", None) or getattr(scope.get("route"), "path", None)
    return path if isinstance(path, str) else UNMATCHED


def _method(scope: Scope) -> str:
    method = scope.get("method", "")
    return method if method in _METHODS else "other"
