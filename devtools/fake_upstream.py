"""Fake OpenAI-compatible upstream for end-to-end tests and benchmarks.

This module owns a small, fast, deterministic stand-in for the OpenAI HTTP API
(the LiteLLM proxy under test forwards to it) and the ``FakeUpstream`` helper
that runs it in a subprocess for tests.

Server: a plain ``asyncio.Protocol`` HTTP/1.1 server (uvloop when installed,
orjson when installed), no framework, no logging.  Run it with::

    python -m devtools.fake_upstream --port 8099          # or: python devtools/fake_upstream.py

Endpoints (a ``/v1`` prefix is optional on all of them):

``POST /v1/chat/completions``
    ``n`` (default 1; anything but an integer from 1 to 128 is refused with
    HTTP 400, like OpenAI) identical choices, ``index`` 0..n-1.  Each is a
    deterministic answer of words cycled from a fixed vocabulary whose words
    are each exactly one token in ``cl100k_base`` and ``o200k_base``, so any
    tokenizer-based count of the answer equals the word count.  Its uncapped
    length W is the mode's ``words`` (default 8), overridden by a model-name
    suffix ``:wW`` (``"gpt-4o-mini:w20"``), itself overridden by the request
    header ``x-fake-words: W``.  Each choice also spends R hidden reasoning
    tokens (mode ``reasoning_tokens``, default 0), as OpenAI's o-series do.
    ``max_completion_tokens`` (else ``max_tokens``), L, is a per-choice budget
    that covers reasoning and words alike, so a choice never bills more than L:
    with L, R is capped at L and the choice has min(W, L - R) words, or exactly
    L - R words when the mode ``fill`` is true; ``finish_reason`` is
    ``"length"`` when the words were cut (L - R < W) or ``fill`` is on, else
    ``"stop"``.  Without L a choice has R reasoning tokens and W words, ``"stop"``.

    Usage is billed like OpenAI's:

    * ``prompt_tokens`` = sum over messages of the tiktoken token count of the
      message's text content (a content list's text parts joined; ``o200k_base``
      for ``gpt-4o*`` / models tiktoken maps to it, else ``cl100k_base``, the same
      choice ``litellm.token_counter`` makes), plus the mode's ``image_tokens``
      (default 765, gpt-4o's high-detail 1024x1024 price) per ``image_url``
      content part, plus, for each of ``tools``, ``functions`` and
      ``response_format`` that is present and non-empty, the token count of its
      compact JSON (``json.dumps(v, separators=(",", ":"))``), plus the mode's
      ``prompt_extra_tokens`` (default 0; simulates a provider tokenizer that
      counts more than the client expects).  For text-only messages that is never
      more than ``litellm.token_counter`` counts, which adds role and
      per-message overhead.
    * ``completion_tokens`` = sum over choices of (R + words) = n * (R + words).
    * Only when the mode's ``cached_tokens`` or ``reasoning_tokens`` is non-zero
      or ``details`` is true, usage also has
      ``prompt_tokens_details: {"cached_tokens": min(cached_tokens, prompt_tokens),
      "audio_tokens": 0}`` and ``completion_tokens_details: {"reasoning_tokens":
      n * R, "audio_tokens": 0, "accepted_prediction_tokens": 0,
      "rejected_prediction_tokens": 0}``.

    ``stream: true`` sends, per choice in turn (OpenAI interleaves them), a role
    chunk, one ``chat.completion.chunk`` per word and a finish chunk, each
    carrying the choice's ``index``; then a usage chunk (empty ``choices``) when
    ``stream_options.include_usage`` is true, then ``data: [DONE]``.
``POST /v1/embeddings``
    One deterministic 8-float vector per input (string, list of strings, token
    array or list of token arrays; ``dimensions`` honoured up to 256;
    ``encoding_format: "base64"`` honoured, as the openai SDK asks for it by
    default).  ``usage.prompt_tokens`` counted like chat (token arrays count
    their length).
``POST /v1/responses``, ``POST /v1/completions``, ``POST /v1/messages``
    OpenAI Responses, OpenAI text completions and Anthropic Messages, plain and
    streamed, billed like the real APIs (``devtools/fake_routes.py`` says how);
    the mode's ``words``, ``fill``, ``reasoning_tokens``, ``image_tokens``,
    ``prompt_extra_tokens``, failure and stream keys apply to them as to chat.
``GET /v1/models``
    A minimal model list.

Every call to those endpoints (including unknown paths, not ``/_control/*``)
is counted per canonical path (``"/v1/chat/completions"`` etc.).

Control endpoints (not counted):
``GET /_control/stats`` -> ``{"calls": {path: n}, "total": n, "mode": {...}}``;
``POST /_control/reset`` zeroes counters, forgets recorded requests and restores
the default mode; ``POST /_control/mode`` with a JSON object updates mode keys
(see ``DEFAULT_MODE``) and returns the whole mode; ``GET /_control/requests``
returns the last request (headers and JSON body) seen per path.

Failure mode: while ``fail_always`` is true, or ``fail_next`` > 0 (decremented
per failed call), chat and embeddings calls answer ``fail_status`` (500) with an
OpenAI-style ``{"error": {...}}`` body.  ``/v1/models`` never fails.

Chaos (``bench.chaos``): the mode's ``fail_ratio`` fails that share of calls,
``abort_ratio`` aborts that share of streams after a random number of words, and
``latency_jitter`` adds up to that many seconds before the first byte, each drawn
from a generator seeded by ``--seed`` (so a run is reproducible from its seed).
With ``--log PATH`` every chat and embeddings call appends one JSON line there when
its answer ends: the provider's own record of what it served (``outcome``:
``served``; ``aborted`` with ``words_sent`` when it cut a stream; ``failed``;
``gone`` with ``parts_sent`` (and ``words_sent``) when the caller left before the
answer was out;
``refused`` for a 4xx), its ``tag`` (the first ``[tag:...]`` in the prompt or
input), ``path``, ``stream`` and ``usage``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import http.client
import importlib.util
import json
import logging
import os
import random
import re
import signal
import socket
import struct
import subprocess
import sys
import time
from collections import deque
from typing import Any

try:  # run as a script (the FakeUpstream subprocess) or imported as devtools.fake_upstream
    from devtools import fake_routes
except ImportError:  # pragma: no cover - the script's own folder is on sys.path
    import fake_routes  # type: ignore[no-redef]

try:  # orjson is ~5x faster than json for these payloads; optional
    import orjson

    _dumps = orjson.dumps
    _loads = orjson.loads
except ImportError:  # pragma: no cover - fallback when orjson is missing
    orjson = None

    def _dumps(obj: Any) -> bytes:
        return json.dumps(obj, separators=(",", ":")).encode()

    _loads = json.loads


# --------------------------------------------------------------------------
# Deterministic content
# --------------------------------------------------------------------------

# Each word is exactly one token with and without a leading space in both
# cl100k_base and o200k_base, and " ".join(...) of any prefix of the cycled
# sequence tokenizes to exactly one token per word (checked for up to 300).
WORDS = (
    "alpha",
    "delta",
    "echo",
    "hotel",
    "the",
    "quick",
    "brown",
    "fox",
    "over",
    "lazy",
    "dog",
    "red",
    "green",
    "blue",
    "apple",
    "river",
    "stone",
    "cloud",
    "light",
    "one",
    "two",
    "three",
    "four",
    "five",
)

DEFAULT_MODE: dict[str, Any] = {
    "words": 8,  # default answer length in words
    "fail_next": 0,  # fail the next N chat/embeddings calls
    "fail_always": False,  # fail every chat/embeddings call
    "fail_status": 500,  # HTTP status used when failing
    "latency": 0.0,  # seconds to wait before answering (before first byte)
    "chunk_delay": 0.0,  # seconds to wait before each streamed word chunk
    "stream_abort_after": None,  # abort the TCP connection after N word chunks (over all choices)
    "fill": False,  # a choice uses its whole max_(completion_)tokens budget
    "reasoning_tokens": 0,  # hidden reasoning tokens per choice, inside completion_tokens and the budget
    "cached_tokens": 0,  # prompt tokens reported as cached (at most prompt_tokens)
    "details": False,  # report the usage *_tokens_details even when the two above are 0
    "image_tokens": 765,  # prompt tokens per image_url content part
    "prompt_extra_tokens": 0,  # added to every chat prompt_tokens
    "fail_ratio": 0.0,  # chaos: fail this share of chat/embeddings calls (seeded draw)
    "abort_ratio": 0.0,  # chaos: abort this share of streams after a random number of words (seeded draw)
    "latency_jitter": 0.0,  # chaos: up to this many more seconds before the first byte (seeded draw)
}

_INT_MODE_KEYS = frozenset(
    ("words", "fail_next", "fail_status", "reasoning_tokens", "cached_tokens", "image_tokens", "prompt_extra_tokens")
)
_BOOL_MODE_KEYS = frozenset(("fail_always", "fill", "details"))

MODEL_IDS = ("gpt-4o-mini", "gpt-4o", "text-embedding-3-small")

MAX_CHOICES = 128  # OpenAI's upper bound for ``n``

_MODEL_WORDS_RE = re.compile(r":w(\d+)$")

CHAT = "/v1/chat/completions"
EMBEDDINGS = "/v1/embeddings"
MODELS = "/v1/models"
RESPONSES = "/v1/responses"
COMPLETIONS = "/v1/completions"
MESSAGES = "/v1/messages"


def answer_words(n: int) -> list[str]:
    """The first ``n`` words of the deterministic answer."""
    return [WORDS[i % len(WORDS)] for i in range(n)]


def answer_text(n: int) -> str:
    """The deterministic non-streamed answer of ``n`` words."""
    return " ".join(answer_words(n))


# --------------------------------------------------------------------------
# Token counting (tiktoken, offline through litellm's bundled encodings)
# --------------------------------------------------------------------------

_encodings: dict[str, Any] = {}
_model_encoding: dict[str, str] = {}


def _ensure_tiktoken_cache_dir() -> None:
    """Point tiktoken at litellm's bundled encoding files (no network needed)."""
    if os.environ.get("TIKTOKEN_CACHE_DIR"):
        return
    spec = importlib.util.find_spec("litellm")  # locate, do not import (slow)
    if spec is not None and spec.origin:
        d = os.path.join(os.path.dirname(spec.origin), "litellm_core_utils", "tokenizers")
        if os.path.isdir(d):
            os.environ["TIKTOKEN_CACHE_DIR"] = d


