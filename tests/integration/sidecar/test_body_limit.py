"""The request body limit (SIDECAR_MAX_BODY_BYTES, gateway/sidecar/body_limit.py): a body over the limit
gets 413 `request_too_large` before it is read in full (up front by its Content-Length; chunked, at the
chunk that crosses the limit), changes nothing, and the connection is closed; a body at the limit is served.

Checked under uvicorn on a raw socket (as deployed: the body is never sent, or never ends, so the test
hangs if the server waits for it), in process through the whole app, and at the ASGI level, where the
middleware's reads are counted against an endless body.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import uvicorn
from starlette.responses import PlainTextResponse
from starlette.types import Message, Scope

from gateway.sidecar.app import create_app, uvicorn_config
from gateway.sidecar.body_limit import BodyLimit
from tests.integration.sidecar.conftest import ORIGIN, client_for, row_counts, running, sign_in

LIMIT = 1024
TOO_LARGE = {"error": {"code": "request_too_large", "message": f"the request body is larger than {LIMIT} bytes"}}


@asynccontextmanager
async def served(settings) -> AsyncIterator[int]:
    """The sidecar under uvicorn, in this event loop (it shares the test's database engine); yields its port."""
    server = uvicorn.Server(uvicorn_config(settings))
    task = asyncio.create_task(server.serve())
    async with asyncio.timeout(20):
        while not server.started:
            assert not task.done(), "the sidecar did not start"
            await asyncio.sleep(0.01)
    try:
        yield server.servers[0].sockets[0].getsockname()[1]
    finally:
        server.should_exit = True
        await task


async def exchange(port: int, head: bytes, *chunks: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send a request's head and these body bytes (maybe not all of its body), then read the answer until the
    server closes the connection: (status, headers, body). Fails if it is not closed within 3 s (uvicorn would
    keep an idle connection open for 5)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(head + b"".join(chunks))
        await writer.drain()
        raw = await asyncio.wait_for(reader.read(), 3)
    finally:
        writer.close()
    head_text, _, body = raw.partition(b"\r\n\r\n")
    status_line, *lines = head_text.decode().split("\r\n")
    return int(status_line.split()[1]), dict(line.lower().split(": ", 1) for line in lines), body


def request_head(port: int, framing: str) -> bytes:
    return (
        f"POST /api/v1/auth/verify HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nOrigin: {ORIGIN}\r\n"
        f"Content-Type: application/json\r\n{framing}\r\n\r\n"
    ).encode()


def chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


async def test_a_declared_body_over_the_limit_is_refused_before_any_of_it_is_sent(make_settings):
    async with served(make_settings(host="127.0.0.1", sidecar_port=0, sidecar_max_body_bytes=LIMIT)) as port:
        started = time.monotonic()
        status, headers, body = await exchange(port, request_head(port, "Content-Length: 100000000"))
        elapsed = time.monotonic() - started
    assert status == 413 and json.loads(body) == TOO_LARGE
    assert headers["connection"] == "close"  # the server will not read (nor discard) the 100 MB
    assert elapsed < 1, elapsed


async def test_a_chunked_body_is_refused_at_the_chunk_that_crosses_the_limit(make_settings):
    async with served(make_settings(host="127.0.0.1", sidecar_port=0, sidecar_max_body_bytes=LIMIT)) as port:
        # LIMIT + 256 bytes and no last chunk: a server that waited for the whole body would never answer
        chunks = [chunk(b" " * 256) for _ in range(LIMIT // 256 + 1)]
        status, headers, body = await exchange(port, request_head(port, "Transfer-Encoding: chunked"), *chunks)
    assert status == 413 and json.loads(body) == TOO_LARGE
    assert headers["connection"] == "close"


def padded(document: dict, size: int) -> bytes:
    """`document` as JSON, padded with trailing spaces to exactly `size` bytes."""
    text = json.dumps(document).encode()
    return text + b" " * (size - len(text))


async def test_bodies_at_the_limit_are_served_and_over_it_change_nothing(make_settings, wallet, db):
    async with running(create_app(make_settings(sidecar_max_body_bytes=LIMIT))) as app, client_for(app) as client:
        await sign_in(client, wallet)
        json_type = {"Content-Type": "application/json"}

        async def streamed(data: bytes) -> AsyncIterator[bytes]:  # no Content-Length: counted as it comes
            for start in range(0, len(data), 100):
                yield data[start : start + 100]

        before = await row_counts(db), (await client.get("/api/v1/keys")).json()["data"]
        for body in (padded({"label": "too big"}, LIMIT + 1), streamed(padded({"label": "too big"}, LIMIT + 1))):
            refused = await client.post("/api/v1/keys", content=body, headers=json_type)
            assert refused.status_code == 413 and refused.json() == TOO_LARGE
        assert (await row_counts(db), (await client.get("/api/v1/keys")).json()["data"]) == before

        at_limit = {
            "declared": padded({"label": "declared"}, LIMIT),
            "chunked": streamed(padded({"label": "chunked"}, LIMIT)),
        }
        for label, body in at_limit.items():
            created = await client.post("/api/v1/keys", content=body, headers=json_type)
            assert created.status_code == 201, created.text
            assert created.json()["label"] == label


def http_scope(headers: list[tuple[bytes, bytes]]) -> Scope:
    return {"type": "http", "method": "POST", "path": "/", "headers": headers}


async def test_the_middleware_stops_reading_at_the_limit_and_drops_the_apps_answer():
    """Any ASGI app, any error body: the body never ends, so reading it all would never return."""
    reads, app_got, sent = 0, [], []

    async def endless_body() -> Message:
        nonlocal reads
        reads += 1
        assert reads < 100, "read past the limit"
        return {"type": "http.request", "body": b"x" * 1000, "more_body": True}

    async def send(message: Message) -> None:
        sent.append(message)

    async def app(scope, receive, send) -> None:
        while (message := await receive())["type"] == "http.request":
            app_got.append(len(message["body"]))
        await PlainTextResponse("the app's own answer")(scope, receive, send)

    limited = BodyLimit(app, max_bytes=4500, too_large=lambda limit: PlainTextResponse(f"over {limit}", 413))
    await limited(http_scope([]), endless_body, send)
    assert reads == 5 and app_got == [1000] * 4  # the fifth chunk crosses 4500: the app sees a disconnect
    assert [m["type"] for m in sent] == ["http.response.start", "http.response.body"]
    assert sent[0]["status"] == 413 and (b"connection", b"close") in sent[0]["headers"]
    assert sent[1]["body"] == b"over 4500"

    sent.clear()
    await limited(http_scope([(b"content-length", b"1000000000")]), endless_body, send)
    assert reads == 5 and app_got == [1000] * 4  # refused up front: no read, the app never ran
    assert sent[0]["status"] == 413 and sent[1]["body"] == b"over 4500"
