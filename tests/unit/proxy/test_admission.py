"""What a virtual key may send (gateway.proxy.admission): allow-lists, pure, so every refusal is one call."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.proxy import admission
from gateway.proxy.admission import (
    CHAT,
    CHAT_PARAMS,
    EMBEDDINGS,
    MAX_CHOICES,
    MAX_OUTPUT_TOKENS,
    ROUTES,
    Refusal,
    check_body,
    check_headers,
)

MESSAGES = [{"role": "user", "content": "hi"}]


def chat(**extra: Any) -> dict[str, Any]:
    return {"model": "m", "messages": MESSAGES, **extra}


def refusal(kind: str, body: Any) -> Refusal:
    with pytest.raises(Refusal) as caught:
        check_body(kind, body)
    return caught.value


def test_every_route_is_served_with_and_without_the_v1_prefix():
    for path, route in ROUTES.items():
        if route[0] == admission.MESSAGES:  # Anthropic's API has no bare /messages, nor does LiteLLM
            continue
        bare = path.removeprefix("/api").removeprefix("/v1")
        assert ROUTES[bare] == route and ROUTES[f"/v1{bare}"] == route


@pytest.mark.parametrize(
    "body",
    [
        chat(),
        chat(max_tokens=1, n=MAX_CHOICES, temperature=0.2, stop=["x"], seed=1, user="u"),
        chat(stream=True, stream_options={"include_usage": True}),
        chat(tools=[{"type": "function", "function": {"name": "f", "parameters": {}}}], tool_choice="auto"),
        chat(messages=[{"role": "user", "content": [{"type": "text", "text": "hi"}]}]),
        chat(messages=[{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:,"}}]}]),
        chat(messages=[{"role": "assistant", "content": None, "tool_calls": []}, *MESSAGES]),
        chat(response_format={"type": "json_object"}, logit_bias={"1": 1}),
        chat(max_completion_tokens=MAX_OUTPUT_TOKENS),
    ],
)
def test_a_chat_body_inside_the_allow_lists_passes(body):
    check_body(CHAT, body)


@pytest.mark.parametrize(
    ("body", "code", "param"),
    [
        (chat(api_base="http://evil"), "unsupported_parameter", "api_base"),
        (chat(mock_response="free"), "unsupported_parameter", "mock_response"),
        (chat(metadata={"gateway": 1}), "unsupported_parameter", "metadata"),
        (chat(input_cost_per_token=0), "unsupported_parameter", "input_cost_per_token"),
        (chat(audio={"voice": "x"}), "unsupported_parameter", "audio"),
        (chat(web_search_options={}), "unsupported_parameter", "web_search_options"),
        ({"messages": MESSAGES}, "invalid_parameter", "model"),
        (chat(model=""), "invalid_parameter", "model"),
        (chat(model=["m"]), "invalid_parameter", "model"),
        (chat(messages=[]), "invalid_parameter", "messages"),
        (chat(messages="hi"), "invalid_parameter", "messages"),
        (chat(messages=[{"role": "root", "content": "x"}]), "invalid_parameter", "messages[0]"),
        (chat(messages=[{"role": "user", "content": "x", "cost": 0}]), "unsupported_parameter", "messages[0].cost"),
        (chat(messages=[{"role": "user", "content": 5}]), "invalid_parameter", "messages[0].content"),
        (
            chat(messages=[{"role": "user", "content": [{"type": "input_audio"}]}]),
            "unsupported_content",
            "messages[0].content[0]",
        ),
        (
            chat(messages=[{"role": "user", "content": [{"type": "text", "text": "x", "extra": 1}]}]),
            "unsupported_parameter",
            "messages[0].content[0]",
        ),
        (chat(n=0), "invalid_parameter", "n"),
        (chat(n=MAX_CHOICES + 1), "invalid_parameter", "n"),
        (chat(n=True), "invalid_parameter", "n"),
        (chat(n=1.0), "invalid_parameter", "n"),
        (chat(max_tokens=MAX_OUTPUT_TOKENS + 1), "invalid_parameter", "max_tokens"),
        (chat(max_tokens="10"), "invalid_parameter", "max_tokens"),
        (chat(max_completion_tokens=-1), "invalid_parameter", "max_completion_tokens"),
        (chat(stream="yes"), "invalid_parameter", "stream"),
        (chat(stream_options={"include_usage": "yes"}), "invalid_parameter", "stream_options"),
        (chat(stream_options={"include_usage": True, "x": 1}), "invalid_parameter", "stream_options"),
        (chat(tools={"type": "function"}), "invalid_parameter", "tools"),
        (chat(tools=[{"type": "web_search"}]), "unsupported_parameter", "tools[0]"),
        (chat(functions=["f"]), "invalid_parameter", "functions"),
        (chat(response_format="json"), "invalid_parameter", "response_format"),
        (chat(logit_bias=[1]), "invalid_parameter", "logit_bias"),
    ],
)
def test_a_chat_body_outside_the_allow_lists_is_400_naming_the_part(body, code, param):
    refused = refusal(CHAT, body)
    assert (refused.status, refused.code, refused.param) == (400, code, param)


@pytest.mark.parametrize("body", [[], "x", None, 5])
def test_a_body_that_is_not_an_object_is_refused(body):
    assert refusal(CHAT, body).code == "invalid_request"


def test_embeddings_have_their_own_allow_list():
    check_body(EMBEDDINGS, {"model": "e", "input": ["a", "b"], "encoding_format": "float", "dimensions": 8})
    assert refusal(EMBEDDINGS, {"model": "e", "input": "a", "messages": MESSAGES}).param == "messages"
    assert refusal(EMBEDDINGS, {"model": "e", "input": ""}).param == "input"
    assert refusal(EMBEDDINGS, {"model": "e", "input": 5}).param == "input"
    assert refusal(EMBEDDINGS, {"model": "e"}).param == "input"


def test_the_chat_allow_list_names_no_litellm_control():
    assert not CHAT_PARAMS & {"api_base", "api_key", "fallbacks", "num_retries", "metadata", "caching", "mock_response"}


@pytest.mark.parametrize("name", ["x-litellm-timeout", "x-litellm-tags", "litellm-anything"])
def test_litellm_control_headers_are_refused(name):
    with pytest.raises(Refusal) as caught:
        check_headers([name], b"")
    assert caught.value.code == "unsupported_header" and name in caught.value.message


def test_other_headers_and_an_empty_query_pass():
    check_headers(["authorization", "content-type", "x-request-id", "user-agent", "x-litellmish"], b"")


def test_any_query_string_is_refused():
    with pytest.raises(Refusal) as caught:
        check_headers([], b"a=1")
    assert (caught.value.status, caught.value.code) == (400, "unsupported_parameter")
