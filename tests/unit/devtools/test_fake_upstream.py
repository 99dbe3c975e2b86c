"""Tests of the fake OpenAI-compatible upstream (devtools/fake_upstream.py), driven by the openai SDK."""

from __future__ import annotations

import json
import os
import time
from typing import Any

import openai
import pytest
from openai import OpenAI

from devtools.fake_upstream import FakeUpstream, FakeUpstreamError, answer_text, answer_words, count_tokens

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

CHAT = "/v1/chat/completions"
EMB = "/v1/embeddings"


@pytest.fixture(scope="module")
def upstream():
    with FakeUpstream() as up:
        yield up


@pytest.fixture
def up(upstream: FakeUpstream) -> FakeUpstream:
    upstream.reset()
    return upstream


@pytest.fixture
def client(up: FakeUpstream) -> OpenAI:
    return OpenAI(base_url=up.base_url, api_key="fake", max_retries=0, timeout=10)


MESSAGES = [
    {"role": "system", "content": "You are a helpful assistant."},
    {"role": "user", "content": "What is the capital of France? Réponds en une phrase 🇫🇷."},
]


def test_chat_completion_is_deterministic_and_counts_tokens(client: OpenAI) -> None:
    import litellm

    r = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert r.object == "chat.completion"
    assert r.model == "gpt-4o-mini"
    assert r.choices[0].message.role == "assistant"
    assert r.choices[0].message.content == answer_text(8)
    assert r.choices[0].finish_reason == "stop"
    assert r.usage.completion_tokens == 8
    assert r.usage.total_tokens == r.usage.prompt_tokens + 8
    # Content tokens only: strictly below litellm's count, which adds role and per-message overhead.
    assert 0 < r.usage.prompt_tokens < litellm.token_counter(model="gpt-4o-mini", messages=MESSAGES)
    # The answer tokenizes to exactly one token per word, so litellm agrees on completion tokens.
    assert litellm.token_counter(model="gpt-4o-mini", text=r.choices[0].message.content) == 8


def test_stream_with_usage(client: OpenAI) -> None:
    stream = client.chat.completions.create(
        model="gpt-4o-mini", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    assert len({c.id for c in chunks}) == 1
    text_chunks = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert text_chunks == [w if i == 0 else " " + w for i, w in enumerate(answer_words(8))]
    assert chunks[0].choices[0].delta.role == "assistant"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    last = chunks[-1]
    assert last.choices == []
    assert last.usage.completion_tokens == 8
    nonstream = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert last.usage.prompt_tokens == nonstream.usage.prompt_tokens


def test_stream_without_usage(client: OpenAI) -> None:
    chunks = list(client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True))
    assert all(c.usage is None for c in chunks)
    assert all(c.choices for c in chunks)
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == answer_text(8)


def test_word_count_overrides_and_max_tokens_truncation(client: OpenAI, up: FakeUpstream) -> None:
    msgs = [{"role": "user", "content": "hi"}]
    r = client.chat.completions.create(model="gpt-4o-mini", messages=msgs, max_tokens=3)
    assert (r.choices[0].message.content, r.choices[0].finish_reason) == (answer_text(3), "length")
    assert r.usage.completion_tokens == 3
    r = client.chat.completions.create(model="gpt-4o-mini", messages=msgs, max_completion_tokens=5)
    assert (r.usage.completion_tokens, r.choices[0].finish_reason) == (5, "length")
    r = client.chat.completions.create(model="gpt-4o-mini", messages=msgs, max_tokens=100)
    assert (r.usage.completion_tokens, r.choices[0].finish_reason) == (8, "stop")
    r = client.chat.completions.create(model="gpt-4o-mini", messages=msgs, extra_headers={"x-fake-words": "30"})
    assert r.usage.completion_tokens == 30 and r.choices[0].message.content == answer_text(30)
    r = client.chat.completions.create(model="gpt-4o-mini:w12", messages=msgs)
    assert r.usage.completion_tokens == 12
    chunks = list(
        client.chat.completions.create(
            model="gpt-4o-mini:w40",
            messages=msgs,
            max_tokens=4,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == answer_text(4)
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "length"
    assert chunks[-1].usage.completion_tokens == 4
    up.set_mode(words=2)
    r = client.chat.completions.create(model="gpt-4o-mini", messages=msgs)
    assert r.choices[0].message.content == answer_text(2)


def test_embeddings(client: OpenAI) -> None:
    one = client.embeddings.create(model="text-embedding-3-small", input="hello world")  # SDK asks for base64
    assert len(one.data) == 1 and len(one.data[0].embedding) == 8
    assert one.usage.prompt_tokens == 2
    many = client.embeddings.create(
        model="text-embedding-3-small", input=["hello world", "the quick brown fox"], encoding_format="float"
    )
    assert [d.index for d in many.data] == [0, 1]
    assert many.usage.prompt_tokens == 2 + 4
    # deterministic, and base64 decodes to the same float32 values as the float format
    assert many.data[0].embedding == pytest.approx(one.data[0].embedding, abs=1e-6)
    assert many.data[0].embedding != many.data[1].embedding
    dims = client.embeddings.create(model="text-embedding-3-small", input=[[1, 2, 3]], dimensions=16)
    assert len(dims.data[0].embedding) == 16 and dims.usage.prompt_tokens == 3


def test_failure_modes(client: OpenAI, up: FakeUpstream) -> None:
    up.set_mode(fail_next=2)
    for _ in range(2):
        with pytest.raises(openai.InternalServerError) as exc:
            client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
        assert exc.value.status_code == 500
        assert exc.value.body["type"] == "server_error"  # the SDK unwraps {"error": {...}}
    assert client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES).choices
    up.set_mode(fail_always=True)
    for _ in range(3):
        with pytest.raises(openai.InternalServerError):
            client.embeddings.create(model="text-embedding-3-small", input="x")
    with pytest.raises(openai.InternalServerError):
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True)
    assert client.models.list().data  # /v1/models never fails
    up.set_mode(fail_always=False)
    assert client.embeddings.create(model="text-embedding-3-small", input="x").data
    with pytest.raises(FakeUpstreamError):
        up._request("POST", "/_control/mode", {"no_such_key": 1})


