"""What a virtual key's client sees of a response: an allow-list of response headers, and the gateway's own words
in place of an upstream error's text.

LiteLLM forwards a provider's response headers (`llm_provider-openai-organization`, `-openai-project`,
rate-limit headroom, the provider's request id, bare `x-ratelimit-*`), its own (`x-litellm-model-id`,
`x-litellm-timeout`, ...) and, on an upstream error, the provider's error text ("Rate limit reached for gpt-4o in
organization org-... Used 29999000"). None of that is the client's: the operator's provider account stays the
operator's. The guard wraps every answer to a non-admin request in `Confined`:
- headers: HTTP framing, CORS, `retry-after`, the x402 headers and the gateway's own (`x-gateway-*`); every
  other is dropped. What the call costs is added here from the request's billed call (`cost_headers`): what
  the client is charged (`x-litellm-response-cost` in USD, as LiteLLM's clients read it, and
  `x-gateway-credits-charged`) or, for a stream whose headers leave before it is settled, what is held;
  whatever LiteLLM wrote under those names (its provider cost) is dropped. (Set here rather than in LiteLLM's
  response-headers hook, whose mere override makes LiteLLM build routing metadata for every response.)
- an error status whose body the gateway did not write (an upstream or LiteLLM error: no `x-gateway-error`
  header) gets the gateway's message with the request id; the original goes to the log with the same id.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from gateway.core.money import micros_to_credits, micros_to_usd_text
from gateway.proxy.errors import ERROR_MARK, GatewayError, upstream_error
from gateway.proxy.inflight import Call

log = logging.getLogger("gateway.proxy.exposure")

Message = dict[str, Any]
Send = Callable[[Message], Awaitable[None]]
Render = Callable[[GatewayError], bytes]

ALLOWED_HEADERS = frozenset(
    {
        b"content-type",
        b"content-length",
        b"content-encoding",
        b"transfer-encoding",
        b"cache-control",
        b"connection",
        b"date",
        b"server",
        b"vary",
        b"retry-after",
        b"www-authenticate",
        b"payment-required",  # x402
        b"payment-response",
    }
)
ALLOWED_PREFIXES = (b"x-gateway-", b"access-control-")
ORIGINAL_LOGGED = 2_000  # characters of an upstream error body kept in the log line


COST_HEADERS = frozenset({b"x-litellm-response-cost", b"x-gateway-credits-charged", b"x-gateway-credits-held"})


def allowed(name: bytes) -> bool:
    name = name.lower()
    return (name in ALLOWED_HEADERS or name.startswith(ALLOWED_PREFIXES)) and name not in COST_HEADERS


def cost_headers(call: Call) -> list[tuple[bytes, bytes]]:
    """What the client pays for `call` (what it was charged, or what is held while it streams)."""
    charged = call.charged_micros
    if charged is None:
        return [(b"x-gateway-credits-held", micros_to_credits(call.held_micros).encode())]
    return [
        (b"x-litellm-response-cost", micros_to_usd_text(charged).encode()),
        (b"x-gateway-credits-charged", micros_to_credits(charged).encode()),
    ]


class Confined:
    """An ASGI `send` that lets through only what a client may see (see the module docstring)."""

    def __init__(self, send: Send, request_id: str | None, render: Render, calls: list[Call] | None = None) -> None:
        self._send = send
        self._request_id = request_id
        self._render = render
        self._calls = calls  # the calls held while serving this request (gateway.proxy.inflight.held_in_request)
        self._replacing: int | None = None  # the status of an upstream error whose body is being swallowed
        self._original: list[bytes] = []

    async def __call__(self, message: Message) -> None:
        kind = message["type"]
        if kind == "http.response.start":
            headers = message.get("headers") or []
            ours = any(name.lower() == ERROR_MARK for name, _ in headers)
            if message["status"] >= 400 and not ours:
                self._replacing = int(message["status"])
                return  # answered once the original body has been read (and logged)
            kept = [(name, value) for name, value in headers if allowed(name)]
            if self._request_id and not any(name.lower() == b"x-gateway-request-id" for name, _ in kept):
                kept.append((b"x-gateway-request-id", self._request_id.encode()))
            if self._calls:
                kept.extend(cost_headers(self._calls[-1]))
            message = {**message, "headers": kept}
        elif kind == "http.response.body" and self._replacing is not None:
            self._original.append(message.get("body", b""))
            if message.get("more_body"):
                return
            return await self._replace()
        await self._send(message)

    async def _replace(self) -> None:
        status = self._replacing or 502
        original = b"".join(self._original).decode("utf-8", "replace")
        log.warning(
            "upstream error for %s (HTTP %s), replaced for the client: %s",
            self._request_id,
            status,
            original[:ORIGINAL_LOGGED],
        )
        body = self._render(upstream_error(status, self._request_id))
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        if self._request_id:
            headers.append((b"x-gateway-request-id", self._request_id.encode()))
        await self._send({"type": "http.response.start", "status": status, "headers": headers})
        await self._send({"type": "http.response.body", "body": body})
