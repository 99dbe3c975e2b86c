"""A virtual key reaches chat completions, Responses, Anthropic Messages, text completions, embeddings and the
model list, nothing else: every route the LiteLLM app registers is walked with a funded key, and LiteLLM's
request knobs are refused before they act."""

from __future__ import annotations

import re
import socket

import httpx
import pytest

from gateway.proxy import admission

# ruff: noqa: ASYNC210, ASYNC212
# (blocking httpx calls in these async tests on purpose: the proxy under test is another process, and
# nothing else runs on the test's event loop meanwhile)
pytestmark = pytest.mark.timeout(300)
CHAT = [{"role": "user", "content": "hi"}]


def registered_http_routes(proxy) -> list[tuple[str, str]]:
    """(method, path) for every HTTP route LiteLLM registers, path parameters filled in: the routes of its
    app as imported (FastAPI's included routers, flattened) and those the running proxy added at start-up
    (its admin-only /routes)."""
    from fastapi.routing import iter_route_contexts
    from litellm.proxy.proxy_server import app

    found = [
        (route.path, route.methods) for route in iter_route_contexts(app.routes) if getattr(route, "methods", None)
    ]
    base = f"http://127.0.0.1:{proxy.settings.proxy_port}"
    listed = httpx.get(f"{base}/routes", headers={"Authorization": f"Bearer {proxy.master_key}"}, timeout=30).json()[
        "routes"
    ]
    found += [(route["path"], route.get("methods") or ["GET"]) for route in listed]
    routes = set()
    for path, methods in found:
        path = re.sub(r"\{[^}:]+(:path)?\}", "x", path)
        routes.update((method, path) for method in methods if method not in ("HEAD", "OPTIONS"))
    return sorted(routes)


async def test_every_registered_route_is_refused_to_a_virtual_key_unless_allowed(proxy, make_customer, upstream):
    customer = await make_customer()
    routes = registered_http_routes(proxy)
    assert len(routes) > 300  # LiteLLM registers many; a broken walk must not pass quietly
    base = f"http://127.0.0.1:{proxy.settings.proxy_port}"
    headers = {"Authorization": f"Bearer {customer.key.raw_key}"}
    opened = []
    with httpx.Client(base_url=base, headers=headers, timeout=30) as http:
        for method, path in routes:
            resp = http.request(method, path, json={})
            allowed = admission.ROUTES.get(path)
            if allowed is not None and allowed[1] == method:
                assert resp.status_code != 403, (method, path)
                continue
            if resp.status_code != 403 or resp.json()["error"]["code"] != "route_not_allowed":
                opened.append((method, path, resp.status_code))
    assert opened == []
    assert upstream.stats()["total"] == 0  # nothing reached a provider (no health probe, no call)


# routes beside the billed APIs that cost nothing at the provider or bill what the gateway never saw: they stay
# closed (a stored response of another account, a cancel, a token count that calls the provider...)
RETRIEVAL_ROUTES = [
    ("GET", "/v1/responses/resp_x"),
    ("DELETE", "/v1/responses/resp_x"),
    ("GET", "/v1/responses/resp_x/input_items"),
    ("POST", "/v1/responses/resp_x/cancel"),
    ("POST", "/v1/responses/input_tokens"),
    ("POST", "/v1/responses/compact"),
    ("POST", "/openai/v1/responses"),
    ("POST", "/v1/messages/count_tokens"),
    ("POST", "/claude_code_gateway/v1/messages"),
    ("POST", "/anthropic/v1/messages"),
    ("POST", "/engines/gpt-4o-mini/completions"),
    ("POST", "/openai/deployments/gpt-4o-mini/completions"),
]