def test_delays_and_stream_abort(client: OpenAI, up: FakeUpstream) -> None:
    up.set_mode(chunk_delay=0.05, words=4)
    t0 = time.monotonic()
    chunks = list(client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True))
    assert time.monotonic() - t0 >= 0.2
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == answer_text(4)
    up.set_mode(chunk_delay=0.0, words=8, stream_abort_after=3)
    got = []
    with pytest.raises(openai.APIError):
        for c in client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True):
            got.append(c.choices[0].delta.content or "")
    assert "".join(got) == answer_text(3)


def test_counters_and_reset(client: OpenAI, up: FakeUpstream) -> None:
    assert up.calls() == {}
    client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    list(client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True))
    client.embeddings.create(model="text-embedding-3-small", input="x")
    client.models.list()
    up.stats()
    up.set_mode(words=3)  # control calls are not counted
    assert up.calls() == {CHAT: 2, EMB: 1, "/v1/models": 1}
    assert up.calls("chat/completions") == 2 and up.calls("embeddings") == 1
    assert up.last_request(CHAT)["body"]["stream"] is True
    up.reset()
    assert up.calls() == {} and up.stats()["mode"]["words"] == 8


# -- billing like a provider: n, fill, reasoning, usage details, prompt counting --

HI = [{"role": "user", "content": "hi"}]


def _raw(client: OpenAI, **kw: Any) -> dict:
    """The response JSON exactly as the fake sent it."""
    return client.chat.completions.with_raw_response.create(**kw).http_response.json()


def _stream_by_choice(client: OpenAI, **kw: Any) -> tuple[dict[int, list], dict[int, str], Any]:
    """Streamed deltas and finish reasons per choice index, and the usage chunk's usage."""
    chunks = list(client.chat.completions.create(stream=True, stream_options={"include_usage": True}, **kw))
    deltas: dict[int, list] = {}
    finishes: dict[int, str] = {}
    for c in chunks:
        for ch in c.choices:
            deltas.setdefault(ch.index, []).append(ch.delta)
            if ch.finish_reason:
                finishes[ch.index] = ch.finish_reason
    assert chunks[-1].choices == []
    return deltas, finishes, chunks[-1].usage


def _text(deltas: list) -> str:
    return "".join(d.content or "" for d in deltas)


def test_defaults_unchanged(client: OpenAI, up: FakeUpstream) -> None:
    mode = up.stats()["mode"]
    assert {k: mode[k] for k in ("fill", "reasoning_tokens", "cached_tokens", "details")} == {
        "fill": False,
        "reasoning_tokens": 0,
        "cached_tokens": 0,
        "details": False,
    }
    assert (mode["image_tokens"], mode["prompt_extra_tokens"]) == (765, 0)
    body = _raw(client, model="gpt-4o-mini", messages=MESSAGES)
    assert len(body["choices"]) == 1 and body["choices"][0]["index"] == 0
    expected = sum(count_tokens(m["content"], "gpt-4o-mini") for m in MESSAGES)
    assert body["usage"] == {"prompt_tokens": expected, "completion_tokens": 8, "total_tokens": expected + 8}
    # Text parts count as their joined text, as before.
    parts = [{"type": "text", "text": "What is the capital"}, {"type": "text", "text": " of France?"}]
    r = client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": parts}])
    assert r.usage.prompt_tokens == count_tokens("What is the capital of France?", "gpt-4o-mini")
    assert client.chat.completions.create(model="gpt-4o-mini", messages=HI, n=None).usage.completion_tokens == 8


