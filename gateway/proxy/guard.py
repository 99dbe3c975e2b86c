"""The proxy's front door: an ASGI layer around LiteLLM's app that confines virtual keys before any LiteLLM
logic runs (LiteLLM's own auth checks, which answer some refusals with 500, come after it).

- The master key passes through untouched (admin access stays LiteLLM's).
- Any other request reaches only the routes in `admission.ROUTES`; every other route answers 403
  `route_not_allowed` (a request with no credential at all may still reach the liveness probe).
- On the billed routes: no LiteLLM control headers or query parameters; the body is read up to
  `PROXY_MAX_BODY_BYTES` (413 beyond it, before it is read in full), parsed once and checked against the
  parameter allow-lists (400 naming the parameter); LiteLLM then reuses the parsed body.
- The model list is answered here, with user prices (provider price x markup) and nothing of the
  deployments (no provider price, api_base or litellm_params); so are the key's own view of itself
  (`/v1/key`) and the lookup of one of its calls (`/api/v1/generation?id=`): gateway.proxy.introspection.
- `GET /metrics` (Prometheus text of every worker) is answered here for any caller that presents the
  METRICS_BEARER_TOKEN (or for anyone when none is set); it never reaches LiteLLM or a billed route. Every
  answer on a billed route, refusals included, is counted as a call outcome.
- A billed call the server cancels (a shutdown's grace ran out) is released here if nothing settled it.
- Every request that passes is marked in its scope, with the call's request id (the hold's idempotency key,
  `x-gateway-request-id`); `gateway.proxy.auth` refuses a billed call without the mark, so a proxy started
  without this layer fails closed instead of open.
- What LiteLLM answers goes back through `gateway.proxy.exposure.Confined`: an allow-list of response
  headers, and our words in place of upstream error text.
- With X402_ENABLED, a billed call that carries no credential at all is `gateway.proxy.x402_gate`'s: it
  answers 402 with what to pay, or takes the payment before LiteLLM sees the call.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import secrets
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import orjson

from gateway.core.billing import user_rates
from gateway.failures import is_transient
from gateway.proxy import admission, apis, bearer, call_metrics, exposure, inflight, x402_gate
from gateway.proxy.callbacks import proxy_handler_instance
from gateway.proxy.errors import GatewayError, billing_unavailable, route_not_allowed
from gateway.proxy.introspection import generation_document, key_document
from gateway.proxy.pricing import list_rates, model_names, route_paths
from gateway.proxy.runtime import runtime

log = logging.getLogger("gateway.proxy.guard")

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

METRICS_PATH = "/metrics"  # answered here: Prometheus text of every worker (gateway.proxy.call_metrics)
ADMITTED = "gateway.admitted"  # scope key set on every request the guard let through to a billed route
REQUEST_ID = "gateway.request_id"  # scope key: the admitted call's request id (ours, never the client's)


class Guard:
    def __init__(self, app: ASGIApp, max_body_bytes: int, master_key: str | None) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self._master = f"bearer {master_key}".encode() if master_key else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        headers = {name.decode("latin-1").lower(): value for name, value in scope["headers"]}
        if scope["path"] == METRICS_PATH and scope["type"] == "http":  # never a billed route, for any key
            return await call_metrics.serve_metrics(scope["method"], headers.get("authorization"), send)
        if self._is_master(headers.get("authorization")):
            return await self.app(scope, receive, send)
        path = scope["path"]
        route = admission.ROUTES.get(path)
        if scope["type"] == "websocket":  # no websocket route is billed
            return await send({"type": "websocket.close", "code": 1008})
        if route is None:
            if path in admission.ANONYMOUS_PROBES and not admission.CREDENTIAL_HEADERS.intersection(headers):
                return await self.app(scope, receive, send)
            return await _respond(call_metrics.CountedSend(send), route_not_allowed(path))
        kind, method = route
        if scope["method"] == "OPTIONS":  # CORS preflight, answered by LiteLLM's CORS middleware
            return await self.app(scope, receive, send)
        if scope["method"] != method:
            return await _respond(send, GatewayError(405, "method_not_allowed", f"{path} accepts {method} only."))
        if kind in admission.ANSWERED:
            return await self._answer(kind, headers, scope.get("query_string") or b"", send)
        send = counted = call_metrics.CountedSend(send)  # every billed-route answer counts as a call outcome
        try:
            admission.check_headers(headers, scope.get("query_string") or b"")
            body = await self._read_body(headers, receive)
            try:
                parsed = orjson.loads(body)
            except orjson.JSONDecodeError:
                raise admission.Refusal(400, "invalid_json", "The request body is not valid JSON.") from None
            counted.model = parsed.get("model") if isinstance(parsed, dict) else None
            admission.check_body(kind, parsed)
            if kind in apis.PARAMS:
                apis.check_body(kind, parsed)
        except admission.Refusal as refusal:
            return await _respond(
                send, GatewayError(refusal.status, refusal.code, refusal.message, param=refusal.param), kind
            )
        scope[ADMITTED] = True
        scope[REQUEST_ID] = request_id = uuid.uuid4().hex
        scope["parsed_body"] = (tuple(parsed), parsed)  # LiteLLM's cache of the parsed body: it parses no more
        if kind == admission.MESSAGES:  # LiteLLM's refusals (401, 402, 429, 503...) in Anthropic's shape
            send = _anthropic_errors(send)
        if x402_gate.wanted(headers):  # no credential at all: the call pays for itself, or is answered here
            send = await x402_gate.admit(scope, headers, kind, parsed, send)
            if send is None:
                return
        render = functools.partial(_render, kind)  # upstream errors in the route's own error shape
        with inflight.held_in_request() as held:
            try:
                await self.app(scope, _replay(body, receive), exposure.Confined(send, request_id, render, held))
            except asyncio.CancelledError:  # the server cut the call (a shutdown's grace ran out)
                if held:
                    await asyncio.shield(proxy_handler_instance.billing.release_cut(held))
                raise

    def _is_master(self, authorization: bytes | None) -> bool:
        return bool(
            self._master and authorization and secrets.compare_digest(authorization.lower(), self._master.lower())
        )

    async def _read_body(self, headers: dict[str, bytes], receive: Receive) -> bytes:
        declared = headers.get("content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_body_bytes):
            raise self._too_large()
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                raise self._too_large()
            chunks.append(chunk)
            if not message.get("more_body"):
                break
        return b"".join(chunks)

    def _too_large(self) -> admission.Refusal:
        return admission.Refusal(
            413, "request_too_large", f"The request body is larger than {self.max_body_bytes} bytes."
        )

    async def _answer(self, kind: str, headers: dict[str, bytes], query: bytes, send: Send) -> None:
        """A read-only route answered here for the bearer key: the model list, the key itself, one of its calls."""
        try:
            owner = await bearer.authenticate(bearer.presented_key(headers))  # the same key check as custom_auth
            if kind == admission.KEY:
                return await _send_json(send, 200, await key_document(owner))
            if kind == admission.GENERATION:
                return await _send_json(send, 200, await generation_document(owner, query))
        except GatewayError as exc:
            return await _respond(send, exc)
        except Exception as exc:
            if not is_transient(exc):
                raise
            log.warning("%s refused: billing database unreachable (%s)", kind, type(exc).__name__)
            return await _respond(send, billing_unavailable())
        await _send_json(send, 200, {"object": "list", "data": price_list()})


def price_list() -> list[dict[str, Any]]:
    """Every priced model group at user prices, as OpenAI's model objects with a `pricing` field and the
    billed `routes` (API paths) it serves."""
    markup = runtime().settings.user_price_markup_factor
    created = int(time.time())
    entries = []
    for name in model_names():
        rates = list_rates(name)
        if rates is not None:
            entries.append(
                {
                    "id": name,
                    "object": "model",
                    "created": created,
                    "owned_by": "credit-gateway",
                    "pricing": user_rates(*rates, markup),
                    "routes": route_paths(name),
                }
            )
    return entries


def _anthropic_errors(send: Send) -> Send:
    """A send that re-renders an OpenAI-shaped JSON error (LiteLLM's and ours) in Anthropic's error shape."""
    start: Message | None = None

    async def send_anthropic(message: Message) -> None:
        nonlocal start
        if message["type"] == "http.response.start" and message["status"] >= 400:
            start = message  # held until the body says whether it is an error document
            return
        if start is None or message["type"] != "http.response.body":
            return await send(message)
        held, start = start, None
        try:
            error = orjson.loads(message.get("body", b""))["error"]
            body = orjson.dumps(
                render_error(admission.MESSAGES, GatewayError(held["status"], "", str(error["message"])))
            )
        except (orjson.JSONDecodeError, KeyError, TypeError):
            await send(held)
            return await send(message)
        headers = [(k, v) for k, v in held.get("headers", []) if k.lower() != b"content-length"]
        await send({**held, "headers": [*headers, (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})

    return send_anthropic


def _replay(body: bytes, receive: Receive) -> Receive:
    """A receive that hands the app the body already read, then passes on what the server sends next."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


def render_error(kind: str | None, error: GatewayError) -> dict[str, Any]:
    """An error body in the shape the route's clients parse: Anthropic's on /v1/messages
    (`{"type": "error", "error": {"type", "message"}}`, its type named from the status as Anthropic does),
    OpenAI's everywhere else."""
    if kind == admission.MESSAGES:
        return {
            "type": "error",
            "error": {"type": ANTHROPIC_ERROR_TYPES.get(error.status_code, "api_error"), "message": error.message},
        }
    return {"error": error.to_dict()}


# Anthropic's error types by HTTP status (docs.anthropic.com, "Errors")
ANTHROPIC_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    503: "overloaded_error",
    529: "overloaded_error",
}


def _render(kind: str, error: GatewayError) -> bytes:
    return orjson.dumps(render_error(kind, error))


async def _respond(send: Send, error: GatewayError, kind: str | None = None) -> None:
    await _send_json(send, error.status_code, render_error(kind, error))


async def _send_json(send: Send, status: int, payload: Any) -> None:
    body = orjson.dumps(payload)
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


def install(app: Any) -> None:
    """Put the guard in front of LiteLLM's ASGI app (idempotent). LiteLLM loads our hooks during its
    start-up, when Starlette has already built the app's middleware stack: the guard wraps that stack."""
    settings = runtime().settings
    stack = app.middleware_stack or app.build_middleware_stack()
    if not isinstance(stack, Guard):
        app.middleware_stack = Guard(stack, settings.proxy_max_body_bytes, settings.litellm_master_key)