def _encoding(name: str):
    enc = _encodings.get(name)
    if enc is None:
        _ensure_tiktoken_cache_dir()
        import tiktoken

        enc = _encodings[name] = tiktoken.get_encoding(name)
    return enc


def encoding_name_for_model(model: str) -> str:
    """``o200k_base`` or ``cl100k_base``, chosen like ``litellm.token_counter`` does."""
    name = _model_encoding.get(model)
    if name is None:
        base = _MODEL_WORDS_RE.sub("", model or "")
        if "/" in base:
            base = base.rsplit("/", 1)[1]
        if "gpt-4o" in base:
            name = "o200k_base"
        else:
            try:
                import tiktoken

                name = tiktoken.encoding_name_for_model(base)
            except (ImportError, KeyError):  # no tiktoken, or a model it does not know
                name = "cl100k_base"
            if name not in ("o200k_base", "cl100k_base"):
                name = "cl100k_base"
        if len(_model_encoding) < 1000:
            _model_encoding[model] = name
    return name


_count_cache: dict[tuple[str, str], int] = {}


def count_tokens(text: str, model: str) -> int:
    if not text:
        return 0
    name = encoding_name_for_model(model)
    if len(text) < 256:
        return len(_encoding(name).encode_ordinary(text))
    # Benchmarks resend the same long prompts: remember their counts (bounded).
    key = (name, text)
    n = _count_cache.get(key)
    if n is None:
        if len(_count_cache) >= 1024:
            _count_cache.clear()
        n = _count_cache[key] = len(_encoding(name).encode_ordinary(text))
    return n