def test_n_choices(client: OpenAI) -> None:
    one = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    r = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, n=3)
    assert [c.index for c in r.choices] == [0, 1, 2]
    assert all(c.message.content == answer_text(8) and c.finish_reason == "stop" for c in r.choices)
    assert r.usage.completion_tokens == 3 * 8 and r.usage.prompt_tokens == one.usage.prompt_tokens
    assert r.usage.total_tokens == r.usage.prompt_tokens + 24
    r = client.chat.completions.create(model="gpt-4o-mini", messages=HI, n=2, max_tokens=3)
    assert [(c.message.content, c.finish_reason) for c in r.choices] == [(answer_text(3), "length")] * 2
    assert r.usage.completion_tokens == 6


def test_n_choices_streamed(client: OpenAI, up: FakeUpstream) -> None:
    deltas, finishes, usage = _stream_by_choice(client, model="gpt-4o-mini:w5", messages=HI, n=3)
    assert sorted(deltas) == [0, 1, 2]
    for i in range(3):
        assert deltas[i][0].role == "assistant"
        assert _text(deltas[i]) == answer_text(5)
    assert finishes == {0: "stop", 1: "stop", 2: "stop"}
    assert usage.completion_tokens == 15
    # stream_abort_after counts word chunks over all choices.
    up.set_mode(stream_abort_after=7)
    got: dict[int, str] = {}
    with pytest.raises(openai.APIError):
        for c in client.chat.completions.create(model="gpt-4o-mini:w5", messages=HI, n=3, stream=True):
            for ch in c.choices:
                got[ch.index] = got.get(ch.index, "") + (ch.delta.content or "")
    assert got == {0: answer_text(5), 1: answer_text(2)}


@pytest.mark.parametrize("n", [0, -1, 129, 1.5, "2", True])
def test_bad_n_is_refused(client: OpenAI, n: Any) -> None:
    with pytest.raises(openai.BadRequestError) as exc:
        client.chat.completions.create(model="gpt-4o-mini", messages=HI, extra_body={"n": n})
    assert exc.value.status_code == 400 and exc.value.body["param"] == "n"


def test_fill_uses_the_whole_budget(client: OpenAI, up: FakeUpstream) -> None:
    up.set_mode(fill=True)
    r = client.chat.completions.create(model="gpt-4o-mini", messages=HI, max_tokens=20)
    assert (r.choices[0].message.content, r.choices[0].finish_reason) == (answer_text(20), "length")
    assert r.usage.completion_tokens == 20
    r = client.chat.completions.create(model="gpt-4o-mini", messages=HI, max_completion_tokens=50, n=2)
    assert [len(c.message.content.split()) for c in r.choices] == [50, 50]
    assert r.usage.completion_tokens == 100
    # max_completion_tokens wins over max_tokens, and fill goes past the uncapped length.
    r = client.chat.completions.create(model="gpt-4o-mini:w5", messages=HI, max_tokens=30, max_completion_tokens=12)
    assert (r.usage.completion_tokens, r.choices[0].finish_reason) == (12, "length")
    deltas, finishes, usage = _stream_by_choice(client, model="gpt-4o-mini", messages=HI, max_tokens=15, n=2)
    assert [_text(deltas[i]) for i in (0, 1)] == [answer_text(15)] * 2
    assert finishes == {0: "length", 1: "length"} and usage.completion_tokens == 30
    # Without a limit: the uncapped length, from the mode, the header or the model suffix.
    r = client.chat.completions.create(model="gpt-4o-mini", messages=HI)
    assert (r.usage.completion_tokens, r.choices[0].finish_reason) == (8, "stop")
    r = client.chat.completions.create(model="gpt-4o-mini", messages=HI, extra_headers={"x-fake-words": "30"})
    assert r.usage.completion_tokens == 30
    assert client.chat.completions.create(model="gpt-4o-mini:w3", messages=HI).usage.completion_tokens == 3


