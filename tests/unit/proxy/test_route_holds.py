"""Property, per billed API beside chat: for any request the guard admits, the hold's prompt bound and output
bound cover what a provider billing like the real API (devtools.fake_routes, every output budget filled)
bills for it: Anthropic Messages (system, text / image / tool_use / tool_result / thinking blocks, custom
tools, thinking budgets, cache writes), Responses (instructions, message / function_call /
function_call_output items, images, function tools, text.format schemas, reasoning tokens) and text
completions (string, list, token-id prompts, n, best_of, suffix, echo)."""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from devtools import fake_routes
from devtools.fake_upstream import DEFAULT_MODE, answer_words, count_tokens
from gateway.config import Settings
from gateway.proxy import admission, apis
from gateway.proxy.pricing import count_billable

IMAGE_BOUND = Settings().hold_tokens_per_image
PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
text = st.text(max_size=120)
schema = st.fixed_dictionaries(
    {
        "type": st.just("object"),
        "properties": st.dictionaries(st.text(min_size=1, max_size=12), st.just({"type": "string"}), max_size=4),
    }
)
cache = st.one_of(st.just({}), st.just({"cache_control": {"type": "ephemeral"}}))
image_tokens = st.integers(0, 5000)  # what the provider bills per image (only it sees the pixels)


def bill(kind: str, data: dict, model: str, words: int, mode: dict) -> tuple[int, int]:
    """(prompt tokens incl. cache writes, output tokens) the fake provider bills for `data`."""
    biller = fake_routes.Biller(
        count=lambda t: count_tokens(t, model),
        words=answer_words,
        mode={**DEFAULT_MODE, "fill": True, **mode},
        answer_words=words,
        seq=1,
    )
    reply = {admission.MESSAGES: fake_routes.messages, admission.RESPONSES: fake_routes.responses}.get(
        kind, fake_routes.completions
    )(data, biller)
    assert reply.status == 200, reply.body
    usage = reply.body["usage"]
    if kind == admission.MESSAGES:
        return usage["input_tokens"] + usage["cache_creation_input_tokens"], usage["output_tokens"]
    if kind == admission.RESPONSES:
        return usage["input_tokens"], usage["output_tokens"]
    return usage["prompt_tokens"], usage["completion_tokens"]


def assert_hold_covers(kind: str, data: dict, model: str, words: int, mode: dict) -> None:
    apis.check_body(kind, data)  # the request is one the guard admits
    wanted = apis.billable(kind, data)
    prompt, output = bill(kind, data, model, words, mode)
    assert count_billable(model, wanted, IMAGE_BOUND) >= prompt
    assert wanted.answers * wanted.output >= output