async def test_the_billed_apis_answer_and_their_retrieval_routes_stay_closed(proxy, make_customer, upstream):
    customer = await make_customer()
    base = f"http://127.0.0.1:{proxy.settings.proxy_port}"
    billed = [path for path, (kind, _) in admission.ROUTES.items() if kind in admission.BILLED_PATHS]
    with httpx.Client(base_url=base, timeout=30) as http:
        for headers in ({"Authorization": f"Bearer {customer.key.raw_key}"}, {"x-api-key": customer.key.raw_key}):
            for path in billed:  # an empty body: checked and refused by the allow-list, not by the route list
                resp = http.post(path, json={}, headers=headers)
                assert resp.status_code == 400, (path, resp.text)
            for method, path in RETRIEVAL_ROUTES:
                resp = http.request(method, path, json={"model": "gpt-4o-mini", "input": "hi"}, headers=headers)
                assert resp.status_code == 403 and "route_not_allowed" in resp.text, (method, path, resp.text)
    assert upstream.stats()["total"] == 0


async def test_the_master_key_keeps_admin_routes_and_makes_no_billed_call(proxy):
    base = f"http://127.0.0.1:{proxy.settings.proxy_port}"
    admin = {"Authorization": f"Bearer {proxy.master_key}"}
    assert httpx.get(f"{base}/health/liveliness", headers=admin).status_code == 200
    assert httpx.get(f"{base}/model/info", headers=admin).status_code == 200
    resp = httpx.post(f"{base}/v1/chat/completions", headers=admin, json={"model": "demo", "messages": CHAT})
    assert resp.status_code == 401 and resp.json()["error"]["code"] == "admin_key_not_billable"


async def test_only_the_liveness_probe_is_open_without_a_key(proxy):
    base = f"http://127.0.0.1:{proxy.settings.proxy_port}"
    assert httpx.get(f"{base}/health/liveliness").status_code == 200
    assert httpx.get(f"{base}/health").status_code == 403
    assert httpx.get(f"{base}/v1/models").status_code == 401


async def test_the_model_list_shows_user_prices_and_nothing_of_the_deployment(proxy, make_customer, upstream):
    customer = await make_customer()
    for path in ("/models", "/v1/models"):
        resp = httpx.get(
            f"http://127.0.0.1:{proxy.settings.proxy_port}{path}",
            headers={"Authorization": f"Bearer {customer.key.raw_key}"},
        )
        assert resp.status_code == 200
        models = {m["id"]: m for m in resp.json()["data"]}
        # gpt-4o-mini: $0.15 / $0.60 per 1M tokens from LiteLLM's map, x markup 2.0
        assert models["gpt-4o-mini"]["pricing"] == {
            "prompt_usd_per_token": "0.0000003",
            "prompt_usd_per_1m_tokens": "0.3",
            "prompt_credits_per_1m_tokens": "300",
            "completion_usd_per_token": "0.0000012",
            "completion_usd_per_1m_tokens": "1.2",
            "completion_credits_per_1m_tokens": "1200",
        }
        assert models["demo"]["pricing"]["prompt_usd_per_token"] == "0.000001"  # 0.0000005 x 2
        assert "unpriced" not in models  # it cannot be called, so it is not offered
        text = resp.text
        for leak in ("api_base", "litellm_params", upstream.base_url, "fake-provider-key", "0.00000015", "1.5e-07"):
            assert leak not in text, leak


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"api_base": "http://127.0.0.1:9/steal"}, "api_base"),
        ({"base_url": "http://127.0.0.1:9/steal"}, "base_url"),
        ({"user_config": {"model_list": []}}, "user_config"),
        ({"mock_response": "free"}, "mock_response"),
        ({"fallbacks": ["gpt-4o"]}, "fallbacks"),
        ({"num_retries": 5}, "num_retries"),
        ({"metadata": {"tags": ["x"]}}, "metadata"),
        ({"input_cost_per_token": 0}, "input_cost_per_token"),
        ({"caching": False}, "caching"),
        ({"service_tier": "priority"}, "service_tier"),
        ({"modalities": ["text", "audio"], "audio": {"voice": "alloy", "format": "wav"}}, "audio"),
        ({"prediction": {"type": "content", "content": "x"}}, "prediction"),
        ({"web_search_options": {}}, "web_search_options"),
        ({"best_of": 4}, "best_of"),
        ({"tools": [{"type": "web_search_preview"}]}, "tools[0]"),
        ({"n": 129}, "n"),
        ({"n": 0}, "n"),
        ({"max_tokens": -1}, "max_tokens"),
        ({"max_completion_tokens": "10"}, "max_completion_tokens"),
        ({"stream": True, "stream_options": {"include_usage": True, "x": 1}}, "stream_options"),
    ],
)
async def test_request_knobs_a_key_may_not_set_are_refused_before_anything_runs(
    proxy, make_customer, upstream, extra, param
):
    customer = await make_customer()
    resp = httpx.post(
        f"http://127.0.0.1:{proxy.settings.proxy_port}/v1/chat/completions",
        headers={"Authorization": f"Bearer {customer.key.raw_key}"},
        json={"model": "gpt-4o-mini", "messages": CHAT, "max_tokens": 5, **extra},
    )
    assert resp.status_code == 400, resp.text
    assert resp.json()["error"]["param"] == param
    assert upstream.stats()["total"] == 0


