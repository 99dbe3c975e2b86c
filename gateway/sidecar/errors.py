"""The sidecar's errors: every failure answers `{"error": {"code", "message"}}` with the right status.

Owns `ApiError` (raised by routes and dependencies), the mapping of domain and infrastructure exceptions
to statuses, handlers that reshape FastAPI's own 404/405/422 into the same body, and `documented(...)`,
which describes those error responses in the OpenAPI document. `request_too_large` is the 413 answer the
body-size middleware sends.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException

from gateway.auth.nonces import NonceStoreUnavailable
from gateway.auth.siwe import LoginRejected
from gateway.failures import ChainUnavailable, is_transient

log = logging.getLogger("gateway.sidecar")
E = TypeVar("E", bound=Exception)


class ErrorDetail(BaseModel):
    code: str
    message: str


class ErrorResponse(BaseModel):
    error: ErrorDetail


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers


def unauthenticated() -> ApiError:
    return ApiError(
        401, "unauthenticated", "sign in first: no valid session (it expired, was logged out, or never existed)"
    )


_DESCRIPTIONS = {
    400: "The body could not be read (not UTF-8)",
    401: "Not signed in (no valid session), or the sign-in message/signature was refused",
    403: "A write from a foreign Origin (or a cookie-authenticated write without Origin) was refused",
    404: "No such resource for this account",
    422: "The request is malformed (body, query or path)",
    429: "Rate limited: retry after `Retry-After` seconds",
    503: "The database, Redis or the chain RPC is unreachable",
}
_RETRY_AFTER = {"Retry-After": {"description": "Seconds to wait before retrying", "schema": {"type": "integer"}}}


def documented(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` for these error statuses (503 is always possible, so always listed)."""
    out: dict[int | str, dict[str, Any]] = {}
    for status in sorted({*statuses, 503}):
        out[status] = {"model": ErrorResponse, "description": _DESCRIPTIONS[status]}
        if status == 429:
            out[status]["headers"] = _RETRY_AFTER
    return out


def _reply(status: int, code: str, message: str, headers: Mapping[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status, headers=headers)


def request_too_large(max_bytes: int) -> JSONResponse:
    """The answer to a request body over the limit (sent by gateway.sidecar.body_limit)."""
    return _reply(413, "request_too_large", f"the request body is larger than {max_bytes} bytes")


async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
    return _reply(exc.status, exc.code, exc.message, exc.headers)


_HTTP_CODES = {400: "malformed_body", 404: "not_found", 405: "method_not_allowed"}


async def _http_error(_: Request, exc: HTTPException) -> JSONResponse:
    return _reply(exc.status_code, _HTTP_CODES.get(exc.status_code, "http_error"), str(exc.detail), exc.headers)


async def _validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
    problems = [f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()[:5]]
    return _reply(422, "invalid_request", "; ".join(problems) or "invalid request")


async def _login_rejected(_: Request, exc: LoginRejected) -> JSONResponse:
    return _reply(401, exc.code, exc.message)


async def _chain_unavailable(_: Request, exc: ChainUnavailable) -> JSONResponse:
    log.error("smart-wallet signature check failed: %s", exc)
    return _reply(
        503, "chain_unavailable", "the chain RPC is unavailable, so a smart-wallet signature cannot be checked; retry"
    )


async def _nonce_store_unavailable(_: Request, __: NonceStoreUnavailable) -> JSONResponse:
    # not logged per request: the Redis link logs the outage (when it starts, each minute, when it ends)
    return _reply(
        503, "auth_unavailable", "sign-in is unavailable: the session store (nonces) cannot be reached; retry shortly"
    )


async def _internal(request: Request, exc: Exception) -> JSONResponse:
    """Our infrastructure down (`gateway.failures.is_transient`: the one classification the proxy, the spool
    and the sweeper use) is 503, one log line; anything else is a bug: 500, with its traceback."""
    if is_transient(exc):
        log.error("%s %s: infrastructure unavailable: %r", request.method, request.url.path, exc)
        return _reply(503, "unavailable", "the database or Redis is unreachable; retry shortly")
    log.exception("%s %s failed", request.method, request.url.path, exc_info=exc)
    return _reply(500, "internal_error", "internal error (logged)")


def _handle(app: FastAPI, exc_type: type[E], handler: Callable[[Request, E], Awaitable[JSONResponse]]) -> None:
    # Starlette types every handler as taking any Exception, though it calls each with its own type only
    app.add_exception_handler(exc_type, handler)  # type: ignore[arg-type]


def install(app: FastAPI) -> None:
    _handle(app, ApiError, _api_error)
    _handle(app, HTTPException, _http_error)
    _handle(app, RequestValidationError, _validation_error)
    _handle(app, LoginRejected, _login_rejected)
    _handle(app, ChainUnavailable, _chain_unavailable)
    _handle(app, NonceStoreUnavailable, _nonce_store_unavailable)
    app.add_exception_handler(Exception, _internal)
