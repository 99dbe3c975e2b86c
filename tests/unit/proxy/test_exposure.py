"""What leaves the proxy for a client: allowed headers only, and upstream error text replaced by ours."""

from __future__ import annotations

from decimal import Decimal

import orjson

from gateway.core.money import TokenPrices
from gateway.proxy.errors import ERROR_MARK, GatewayError, insufficient_credits
from gateway.proxy.exposure import Confined
from gateway.proxy.inflight import Call

UPSTREAM_HEADERS = [
    (b"content-type", b"application/json"),
    (b"llm_provider-openai-organization", b"org-operator"),
    (b"llm_provider-openai-project", b"proj_operator"),
    (b"llm_provider-x-ratelimit-remaining-tokens", b"149999000"),
    (b"x-ratelimit-remaining-tokens", b"149999000"),
    (b"llm_provider-x-request-id", b"req_upstream"),
    (b"x-litellm-model-id", b"abc123"),
    (b"x-litellm-timeout", b"600"),
    (b"x-litellm-model-api-base", b"https://api.openai.com"),
    (b"X-Litellm-Response-Cost", b"0.000123"),
    (b"x-gateway-credits-charged", b"0.123"),
    (b"access-control-allow-origin", b"*"),
    (b"retry-after", b"2"),
]


def render(error: GatewayError) -> bytes:
    return orjson.dumps({"error": error.to_dict()})


async def run(start: dict, *bodies: bytes, calls: list[Call] | None = None) -> list[dict]:
    sent: list[dict] = []

    async def send(message: dict) -> None:
        sent.append(message)

    confined = Confined(send, "rid123", render, calls)
    await confined(start)
    for i, body in enumerate(bodies):
        await confined({"type": "http.response.body", "body": body, "more_body": i < len(bodies) - 1})
    return sent


async def test_only_allowed_headers_reach_the_client_and_the_request_id_is_added():
    sent = await run({"type": "http.response.start", "status": 200, "headers": UPSTREAM_HEADERS}, b"{}")
    names = [name.lower() for name, _ in sent[0]["headers"]]
    assert names == [b"content-type", b"access-control-allow-origin", b"retry-after", b"x-gateway-request-id"]
    assert sent[1]["body"] == b"{}"


def call(charged: int | None) -> Call:
    prices = TokenPrices(Decimal("1e-7"), Decimal("1e-6"), 1000)
    return Call("rid123", 1, 2, "m", 1_500, False, False, prices, Decimal("1.5"), charged_micros=charged)


async def test_the_client_sees_what_it_pays_never_what_litellm_wrote_under_those_names():
    """LiteLLM's x-litellm-response-cost is the provider's cost; the client is shown its own charge (USD and
    credits), or what is held while a stream has not settled yet."""
    start = {"type": "http.response.start", "status": 200, "headers": UPSTREAM_HEADERS}
    charged = dict((await run(start, b"{}", calls=[call(18)]))[0]["headers"])
    assert charged[b"x-litellm-response-cost"] == b"0.000018" and charged[b"x-gateway-credits-charged"] == b"0.018"
    assert b"x-gateway-credits-held" not in charged
    held = dict((await run(start, b"{}", calls=[call(None)]))[0]["headers"])
    assert held[b"x-gateway-credits-held"] == b"1.5"
    assert b"x-litellm-response-cost" not in held and b"x-gateway-credits-charged" not in held


async def test_an_upstream_error_body_is_replaced_and_its_status_kept():
    original = b'{"error": {"message": "Rate limit reached for gpt-4o in organization org-operator. Used 29999000"}}'
    start = {"type": "http.response.start", "status": 429, "headers": UPSTREAM_HEADERS}
    sent = await run(start, original[:40], original[40:])
    assert [m["type"] for m in sent] == ["http.response.start", "http.response.body"]
    assert sent[0]["status"] == 429
    body = orjson.loads(sent[1]["body"])
    assert body["error"]["code"] == "upstream_rate_limited" and "rid123" in body["error"]["message"]
    assert b"org-operator" not in sent[1]["body"]
    headers = dict(sent[0]["headers"])
    assert headers[b"content-length"] == str(len(sent[1]["body"])).encode() and b"x-litellm-timeout" not in headers


async def test_the_gateways_own_errors_pass_unchanged():
    error = insufficient_credits("Insufficient credits: balance 1 credit.")
    headers = [(b"content-type", b"application/json"), *((k.encode(), v.encode()) for k, v in error.headers.items())]
    assert (ERROR_MARK, b"insufficient_credits") in headers
    body = render(error)
    sent = await run({"type": "http.response.start", "status": 402, "headers": headers}, body)
    assert sent[0]["status"] == 402 and sent[1]["body"] == body
