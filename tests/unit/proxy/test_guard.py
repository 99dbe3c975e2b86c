"""The proxy's front door (gateway.proxy.guard) driven as an ASGI app around a dummy inner app: what reaches
LiteLLM, what is refused before it, and with which status and code. No services, no LiteLLM app."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson
import pytest

from gateway.proxy import admission, x402_gate
from gateway.proxy.guard import ADMITTED, Guard

MASTER = "sk-master-test"
KEY = "sk-cg-" + "a" * 43
MAX_BODY = 1000
CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5}


@dataclass
class Inner:
    """The app the guard protects (LiteLLM's, in production): records what reached it and answers 200."""

    scopes: list[dict[str, Any]] = field(default_factory=list)
    bodies: list[bytes] = field(default_factory=list)

    async def __call__(self, scope, receive, send) -> None:
        self.scopes.append(scope)
        if scope["type"] == "http":
            body, more = b"", True
            while more:
                message = await receive()
                body += message.get("body", b"")
                more = message.get("more_body", False)
            self.bodies.append(body)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"inner"})


@dataclass
class Answer:
    status: int | None
    body: bytes
    messages: list[dict[str, Any]]
    reads: int  # how many times the guard called receive

    @property
    def error(self) -> dict[str, Any]:
        return orjson.loads(self.body)["error"]


@pytest.fixture(autouse=True)
def no_x402(monkeypatch):
    """x402 is off here (a request without a credential is not the payment gate's)."""
    monkeypatch.setattr(x402_gate, "wanted", lambda headers: False)


@pytest.fixture
def inner() -> Inner:
    return Inner()


async def call(
    app: Inner,
    path: str,
    *,
    method: str = "POST",
    headers: dict[str, str] | None = None,
    body: Any = CHAT,
    chunks: list[bytes] | None = None,
    query: bytes = b"",
    kind: str = "http",
    master: str | None = MASTER,
) -> Answer:
    raw = body if isinstance(body, bytes) else orjson.dumps(body)
    pieces = chunks if chunks is not None else [raw]
    scope = {
        "type": kind,
        "method": method,
        "path": path,
        "query_string": query,
        "headers": [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in (headers or {}).items()],
    }
    reads = 0
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        nonlocal reads
        reads += 1
        if reads > len(pieces):
            return {"type": "http.disconnect"}
        return {"type": "http.request", "body": pieces[reads - 1], "more_body": reads < len(pieces)}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await Guard(app, MAX_BODY, master)(scope, receive, send)
    start = next((m for m in sent if m["type"] == "http.response.start"), None)
    body_out = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return Answer(start["status"] if start else None, body_out, sent, reads)


def bearer(key: str = KEY) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


# routes ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/key/generate", "/user/new", "/health", "/model/info", "/config/update", "/"])
async def test_a_key_reaches_no_route_outside_the_allow_list(inner, path):
    answer = await call(inner, path, headers=bearer())
    assert answer.status == 403 and answer.error["code"] == "route_not_allowed"
    assert inner.scopes == []


async def test_a_billed_route_with_a_valid_body_reaches_litellm_marked_and_parsed_once(inner):
    answer = await call(inner, "/v1/chat/completions", headers=bearer())
    assert answer.status == 200 and answer.body == b"inner"
    (scope,) = inner.scopes
    assert scope[ADMITTED] is True
    assert scope["parsed_body"][1] == CHAT  # LiteLLM's cache: it does not parse the body again
    assert inner.bodies == [orjson.dumps(CHAT)]  # the body the guard read is replayed whole


@pytest.mark.parametrize("path", sorted(p for p, (kind, _) in admission.ROUTES.items() if kind == admission.EMBEDDINGS))
async def test_embeddings_are_a_billed_route(inner, path):
    answer = await call(inner, path, headers=bearer(), body={"model": "text-embedding-3-small", "input": "hi"})
    assert answer.status == 200 and inner.scopes[0][ADMITTED] is True


@pytest.mark.parametrize("path", sorted(admission.ANONYMOUS_PROBES))
async def test_the_liveness_probe_is_open_to_a_request_without_any_credential(inner, path):
    answer = await call(inner, path, method="GET", headers={}, body=b"")
    assert answer.status == 200 and len(inner.scopes) == 1
    assert ADMITTED not in inner.scopes[0]


@pytest.mark.parametrize("header", sorted(admission.CREDENTIAL_HEADERS))
async def test_every_credential_form_counts_as_a_key_at_the_liveness_probe(inner, header):
    answer = await call(inner, "/health/liveliness", method="GET", headers={header: KEY}, body=b"")
    assert answer.status == 403 and answer.error["code"] == "route_not_allowed"
    assert inner.scopes == []


async def test_a_websocket_of_a_key_is_closed(inner):
    answer = await call(inner, "/v1/realtime", kind="websocket", headers=bearer())
    assert answer.messages == [{"type": "websocket.close", "code": 1008}]
    assert inner.scopes == []


# methods -----------------------------------------------------------------------------------------------------


async def test_a_billed_route_answers_405_to_another_method(inner):
    answer = await call(inner, "/v1/chat/completions", method="GET", headers=bearer(), body=b"")
    assert answer.status == 405 and answer.error["code"] == "method_not_allowed"
    assert "POST" in answer.error["message"] and inner.scopes == []