def _content_tokens(content: Any, model: str, image_tokens: int) -> int:
    if isinstance(content, str):
        return count_tokens(content, model)
    if isinstance(content, list):  # content parts: count the text ones joined, price the images
        texts = []
        images = 0
        for p in content:
            if isinstance(p, dict):
                text = p.get("text")
                if isinstance(text, str):
                    texts.append(text)
                if p.get("type") == "image_url":
                    images += 1
        return count_tokens("".join(texts), model) + images * image_tokens
    return 0


def prompt_tokens_for_messages(messages: Any, model: str, image_tokens: int) -> int:
    """Sum over messages of their text content's token count plus ``image_tokens``
    per image part (roles/overhead excluded)."""
    if not isinstance(messages, list):
        return 0
    return sum(_content_tokens(m.get("content"), model, image_tokens) for m in messages if isinstance(m, dict))


# Request fields a provider bills as prompt: tool definitions and output schemas.
_SCHEMA_FIELDS = ("tools", "functions", "response_format")


def prompt_tokens_for_chat(data: dict, model: str, mode: dict) -> int:
    """The ``prompt_tokens`` billed for a chat request (see the module docstring)."""
    tokens = prompt_tokens_for_messages(data.get("messages"), model, mode["image_tokens"])
    for field in _SCHEMA_FIELDS:
        value = data.get(field)
        if value:
            tokens += count_tokens(json.dumps(value, ensure_ascii=False, separators=(",", ":")), model)
    return tokens + mode["prompt_extra_tokens"]


def chat_usage(prompt_tokens: int, choices: int, reasoning: int, words: int, mode: dict) -> dict[str, Any]:
    """OpenAI-style usage for ``choices`` choices of ``reasoning`` + ``words`` tokens each."""
    completion = choices * (reasoning + words)
    usage: dict[str, Any] = {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion,
        "total_tokens": prompt_tokens + completion,
    }
    cached = mode["cached_tokens"]
    if cached or mode["reasoning_tokens"] or mode["details"]:
        usage["prompt_tokens_details"] = {"cached_tokens": min(cached, prompt_tokens), "audio_tokens": 0}
        usage["completion_tokens_details"] = {
            "reasoning_tokens": choices * reasoning,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        }
    return usage


# --------------------------------------------------------------------------
# Server state
# --------------------------------------------------------------------------


class _State:
    def __init__(self) -> None:
        self.calls: dict[str, int] = {}
        self.mode: dict[str, Any] = dict(DEFAULT_MODE)
        self.last: dict[str, dict[str, Any]] = {}
        self.seq = 0
        self.rng = random.Random(0)  # chaos draws (reseeded by --seed)
        self.log: Any = None  # the served-calls log (--log), a line-buffered text file

    def reset(self) -> None:
        self.calls = {}
        self.mode = dict(DEFAULT_MODE)
        self.last = {}

    def update_mode(self, changes: Any) -> str | None:
        if not isinstance(changes, dict):
            return "mode body must be a JSON object"
        for k, v in changes.items():
            if k not in DEFAULT_MODE:
                return f"unknown mode key {k!r}; known: {sorted(DEFAULT_MODE)}"
            if k in _INT_MODE_KEYS and not (isinstance(v, int) and v >= 0):
                return f"{k} must be a non-negative integer"
            if k in ("latency", "chunk_delay", "latency_jitter") and not (isinstance(v, (int, float)) and v >= 0):
                return f"{k} must be a non-negative number"
            if k in _BOOL_MODE_KEYS and not isinstance(v, bool):
                return f"{k} must be a boolean"
            if k in ("fail_ratio", "abort_ratio") and not (isinstance(v, (int, float)) and 0 <= v <= 1):
                return f"{k} must be a number from 0 to 1"
            if k == "stream_abort_after" and not (v is None or (isinstance(v, int) and v >= 0)):
                return "stream_abort_after must be null or a non-negative integer"
        self.mode.update(changes)
        return None

    def should_fail(self) -> bool:
        mode = self.mode
        if mode["fail_always"]:
            return True
        if mode["fail_next"] > 0:
            mode["fail_next"] -= 1
            return True
        return bool(mode["fail_ratio"]) and self.rng.random() < mode["fail_ratio"]


STATE = _State()

_REASONS = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    411: "Length Required",
    413: "Payload Too Large",
    429: "Too Many Requests",
    500: "Internal Server Error",
    501: "Not Implemented",
    502: "Bad Gateway",
    503: "Service Unavailable",
}

_MAX_HEAD = 64 * 1024
_MAX_BODY = 64 * 1024 * 1024


