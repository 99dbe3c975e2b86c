"""Tests of the fake OpenAI-compatible upstream (tests/fake_upstream.py), driven by the openai SDK."""

from __future__ import annotations

import os
import time

import openai
import pytest
from openai import OpenAI

from tests.fake_upstream import FakeUpstream, FakeUpstreamError, answer_text, answer_words

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


def test_stop_and_restart() -> None:
    up = FakeUpstream()
    try:
        assert OpenAI(base_url=up.base_url, api_key="x", max_retries=0).models.list().data
    finally:
        up.stop()
    with pytest.raises(openai.APIConnectionError):
        OpenAI(base_url=up.base_url, api_key="x", max_retries=0, timeout=2).models.list()