# ---- Anthropic Messages ----------------------------------------------------------------------------
block = st.one_of(
    st.builds(lambda t, c: {"type": "text", "text": t, **c}, text, cache),
    st.just({"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}}),
    st.builds(
        lambda n, i: {"type": "tool_use", "id": "toolu_1", "name": n or "f", "input": i},
        st.text(max_size=20),
        st.dictionaries(st.text(max_size=10), text, max_size=3),
    ),
    st.builds(
        lambda t, img: {
            "type": "tool_result",
            "tool_use_id": "toolu_1",
            "content": [
                {"type": "text", "text": t},
                *(
                    [{"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}}]
                    if img
                    else []
                ),
            ],
        },
        text,
        st.booleans(),
    ),
    st.builds(lambda t: {"type": "thinking", "thinking": t, "signature": "sig"}, text),
)
anthropic_tool = st.builds(
    lambda n, d, s: {"name": n or "tool", "description": d, "input_schema": s}, st.text(max_size=20), text, schema
)


@st.composite
def messages_request(draw):
    max_tokens = draw(st.integers(2, 8000))
    data = {
        "model": "claude-haiku-4-5",
        "max_tokens": max_tokens,
        "messages": [
            {"role": role, "content": draw(st.one_of(text, st.lists(block, min_size=1, max_size=4)))}
            for role in draw(st.lists(st.sampled_from(["user", "assistant"]), min_size=1, max_size=4))
        ],
    }
    if draw(st.booleans()):
        data["system"] = draw(
            st.one_of(
                text,
                st.lists(st.builds(lambda t, c: {"type": "text", "text": t, **c}, text, cache), min_size=1, max_size=2),
            )
        )
    tools = draw(st.lists(anthropic_tool, max_size=3))
    if tools:
        data["tools"] = tools
    if draw(st.booleans()):
        data["thinking"] = {"type": "enabled", "budget_tokens": draw(st.integers(1, max_tokens - 1))}
    return data


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(messages_request(), st.integers(0, 3000), image_tokens)
def test_the_messages_hold_covers_what_anthropic_bills(data, words, per_image):
    assert_hold_covers(admission.MESSAGES, data, "claude-haiku-4-5", words, {"image_tokens": per_image})


# ---- OpenAI Responses ------------------------------------------------------------------------------
part = st.one_of(
    st.builds(lambda t: {"type": "input_text", "text": t}, text),
    st.just({"type": "input_image", "image_url": f"data:image/png;base64,{PNG}"}),
)
item = st.one_of(
    st.builds(
        lambda r, c: {"role": r, "content": c},
        st.sampled_from(["user", "system", "developer"]),
        st.one_of(text, st.lists(part, min_size=1, max_size=3)),
    ),
    st.builds(lambda t: {"role": "assistant", "content": [{"type": "output_text", "text": t}]}, text),
    st.builds(
        lambda n, a: {"type": "function_call", "call_id": "c1", "name": n or "f", "arguments": a},
        st.text(max_size=20),
        text,
    ),
    st.builds(lambda o: {"type": "function_call_output", "call_id": "c1", "output": o}, text),
)
function_tool = st.builds(
    lambda n, d, s: {"type": "function", "name": n or "f", "description": d, "parameters": s},
    st.text(max_size=20),
    text,
    schema,
)


@st.composite
def responses_request(draw):
    data = {"model": "gpt-4o-mini", "input": draw(st.one_of(text, st.lists(item, min_size=1, max_size=5)))}
    data["max_output_tokens"] = draw(st.integers(16, 8000))
    if draw(st.booleans()):
        data["instructions"] = draw(text)
    tools = draw(st.lists(function_tool, max_size=3))
    if tools:
        data["tools"] = tools
    if draw(st.booleans()):
        data["text"] = {"format": {"type": "json_schema", "name": "out", "schema": draw(schema)}}
    return data


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(responses_request(), st.integers(0, 3000), st.integers(0, 10_000), image_tokens)
def test_the_responses_hold_covers_what_openai_bills(data, words, reasoning, per_image):
    mode = {"reasoning_tokens": reasoning, "image_tokens": per_image}
    assert_hold_covers(admission.RESPONSES, data, "gpt-4o-mini", words, mode)


# ---- OpenAI text completions -----------------------------------------------------------------------
token_ids = st.lists(st.integers(0, 50_000), min_size=1, max_size=30)


@st.composite
def completions_request(draw):
    prompt = draw(
        st.one_of(text, st.lists(text, min_size=1, max_size=4), token_ids, st.lists(token_ids, min_size=1, max_size=3))
    )
    n = draw(st.integers(1, 5))
    data = {"model": "gpt-3.5-turbo-instruct", "prompt": prompt, "n": n}
    if draw(st.booleans()):
        data["best_of"] = draw(st.integers(n, 8))
    if draw(st.booleans()):
        data["max_tokens"] = draw(st.integers(1, 4000))
    if draw(st.booleans()):
        data["suffix"] = draw(text)
    data["echo"] = draw(st.booleans())
    return data


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(completions_request(), st.integers(0, 3000))
def test_the_completions_hold_covers_what_openai_bills(data, words):
    assert_hold_covers(admission.COMPLETIONS, data, "gpt-3.5-turbo-instruct", words, {})


@pytest.mark.parametrize(
    ("kind", "data", "param"),
    [
        (admission.RESPONSES, {"model": "m", "input": "x", "previous_response_id": "resp_1"}, "previous_response_id"),
        (admission.RESPONSES, {"model": "m", "input": "x", "background": True}, "background"),
        (admission.RESPONSES, {"model": "m", "input": "x", "prompt": {"id": "pmpt_1"}}, "prompt"),
        (admission.RESPONSES, {"model": "m", "input": "x", "conversation": "conv_1"}, "conversation"),
        (admission.RESPONSES, {"model": "m", "input": "x", "tools": [{"type": "web_search"}]}, "tools[0]"),
        (admission.RESPONSES, {"model": "m", "input": "x", "tools": [{"type": "mcp", "server_url": "u"}]}, "tools[0]"),
        (
            admission.RESPONSES,
            {
                "model": "m",
                "input": [{"role": "user", "content": [{"type": "input_image", "image_url": "https://x/y.png"}]}],
            },
            "input[0].content[0]",
        ),
        (admission.RESPONSES, {"model": "m", "input": [{"type": "item_reference", "id": "msg_1"}]}, "input[0]"),
        (admission.RESPONSES, {"model": "m", "input": "x", "max_output_tokens": 8}, "max_output_tokens"),
        (admission.MESSAGES, {"model": "m", "messages": [{"role": "user", "content": "x"}]}, "max_tokens"),
        (
            admission.MESSAGES,
            {
                "model": "m",
                "max_tokens": 10,
                "messages": [{"role": "user", "content": "x"}],
                "thinking": {"type": "enabled", "budget_tokens": 10},
            },
            "thinking",
        ),
        (
            admission.MESSAGES,
            {
                "model": "m",
                "max_tokens": 10,
                "messages": [{"role": "user", "content": "x"}],
                "tools": [{"type": "web_search_20250305", "name": "web_search"}],
            },
            "tools[0]",
        ),
        (
            admission.MESSAGES,
            {"model": "m", "max_tokens": 10, "messages": [{"role": "user", "content": "x"}], "mcp_servers": []},
            "mcp_servers",
        ),
        (
            admission.MESSAGES,
            {
                "model": "m",
                "max_tokens": 10,
                "messages": [
                    {"role": "user", "content": [{"type": "image", "source": {"type": "url", "url": "https://x"}}]}
                ],
            },
            "messages[0].content[0]",
        ),
        (
            admission.MESSAGES,
            {
                "model": "m",
                "max_tokens": 10,
                "messages": [{"role": "user", "content": [{"type": "document", "source": {}}]}],
            },
            "messages[0].content[0]",
        ),
        (admission.COMPLETIONS, {"model": "m", "prompt": "x", "n": 3, "best_of": 2}, "best_of"),
        (admission.COMPLETIONS, {"model": "m", "prompt": "x", "best_of": 3, "stream": True}, "best_of"),
        (admission.COMPLETIONS, {"model": "m", "prompt": "x", "best_of": 21}, "best_of"),
        (admission.COMPLETIONS, {"model": "m", "prompt": []}, "prompt"),
        (admission.COMPLETIONS, {"model": "m", "prompt": [["x" * 30_000]]}, "prompt"),  # was held as 1 token
        (admission.COMPLETIONS, {"model": "m", "prompt": [[1], "x" * 30_000]}, "prompt"),
        (admission.COMPLETIONS, {"model": "m", "prompt": [[1, True]]}, "prompt"),
        (admission.COMPLETIONS, {"model": "m", "prompt": [[]]}, "prompt"),
        (admission.COMPLETIONS, {"model": "m", "prompt": "x", "mock_response": "free"}, "mock_response"),
    ],
)
def test_what_cannot_be_bounded_is_refused_naming_the_parameter(kind, data, param):
    with pytest.raises(admission.Refusal) as refused:
        apis.check_body(kind, data)
    assert refused.value.status == 400 and refused.value.param == param