# What a real provider sends with every answer (OpenAI's and Anthropic's, as their APIs do): the account, its
# project, rate-limit headroom, request ids, edge headers. None of it may reach a gateway client.
PROVIDER_HEADERS = (
    "openai-organization: org-fakeoperator123\r\nopenai-project: proj_fakeoperator456\r\n"
    "openai-processing-ms: 212\r\nopenai-version: 2020-10-01\r\nx-request-id: req_fakeupstream789\r\n"
    "x-ratelimit-limit-requests: 30000\r\nx-ratelimit-limit-tokens: 150000000\r\n"
    "x-ratelimit-remaining-requests: 29999\r\nx-ratelimit-remaining-tokens: 149999000\r\n"
    "x-ratelimit-reset-requests: 2ms\r\nx-ratelimit-reset-tokens: 0s\r\n"
    "anthropic-organization-id: 5a0c1f00-fake-operator-org\r\nrequest-id: req_011FakeAnthropic\r\n"
    "anthropic-ratelimit-requests-limit: 4000\r\nanthropic-ratelimit-requests-remaining: 3999\r\n"
    "anthropic-ratelimit-tokens-limit: 2000000\r\nanthropic-ratelimit-tokens-remaining: 1999000\r\n"
    "anthropic-ratelimit-input-tokens-remaining: 1999000\r\nanthropic-ratelimit-output-tokens-remaining: 399000\r\n"
    "cf-ray: 8f00fakeray-SJC\r\nset-cookie: __cf_bm=fakecookie; path=/; HttpOnly\r\nserver: cloudflare\r\n"
    "strict-transport-security: max-age=31536000; includeSubDomains; preload\r\nx-content-type-options: nosniff\r\n"
)


def _json_response(status: int, obj: Any, keep_alive: bool) -> bytes:
    body = _dumps(obj)
    head = (
        f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        + PROVIDER_HEADERS
        + ("retry-after: 2\r\n" if status == 429 else "")
        + ("" if keep_alive else "Connection: close\r\n")
        + "\r\n"
    )
    return head.encode() + body


def _failure_obj(status: int) -> dict:
    """A failing provider's body, with the account details a real one writes there (they must not reach clients)."""
    if status == 429:
        return _error_obj(
            "Rate limit reached for gpt-4o in organization org-fakeoperator123 on tokens per min (TPM): "
            "Limit 30000000, Used 29999000, Requested 1500.",
            "tokens",
            "rate_limit_exceeded",
        )
    return _error_obj(
        f"fake upstream failure (HTTP {status}) in organization org-fakeoperator123",
        "server_error",
        "fake_upstream_failure",
    )


def _error_obj(message: str, etype: str, code: str | None = None, param: str | None = None) -> dict:
    return {"error": {"message": message, "type": etype, "param": param, "code": code}}


_SSE_HEAD = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream; charset=utf-8\r\n"
    b"Cache-Control: no-cache\r\nTransfer-Encoding: chunked\r\n" + PROVIDER_HEADERS.encode()
)


def _http_chunk(payload: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(payload), payload)


def _sse(obj: Any) -> bytes:
    return _http_chunk(b"data: " + _dumps(obj) + b"\n\n")


_SSE_DONE = _http_chunk(b"data: [DONE]\n\n") + b"0\r\n\r\n"


# --------------------------------------------------------------------------
# Request handling
# --------------------------------------------------------------------------


class _Request:
    __slots__ = ("body", "headers", "keep_alive", "method", "path")

    def __init__(self, method: str, path: str, headers: dict[str, str], body: bytes, keep_alive: bool):
        self.method = method
        self.path = path
        self.headers = headers
        self.body = body
        self.keep_alive = keep_alive


class _Plan:
    """What to send for one request: ``parts`` written in order, each after
    ``delays[i]`` seconds; ``abort`` aborts the connection after the parts;
    ``record`` (with ``--log``) is the call's log line, written when it ends."""

    __slots__ = ("abort", "close", "delays", "parts", "record")

    def __init__(self, parts: list[bytes], delays: list[float] | None = None, abort: bool = False, close: bool = False):
        self.parts = parts
        self.delays = delays
        self.abort = abort
        self.close = close
        self.record: dict[str, Any] | None = None

    def ended(self, parts_sent: int) -> None:
        """Log the call (``--log``) once its answer ended with ``parts_sent`` of its parts out."""
        record, self.record = self.record, None
        if record is None or STATE.log is None:
            return
        if parts_sent < len(self.parts):
            record["outcome"] = "gone"
            record["parts_sent"] = parts_sent
        if record["stream"] and record["outcome"] in ("gone", "aborted"):
            record["words_sent"] = max(0, parts_sent - 1)  # parts[0] is the head and the role chunk
        STATE.log.write(json.dumps(record) + "\n")


_TAG_RE = re.compile(r"\[tag:([\w.:-]+)\]")


def _tag(path: str, data: Any) -> str | None:
    """The caller's ``[tag:...]`` in the first message (chat) or the input (embeddings)."""
    if not isinstance(data, dict):
        return None
    if path == CHAT:
        messages = data.get("messages")
        first = messages[0] if isinstance(messages, list) and messages and isinstance(messages[0], dict) else {}
        text = first.get("content")
    else:
        text = data.get("input")
    found = _TAG_RE.search(text) if isinstance(text, str) else None
    return found.group(1) if found else None


def _usage_of(plan: _Plan) -> dict[str, Any] | None:
    """The usage the answer reports (a plain answer's body, or a stream's usage chunk)."""
    found = re.search(rb'"usage":\s*(\{[^{}]*\})', b"".join(plan.parts))
    return _loads(found.group(1)) if found else None


def _canonical(path: str) -> str:
    if "?" in path:
        path = path.split("?", 1)[0]
    if len(path) > 1 and path.endswith("/"):
        path = path[:-1]
    if not path.startswith("/v1/") and not path.startswith("/_control/"):
        path = "/v1" + path
    return path


def _parse_json_body(req: _Request):
    try:
        data = _loads(req.body) if req.body else None
    except (ValueError, RecursionError):  # not JSON / not UTF-8 (both ValueErrors), or nested too deep
        return None, "request body is not valid JSON"
    if not isinstance(data, dict):
        return None, "request body must be a JSON object"
    return data, None