@pytest.mark.parametrize(
    "part",
    [
        {"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}},
        {"type": "file", "file": {"file_data": "data:application/pdf;base64,AAAA"}},
    ],
)
async def test_content_parts_whose_cost_cannot_be_bounded_are_refused(proxy, make_customer, upstream, part):
    customer = await make_customer()
    messages = [{"role": "user", "content": [{"type": "text", "text": "hi"}, part]}]
    resp = httpx.post(
        f"http://127.0.0.1:{proxy.settings.proxy_port}/v1/chat/completions",
        headers={"Authorization": f"Bearer {customer.key.raw_key}"},
        json={"model": "gpt-4o-mini", "messages": messages, "max_tokens": 5},
    )
    assert resp.status_code == 400 and resp.json()["error"]["code"] == "unsupported_content"
    assert resp.json()["error"]["param"] == "messages[0].content[1]"
    assert upstream.stats()["total"] == 0


@pytest.mark.parametrize(
    "header", ["x-litellm-num-retries", "x-litellm-timeout", "x-litellm-call-id", "litellm-disable-logging"]
)
async def test_litellm_control_headers_are_refused(proxy, make_customer, upstream, header):
    customer = await make_customer()
    resp = httpx.post(
        f"http://127.0.0.1:{proxy.settings.proxy_port}/v1/chat/completions",
        headers={"Authorization": f"Bearer {customer.key.raw_key}", header: "1"},
        json={"model": "gpt-4o-mini", "messages": CHAT, "max_tokens": 5},
    )
    assert resp.status_code == 400 and resp.json()["error"]["code"] == "unsupported_header"
    assert upstream.stats()["total"] == 0


async def test_a_body_over_the_limit_is_refused_with_413_before_it_is_read(proxy, make_customer):
    customer = await make_customer()
    url = f"http://127.0.0.1:{proxy.settings.proxy_port}/v1/chat/completions"
    auth = {"Authorization": f"Bearer {customer.key.raw_key}"}
    with socket.create_connection(("127.0.0.1", proxy.settings.proxy_port), timeout=10) as sock:
        sock.sendall(  # announces a body one byte over the limit, sends one byte of it: answered at once
            f"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: {auth['Authorization']}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {proxy.settings.proxy_max_body_bytes + 1}\r\n\r\n"
            "{".encode()
        )
        answer = b""
        while b"}}" not in answer and (chunk := sock.recv(65536)):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 413") and b"request_too_large" in answer

    def chunks():
        yield b'{"model": "demo", "messages": [{"role": "user", "content": "'
        for _ in range(proxy.settings.proxy_max_body_bytes // 65536 + 2):
            yield b"a" * 65536

    streamed = httpx.post(url, headers={**auth, "Content-Type": "application/json"}, content=chunks())
    assert streamed.status_code == 413