def test_reasoning_tokens_count_inside_the_budget(client: OpenAI, up: FakeUpstream) -> None:
    up.set_mode(reasoning_tokens=5)
    r = client.chat.completions.create(model="gpt-4o-mini", messages=HI)
    assert (r.choices[0].message.content, r.choices[0].finish_reason) == (answer_text(8), "stop")
    assert r.usage.completion_tokens == 13 and r.usage.completion_tokens_details.reasoning_tokens == 5
    r = client.chat.completions.create(model="gpt-4o-mini", messages=HI, max_tokens=10, n=2)
    assert [(c.message.content, c.finish_reason) for c in r.choices] == [(answer_text(5), "length")] * 2
    assert r.usage.completion_tokens == 20 and r.usage.completion_tokens_details.reasoning_tokens == 10
    # A budget below the reasoning: all of it is reasoning, nothing visible, never more than the budget.
    r = client.chat.completions.create(model="gpt-4o-mini", messages=HI, max_completion_tokens=3)
    assert (r.choices[0].message.content, r.choices[0].finish_reason) == ("", "length")
    assert r.usage.completion_tokens == 3 and r.usage.completion_tokens_details.reasoning_tokens == 3
    up.set_mode(fill=True)
    deltas, finishes, usage = _stream_by_choice(client, model="gpt-4o-mini", messages=HI, max_tokens=12)
    assert (_text(deltas[0]), finishes[0]) == (answer_text(7), "length")
    assert usage.completion_tokens == 12 and usage.completion_tokens_details.reasoning_tokens == 5


def test_usage_details(client: OpenAI, up: FakeUpstream) -> None:
    zero_completion = {
        "reasoning_tokens": 0,
        "audio_tokens": 0,
        "accepted_prediction_tokens": 0,
        "rejected_prediction_tokens": 0,
    }
    up.set_mode(cached_tokens=5)
    usage = _raw(client, model="gpt-4o-mini", messages=MESSAGES)["usage"]
    assert usage["prompt_tokens_details"] == {"cached_tokens": 5, "audio_tokens": 0}
    assert usage["completion_tokens_details"] == zero_completion
    up.set_mode(cached_tokens=10**6)  # never more than the prompt
    r = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert r.usage.prompt_tokens_details.cached_tokens == r.usage.prompt_tokens
    _, _, usage = _stream_by_choice(client, model="gpt-4o-mini", messages=MESSAGES)
    assert usage.prompt_tokens_details.cached_tokens == usage.prompt_tokens
    up.set_mode(cached_tokens=0, details=True)
    usage = _raw(client, model="gpt-4o-mini", messages=MESSAGES)["usage"]
    assert usage["prompt_tokens_details"] == {"cached_tokens": 0, "audio_tokens": 0}
    assert usage["completion_tokens_details"] == zero_completion
    for bad in ({"fill": 1}, {"details": "yes"}, {"reasoning_tokens": -1}, {"image_tokens": 1.5}):
        with pytest.raises(FakeUpstreamError):
            up._request("POST", "/_control/mode", bad)


def test_prompt_counts_tools_schemas_and_images(client: OpenAI, up: FakeUpstream) -> None:
    def prompt(**kw: Any) -> int:
        return client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, **kw).usage.prompt_tokens

    def json_tokens(value: Any) -> int:
        return count_tokens(json.dumps(value, separators=(",", ":")), "gpt-4o-mini")

    base = prompt()
    tools = [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Weather in a city",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
            },
        }
    ]
    schema = {
        "type": "json_schema",
        "json_schema": {"name": "answer", "schema": {"type": "object", "properties": {"a": {"type": "string"}}}},
    }
    functions = [tools[0]["function"]]
    assert prompt(tools=tools) == base + json_tokens(tools)
    assert prompt(response_format=schema) == base + json_tokens(schema)
    assert prompt(functions=functions) == base + json_tokens(functions)
    assert prompt(tools=tools, response_format=schema) == base + json_tokens(tools) + json_tokens(schema)
    image = {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}
    text = {"type": "text", "text": "What is in these images?"}
    msgs = [{"role": "user", "content": [text, image, image]}]
    r = client.chat.completions.create(model="gpt-4o-mini", messages=msgs)
    assert r.usage.prompt_tokens == count_tokens(text["text"], "gpt-4o-mini") + 2 * 765
    up.set_mode(image_tokens=85)
    assert client.chat.completions.create(model="gpt-4o-mini", messages=msgs).usage.prompt_tokens == (
        r.usage.prompt_tokens - 2 * (765 - 85)
    )


def test_prompt_extra_tokens(client: OpenAI, up: FakeUpstream) -> None:
    base = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES).usage.prompt_tokens
    up.set_mode(prompt_extra_tokens=100)
    r = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert (r.usage.prompt_tokens, r.usage.total_tokens) == (base + 100, base + 100 + 8)
    _, _, usage = _stream_by_choice(client, model="gpt-4o-mini", messages=MESSAGES)
    assert usage.prompt_tokens == base + 100
    assert client.embeddings.create(model="text-embedding-3-small", input="hello world").usage.prompt_tokens == 2


def test_stop_and_restart() -> None:
    up = FakeUpstream()
    try:
        assert OpenAI(base_url=up.base_url, api_key="x", max_retries=0).models.list().data
    finally:
        up.stop()
    with pytest.raises(openai.APIConnectionError):
        OpenAI(base_url=up.base_url, api_key="x", max_retries=0, timeout=2).models.list()