def handle(req: _Request) -> _Plan:
    path = _canonical(req.path)
    ka = req.keep_alive
    if path.startswith("/_control/"):
        return _Plan([_control(req, path)], close=not ka)

    st = STATE
    st.calls[path] = st.calls.get(path, 0) + 1
    mode = st.mode

    if path in (CHAT, EMBEDDINGS, *_ROUTES):
        if req.method != "POST":
            return _Plan([_json_response(405, _error_obj("use POST", "invalid_request_error"), ka)], close=not ka)
        data, err = _parse_json_body(req)
        st.last[path] = {"headers": req.headers, "body": data if err is None else req.body.decode("utf-8", "replace")}
        latency = mode["latency"]
        if st.should_fail():
            status = mode["fail_status"]
            resp = _json_response(
                status,
                _failure_obj(status),
                ka,
            )
            failed = _Plan([resp], [latency] if latency else None, close=not ka)
            if st.log is not None:
                failed.record = {"t": time.time(), "tag": _tag(path, data), "path": path, "outcome": "failed"}
                failed.record["stream"] = False
            return failed
        if err is not None:
            return _Plan([_json_response(400, _error_obj(err, "invalid_request_error"), ka)], close=not ka)
        if mode["latency_jitter"]:
            latency += st.rng.random() * mode["latency_jitter"]
        if path == CHAT:
            plan = _chat(req, data, mode, latency)
        elif path in _ROUTES:
            plan = _other_api(req, path, data, mode, latency)
        else:
            plan = _embeddings(req, data, latency)
        if st.log is not None:
            ok = plan.parts[0].startswith(b"HTTP/1.1 200")
            plan.record = {
                "t": time.time(),
                "tag": _tag(path, data),
                "path": path,
                "stream": bool(data.get("stream")) and path != EMBEDDINGS,
                "outcome": ("aborted" if plan.abort else "served") if ok else "refused",
                "usage": _usage_of(plan) if ok else None,
            }
        return plan

    if path == MODELS:
        created = int(time.time())
        body = {
            "object": "list",
            "data": [{"id": m, "object": "model", "created": created, "owned_by": "fake-upstream"} for m in MODEL_IDS],
        }
        return _Plan([_json_response(200, body, ka)], close=not ka)

    return _Plan(
        [_json_response(404, _error_obj(f"unknown path {req.path}", "invalid_request_error", "not_found"), ka)],
        close=not ka,
    )


def _bad(msg: str, ka: bool, param: str | None = None) -> _Plan:
    return _Plan([_json_response(400, _error_obj(msg, "invalid_request_error", None, param), ka)], close=not ka)


def _chat(req: _Request, data: dict, mode: dict, latency: float) -> _Plan:
    ka = req.keep_alive
    model = data.get("model")
    messages = data.get("messages")
    if not isinstance(model, str) or not model:
        return _bad("you must provide a model parameter", ka, "model")
    if not isinstance(messages, list) or not messages:
        return _bad("messages must be a non-empty array", ka, "messages")

    n = data.get("n")
    if n is None:
        n = 1
    elif type(n) is not int or not 1 <= n <= MAX_CHOICES:
        return _bad(f"Invalid 'n': expected an integer from 1 to {MAX_CHOICES}, got {n!r}", ka, "n")

    nw = mode["words"]
    m = _MODEL_WORDS_RE.search(model)
    if m:
        nw = int(m.group(1))
    hw = req.headers.get("x-fake-words")
    if hw is not None:
        try:
            nw = max(0, int(hw))
        except ValueError:
            return _bad("x-fake-words must be an integer", ka)
    reasoning = mode["reasoning_tokens"]
    finish = "stop"
    limit = data.get("max_completion_tokens")
    if limit is None:
        limit = data.get("max_tokens")
    if isinstance(limit, int) and not isinstance(limit, bool):
        # The budget covers hidden reasoning first, then the visible words.
        if reasoning > limit:
            reasoning = max(0, limit)
        room = limit - reasoning
        if room < nw or mode["fill"]:
            nw = max(0, room)
            finish = "length"

    usage = chat_usage(prompt_tokens_for_chat(data, model, mode), n, reasoning, nw, mode)
    STATE.seq += 1
    cid = f"chatcmpl-fake{STATE.seq}"
    created = int(time.time())

    if not data.get("stream"):
        choice = {
            "index": 0,
            "message": {"role": "assistant", "content": answer_text(nw), "refusal": None},
            "logprobs": None,
            "finish_reason": finish,
        }
        choices = [choice]
        if n > 1:
            choices += [{**choice, "index": i} for i in range(1, n)]
        body = {
            "id": cid,
            "object": "chat.completion",
            "created": created,
            "model": model,
            "choices": choices,
            "usage": usage,
            "system_fingerprint": "fp_fake",
        }
        return _Plan([_json_response(200, body, ka)], [latency] if latency else None, close=not ka)

    so = data.get("stream_options")
    include_usage = isinstance(so, dict) and so.get("include_usage") is True
    base = {
        "id": cid,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "system_fingerprint": "fp_fake",
    }

    def chunk(index: int, delta: dict, fin: str | None) -> bytes:
        obj = dict(base)
        obj["choices"] = [{"index": index, "delta": delta, "logprobs": None, "finish_reason": fin}]
        if include_usage:
            obj["usage"] = None
        return _sse(obj)

    role = {"role": "assistant", "content": "", "refusal": None}
    deltas = [{"content": w if i == 0 else " " + w} for i, w in enumerate(answer_words(nw))]
    abort_after = mode["stream_abort_after"]
    if abort_after is None and mode["abort_ratio"] and STATE.rng.random() < mode["abort_ratio"]:
        abort_after = STATE.rng.randrange(max(1, n * nw))
    aborted = abort_after is not None and abort_after < n * nw
    # parts[0] is the head, then one part per word chunk; a choice's role chunk
    # (and the previous choice's finish chunk) go out with the part before it.
    parts = [_SSE_HEAD + (b"" if ka else b"Connection: close\r\n") + b"\r\n"]
    for i in range(n):
        parts[-1] += (chunk(i - 1, {}, finish) if i else b"") + chunk(i, role, None)
        parts.extend([chunk(i, d, None) for d in deltas])
        if aborted and len(parts) > abort_after:
            del parts[abort_after + 1 :]
            break
    if not aborted:
        tail = chunk(n - 1, {}, finish)
        if include_usage:
            u = dict(base)
            u["choices"] = []
            u["usage"] = usage
            tail += _sse(u)
        parts.append(tail + _SSE_DONE)
    cd = mode["chunk_delay"]
    delays = None
    if latency or cd:
        # latency before the role chunk; chunk_delay before each word chunk
        delays = [latency] + [cd] * (len(parts) - 1)
        if not aborted:
            delays[-1] = 0.0
    return _Plan(parts, delays, abort=aborted, close=not ka)


