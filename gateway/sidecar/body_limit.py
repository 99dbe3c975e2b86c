"""A request body size limit, as a pure ASGI middleware: `BodyLimit(app, max_bytes=..., too_large=...)`.

A request whose body is larger than `max_bytes` is answered with `too_large(max_bytes)` (any ASGI app,
e.g. a Starlette response: the sidecar's is its 413 JSON error) before the body has been read in full:

- a Content-Length over the limit is refused up front: the app is not called, no body byte is read;
- otherwise (chunked, or no Content-Length) bytes are counted as the app receives them. At the first
  chunk past the limit the answer is sent; from then on the app is told that the client disconnected,
  whatever it sends is dropped, and nothing more is read from the client.

If the app had already started its own response when the limit was crossed, no 413 can follow: that
response is cut short, and the server closes the connection. Nothing here is specific to the sidecar,
so the same class can wrap another ASGI app (the LiteLLM proxy) with its own limit and error body.
(Starlette's own RequestBodyLimitMiddleware refuses only when the app reads, through the app's
exception handlers, with a plain-text body.)
"""

from __future__ import annotations

from collections.abc import Callable

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send


class BodyLimit:
    def __init__(self, app: ASGIApp, *, max_bytes: int, too_large: Callable[[int], ASGIApp]) -> None:
        if max_bytes < 0:
            raise ValueError("max_bytes must be >= 0")
        self.app = app
        self.max_bytes = max_bytes
        self.too_large = too_large

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.max_bytes:
            await self._refuse(scope, receive, send)
            return

        received = 0
        refused = started = False

        async def counted_receive() -> Message:
            nonlocal received, refused
            if refused:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    refused = True
                    if not started:
                        await self._refuse(scope, receive, send)
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if refused:  # the answer is ours (or the response was cut short): the app's is dropped
                return
            started = started or message["type"] == "http.response.start"
            await send(message)

        await self.app(scope, counted_receive, guarded_send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Send the error response with `Connection: close`: the server then closes the connection instead
        of reading (and discarding) the rest of the body."""

        async def closing_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), (b"connection", b"close")]}
            await send(message)

        await self.too_large(self.max_bytes)(scope, receive, closing_send)


def _content_length(scope: Scope) -> int | None:
    """The declared body size, or None when absent or unreadable (then the bytes are counted)."""
    try:
        return int(Headers(scope=scope)["content-length"])
    except (KeyError, ValueError):
        return None