async def test_a_cors_preflight_is_litellms(inner):
    answer = await call(inner, "/v1/chat/completions", method="OPTIONS", headers={}, body=b"")
    assert answer.status == 200 and ADMITTED not in inner.scopes[0]


# body size ---------------------------------------------------------------------------------------------------


async def test_a_declared_body_above_the_limit_is_413_before_it_is_read(inner):
    headers = {**bearer(), "Content-Length": str(MAX_BODY + 1)}
    answer = await call(inner, "/v1/chat/completions", headers=headers, body=b"x" * (MAX_BODY + 1))
    assert answer.status == 413 and answer.error["code"] == "request_too_large"
    assert answer.reads == 0 and inner.scopes == []


async def test_an_undeclared_body_is_cut_off_at_the_limit(inner):
    chunks = [b"x" * 400, b"x" * 400, b"x" * 400, b"x" * 400]
    answer = await call(inner, "/v1/chat/completions", headers=bearer(), chunks=chunks)
    assert answer.status == 413 and answer.reads == 3  # the fourth chunk is never asked for
    assert inner.scopes == []


@pytest.mark.parametrize("declared", ["-1", "12abc", " 10", "1e3"])
async def test_a_content_length_that_is_not_a_number_is_refused(inner, declared):
    answer = await call(inner, "/v1/chat/completions", headers={**bearer(), "Content-Length": declared})
    assert answer.status == 413 and inner.scopes == []


async def test_a_body_of_exactly_the_limit_passes_the_size_check(inner):
    padded = orjson.dumps({**CHAT, "user": ""})
    body = orjson.dumps({**CHAT, "user": "u" * (MAX_BODY - len(padded))})
    assert len(body) == MAX_BODY
    answer = await call(inner, "/v1/chat/completions", headers={**bearer(), "Content-Length": str(MAX_BODY)}, body=body)
    assert answer.status == 200


# what a key may send -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("query", [b"api_base=http://evil", b"x=1", b"model=gpt-4o"])
async def test_query_parameters_on_a_billed_route_are_refused(inner, query):
    answer = await call(inner, "/v1/chat/completions", headers=bearer(), query=query)
    assert answer.status == 400 and answer.error["code"] == "unsupported_parameter"
    assert inner.scopes == []


@pytest.mark.parametrize("header", ["x-litellm-timeout", "X-LiteLLM-Num-Retries", "x-litellm-tags", "litellm-api-base"])
async def test_litellm_control_headers_are_refused(inner, header):
    answer = await call(inner, "/v1/chat/completions", headers={**bearer(), header: "1"})
    assert answer.status == 400 and answer.error["code"] == "unsupported_header"
    assert header.lower() in answer.error["message"] and inner.scopes == []


async def test_a_body_that_is_not_json_is_400(inner):
    answer = await call(inner, "/v1/chat/completions", headers=bearer(), body=b"{not json")
    assert answer.status == 400 and answer.error["code"] == "invalid_json" and inner.scopes == []


async def test_a_parameter_outside_the_allow_list_is_400_naming_it(inner):
    answer = await call(inner, "/v1/chat/completions", headers=bearer(), body={**CHAT, "api_base": "http://evil"})
    assert answer.status == 400 and answer.error["param"] == "api_base" and inner.scopes == []


# the master key ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("authorization", [f"Bearer {MASTER}", f"bearer {MASTER}", f"BEARER {MASTER}"])
async def test_the_master_key_passes_untouched_to_any_route(inner, authorization):
    answer = await call(inner, "/key/generate", headers={"Authorization": authorization}, query=b"x=1")
    assert answer.status == 200 and ADMITTED not in inner.scopes[0]


@pytest.mark.parametrize(
    "headers",
    [
        {"Authorization": f"Bearer {MASTER}x"},
        {"Authorization": f"Bearer {MASTER[:-1]}"},
        {"Authorization": MASTER},
        {"x-api-key": MASTER},  # only the Authorization header carries the master key past the guard
    ],
)
async def test_anything_but_the_master_key_is_a_key(inner, headers):
    answer = await call(inner, "/key/generate", headers=headers)
    assert answer.status == 403 and inner.scopes == []


async def test_without_a_master_key_configured_nothing_is_master(inner):
    answer = await call(inner, "/key/generate", headers={"Authorization": "Bearer "}, master=None)
    assert answer.status == 403 and inner.scopes == []


async def test_a_master_key_on_a_billed_route_skips_the_allow_lists(inner):
    answer = await call(inner, "/v1/chat/completions", headers=bearer(MASTER), body={**CHAT, "mock_response": "x"})
    assert answer.status == 200 and ADMITTED not in inner.scopes[0]


async def test_lifespan_messages_pass_through():
    sent = []

    async def send(message):
        sent.append(message)

    async def receive():
        return {"type": "lifespan.startup"}

    seen = []

    async def app(scope, receive, send):
        seen.append(scope["type"])

    await Guard(app, MAX_BODY, MASTER)({"type": "lifespan"}, receive, send)
    assert seen == ["lifespan"]