_ROUTES = {RESPONSES: fake_routes.responses, COMPLETIONS: fake_routes.completions, MESSAGES: fake_routes.messages}


def _answer_length(req: _Request, model: Any, mode: dict) -> int:
    words = mode["words"]
    m = _MODEL_WORDS_RE.search(model) if isinstance(model, str) else None
    if m:
        words = int(m.group(1))
    header = req.headers.get("x-fake-words")
    if header is not None and header.isdigit():
        words = int(header)
    return words


def _other_api(req: _Request, path: str, data: dict, mode: dict, latency: float) -> _Plan:
    """Responses, text completions, Anthropic Messages (devtools.fake_routes), as JSON or SSE."""
    ka = req.keep_alive
    STATE.seq += 1
    model = data.get("model")
    biller = fake_routes.Biller(
        count=lambda text: count_tokens(text, model if isinstance(model, str) else ""),
        words=answer_words,
        mode=mode,
        answer_words=_answer_length(req, model, mode),
        seq=STATE.seq,
    )
    reply = _ROUTES[path](data, biller)
    if reply.body is not None:
        return _Plan([_json_response(reply.status, reply.body, ka)], [latency] if latency else None, close=not ka)
    parts = [_SSE_HEAD + (b"" if ka else b"Connection: close\r\n") + b"\r\n"]
    for name, event in reply.events:
        head = b"event: " + name.encode() + b"\n" if name else b""
        parts.append(_http_chunk(head + b"data: " + _dumps(event) + b"\n\n"))
    abort_after = mode["stream_abort_after"]
    aborted = abort_after is not None and abort_after + 1 < len(parts)
    if aborted:
        del parts[abort_after + 1 :]
    else:
        parts.append(_SSE_DONE if reply.done else b"0\r\n\r\n")
    cd = mode["chunk_delay"]
    delays = [latency] + [cd] * (len(parts) - 1) if latency or cd else None
    return _Plan(parts, delays, abort=aborted, close=not ka)


def _vector(key: bytes, dims: int) -> list[float]:
    out: list[float] = []
    counter = 0
    while len(out) < dims:
        digest = hashlib.blake2b(key, digest_size=64, person=b"fake%d" % counter).digest()
        out.extend(round(x / 2147483648.0, 6) for x in struct.unpack("<16i", digest))
        counter += 1
    return out[:dims]


def _embeddings(req: _Request, data: dict, latency: float) -> _Plan:
    ka = req.keep_alive
    model = data.get("model")
    if not isinstance(model, str) or not model:
        return _bad("you must provide a model parameter", ka, "model")
    inp = data.get("input")
    if isinstance(inp, str):
        items: list = [inp]
    elif isinstance(inp, list) and inp:
        items = [inp] if all(isinstance(x, int) for x in inp) else inp
    else:
        return _bad("input must be a non-empty string or array", ka, "input")
    dims = data.get("dimensions")
    dims = dims if isinstance(dims, int) and 0 < dims <= 256 else 8
    b64 = data.get("encoding_format") == "base64"
    out = []
    tokens = 0
    for i, item in enumerate(items):
        if isinstance(item, str):
            tokens += count_tokens(item, model)
            key = item.encode("utf-8", "surrogatepass")
        elif isinstance(item, list) and all(isinstance(x, int) for x in item):
            tokens += len(item)
            key = _dumps(item)
        else:
            return _bad("input items must be strings or token arrays", ka, "input")
        vec = _vector(key, dims)
        emb: Any = base64.b64encode(struct.pack(f"<{dims}f", *vec)).decode() if b64 else vec
        out.append({"object": "embedding", "index": i, "embedding": emb})
    body = {
        "object": "list",
        "data": out,
        "model": model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }
    return _Plan([_json_response(200, body, ka)], [latency] if latency else None, close=not ka)


def _control(req: _Request, path: str) -> bytes:
    st = STATE
    ka = req.keep_alive
    if path == "/_control/stats" and req.method == "GET":
        return _json_response(200, {"calls": st.calls, "total": sum(st.calls.values()), "mode": st.mode}, ka)
    if path == "/_control/health":
        return _json_response(200, {"ok": True}, ka)
    if path == "/_control/requests" and req.method == "GET":
        return _json_response(200, st.last, ka)
    if path == "/_control/reset" and req.method == "POST":
        st.reset()
        return _json_response(200, {"ok": True, "mode": st.mode}, ka)
    if path == "/_control/mode" and req.method == "POST":
        try:
            changes = _loads(req.body) if req.body else {}
        except (ValueError, RecursionError):
            return _json_response(400, _error_obj("invalid JSON", "invalid_request_error"), ka)
        err = st.update_mode(changes)
        if err:
            return _json_response(400, _error_obj(err, "invalid_request_error"), ka)
        return _json_response(200, st.mode, ka)
    return _json_response(404, _error_obj(f"unknown control endpoint {req.method} {path}", "invalid_request_error"), ka)


# --------------------------------------------------------------------------
# HTTP/1.1 protocol (keep-alive, Content-Length bodies, in-order responses)
# --------------------------------------------------------------------------


class _HTTPProtocol(asyncio.Protocol):
    __slots__ = ("buf", "busy", "closed", "queue", "transport")

    def connection_made(self, transport) -> None:
        self.transport = transport
        self.buf = bytearray()
        self.queue: deque[_Request] = deque()
        self.busy = False
        self.closed = False

    def connection_lost(self, exc) -> None:
        self.closed = True

    def data_received(self, data: bytes) -> None:
        buf = self.buf
        buf += data
        while True:
            idx = buf.find(b"\r\n\r\n")
            if idx < 0:
                if len(buf) > _MAX_HEAD:
                    self._fatal(413, "headers too large")
                return
            lines = bytes(buf[:idx]).decode("latin-1").split("\r\n")
            try:
                method, target, version = lines[0].split(" ", 2)
            except ValueError:
                self._fatal(400, "bad request line")
                return
            headers: dict[str, str] = {}
            for line in lines[1:]:
                k, _, v = line.partition(":")
                headers[k.strip().lower()] = v.strip()
            if "chunked" in headers.get("transfer-encoding", "").lower():
                self._fatal(411, "chunked request bodies are not supported; send Content-Length")
                return
            try:
                clen = int(headers.get("content-length", "0"))
            except ValueError:
                self._fatal(400, "bad Content-Length")
                return
            if clen > _MAX_BODY:
                self._fatal(413, "body too large")
                return
            end = idx + 4 + clen
            if len(buf) < end:
                return
            body = bytes(buf[idx + 4 : end])
            del buf[:end]
            conn = headers.get("connection", "").lower()
            ka = "close" not in conn if version == "HTTP/1.1" else "keep-alive" in conn
            self.queue.append(_Request(method, target, headers, body, ka))
            if not self.busy:
                self._drain()
            if self.closed:
                return

    def _fatal(self, status: int, msg: str) -> None:
        if not self.closed:
            self.transport.write(_json_response(status, _error_obj(msg, "invalid_request_error"), False))
            self.transport.close()
            self.closed = True

    def _drain(self) -> None:
        """Answer queued requests in order; hands off to a task when a plan has delays."""
        while self.queue and not self.closed:
            req = self.queue.popleft()
            try:
                plan = handle(req)
            except Exception as e:  # noqa: BLE001 - never kill the server on a bad request: answer 500
                plan = _Plan(
                    [_json_response(500, _error_obj(f"fake upstream bug: {e!r}", "server_error"), False)], close=True
                )
            if plan.delays is None:
                self.transport.write(b"".join(plan.parts) if len(plan.parts) > 1 else plan.parts[0])
                plan.ended(len(plan.parts))
                self._finish(plan)
            else:
                self.busy = True
                asyncio.get_running_loop().create_task(self._run_slow(plan))
                return

    def _finish(self, plan: _Plan) -> None:
        """End the connection after a response if the plan says so (abort = reset, close = FIN)."""
        if plan.abort:
            self.transport.abort()
            self.closed = True
        elif plan.close:
            self.transport.close()
            self.closed = True

    async def _run_slow(self, plan: _Plan) -> None:
        sent = 0
        try:
            for part, delay in zip(plan.parts, plan.delays, strict=True):
                if delay:
                    await asyncio.sleep(delay)
                if self.closed:
                    return
                self.transport.write(part)
                sent += 1
            self._finish(plan)
        finally:
            plan.ended(sent)
            self.busy = False
        if not self.closed:
            self._drain()


# --------------------------------------------------------------------------
# Entry point
# --------------------------------------------------------------------------


def _preload_encodings() -> None:
    for name in ("cl100k_base", "o200k_base"):
        try:
            _encoding(name)
        except Exception:  # noqa: BLE001 - only a warm-up: a failure then answers HTTP 500 for that request
            pass  # counted lazily later


async def _serve(sock: socket.socket, exit_with_parent: bool) -> None:
    loop = asyncio.get_running_loop()
    stop = loop.create_future()
    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(sig, lambda: stop.done() or stop.set_result(None))
        except (NotImplementedError, RuntimeError):
            pass
    server = await loop.create_server(_HTTPProtocol, sock=sock, backlog=2048)
    if exit_with_parent:
        parent = os.getppid()

        def check() -> None:
            if os.getppid() != parent and not stop.done():
                stop.set_result(None)
            else:
                loop.call_later(1.0, check)

        loop.call_later(1.0, check)
    try:
        await stop
    finally:
        server.close()


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="Fake OpenAI-compatible upstream server")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8099)
    p.add_argument("--fd", type=int, default=None, help="serve on this already-listening socket fd")
    p.add_argument("--exit-with-parent", action="store_true", help="exit when the parent process dies")
    p.add_argument("--log", default=None, help="append one JSON line per chat/embeddings call here (what was served)")
    p.add_argument("--seed", type=int, default=0, help="seed of the chaos draws (fail_ratio, abort_ratio, jitter)")
    args = p.parse_args(argv)
    STATE.rng.seed(args.seed)
    if args.log:
        STATE.log = open(args.log, "a", buffering=1)  # noqa: SIM115 - open for the server's lifetime

    logging.getLogger("asyncio").setLevel(logging.CRITICAL)
    if args.fd is not None:
        sock = socket.socket(fileno=args.fd)
    else:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((args.host, args.port))
        sock.listen(2048)
    sock.setblocking(False)
    _preload_encodings()
    try:
        import uvloop

        runner = uvloop.run
    except ImportError:
        runner = asyncio.run
    try:
        runner(_serve(sock, args.exit_with_parent))
    except KeyboardInterrupt:
        pass


# --------------------------------------------------------------------------
# Test helper
# --------------------------------------------------------------------------

_UNSET: Any = object()


class FakeUpstreamError(RuntimeError):
    pass


class FakeUpstream:
    """Runs the fake upstream in a subprocess on a free 127.0.0.1 port.

    ``with FakeUpstream() as up: client = OpenAI(base_url=up.base_url, api_key="x")``
    """

    def __init__(
        self, *, python: str | None = None, start: bool = True, ready_timeout: float = 30.0, args: tuple[str, ...] = ()
    ) -> None:
        self.python = python or sys.executable
        self.args = args  # more command-line options (--log, --seed)
        self.ready_timeout = ready_timeout
        self.proc: subprocess.Popen | None = None
        self.port: int = 0
        if start:
            self.start()

    # -- lifecycle ---------------------------------------------------------
    @property
    def url(self) -> str:
        """Root URL, e.g. ``http://127.0.0.1:PORT``."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        """OpenAI base URL, e.g. ``http://127.0.0.1:PORT/v1``."""
        return f"{self.url}/v1"

    def start(self) -> FakeUpstream:
        if self.proc is not None and self.proc.poll() is None:
            return self
        # Bind in the parent and hand the listening socket to the child: no port race,
        # connections queue in the backlog until the child accepts them.
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.bind(("127.0.0.1", 0))
            sock.listen(2048)
            self.port = sock.getsockname()[1]
            self.proc = subprocess.Popen(
                [self.python, os.path.abspath(__file__), "--fd", str(sock.fileno()), "--exit-with-parent", *self.args],
                pass_fds=(sock.fileno(),),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
        finally:
            sock.close()
        deadline = time.monotonic() + self.ready_timeout
        while True:
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode(errors="replace") if self.proc.stderr else ""
                raise FakeUpstreamError(f"fake upstream exited with {self.proc.returncode}: {err[-2000:]}")
            try:
                self._request("GET", "/_control/health", timeout=1.0)
                return self
            except OSError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise FakeUpstreamError("fake upstream did not become ready") from None
                time.sleep(0.02)

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        if proc.stderr:
            proc.stderr.close()

    def __enter__(self) -> FakeUpstream:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __del__(self) -> None:  # best effort
        try:
            self.stop()
        except Exception:  # noqa: BLE001 - a finalizer must not raise (the interpreter may be shutting down)
            pass

    # -- control -----------------------------------------------------------
    def _request(self, method: str, path: str, body: Any = None, timeout: float = 10.0) -> Any:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            payload = None if body is None else json.dumps(body).encode()
            headers = {"Content-Type": "application/json"} if payload is not None else {}
            conn.request(method, path, body=payload, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
        finally:
            conn.close()
        parsed = json.loads(data) if data else None
        if resp.status != 200:
            raise FakeUpstreamError(f"{method} {path} -> {resp.status}: {parsed}")
        return parsed

    def stats(self) -> dict[str, Any]:
        """``{"calls": {path: n}, "total": n, "mode": {...}}``."""
        return self._request("GET", "/_control/stats")

    def calls(self, path: str | None = None) -> Any:
        """Calls per endpoint path (``{"/v1/chat/completions": 3, ...}``), or the
        count for one ``path`` (``"/v1/embeddings"``, ``"embeddings"`` or
        ``"chat/completions"`` all work)."""
        calls = self.stats()["calls"]
        if path is None:
            return calls
        return calls.get(_canonical(path if path.startswith("/") else "/" + path), 0)

    def requests(self) -> dict[str, Any]:
        """Last request seen per path: ``{path: {"headers": {...}, "body": {...}}}``."""
        return self._request("GET", "/_control/requests")

    def last_request(self, path: str = CHAT) -> dict[str, Any] | None:
        return self.requests().get(_canonical(path if path.startswith("/") else "/" + path))

    def reset(self) -> None:
        """Zero the counters, forget recorded requests, restore the default mode."""
        self._request("POST", "/_control/reset", {})

    def set_mode(
        self,
        *,
        words: int = _UNSET,
        fail_next: int = _UNSET,
        fail_always: bool = _UNSET,
        fail_status: int = _UNSET,
        latency: float = _UNSET,
        chunk_delay: float = _UNSET,
        stream_abort_after: int | None = _UNSET,
        fill: bool = _UNSET,
        reasoning_tokens: int = _UNSET,
        cached_tokens: int = _UNSET,
        details: bool = _UNSET,
        image_tokens: int = _UNSET,
        prompt_extra_tokens: int = _UNSET,
    ) -> dict[str, Any]:
        """Change only the given mode keys; returns the whole mode.

        ``words``: default answer length; ``fail_next``: fail the next N
        chat/embeddings calls with ``fail_status`` (default 500);
        ``fail_always``: fail all of them until turned off; ``latency``: seconds
        before any response/first byte; ``chunk_delay``: seconds before each
        streamed word; ``stream_abort_after``: abort the connection after N
        streamed words, counted over all choices (None = off).

        Billing (see the module docstring): ``fill``: a choice uses its whole
        ``max_completion_tokens`` / ``max_tokens`` budget; ``reasoning_tokens``:
        hidden reasoning tokens per choice, counted in ``completion_tokens`` and
        spent from that budget first; ``cached_tokens``: prompt tokens reported
        as cached (at most ``prompt_tokens``); ``details``: report the usage
        ``*_tokens_details`` even when those two are 0; ``image_tokens``: prompt
        tokens per ``image_url`` content part (default 765);
        ``prompt_extra_tokens``: added to every chat ``prompt_tokens``.
        """
        changes = {k: v for k, v in locals().items() if k != "self" and v is not _UNSET}
        return self._request("POST", "/_control/mode", changes)


if __name__ == "__main__":
    main()
