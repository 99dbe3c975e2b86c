"""What a virtual key may send: the routes it reaches and, on the billed routes, the request headers and
body parameters the gateway accepts. Allow-lists, pure (no I/O): `gateway.proxy.guard` applies them
before any LiteLLM logic runs.

Every parameter a client controls either is bounded by the hold (`n`, `max_tokens`, the prompt and its
tools, images) or cannot change what the provider bills (sampling settings); everything else is refused
with 400 naming it: LiteLLM's own request knobs (`api_base`, `fallbacks`, `num_retries`, `mock_response`,
`metadata`, `caching`, per-request prices...), and provider features billed outside tokens (`audio`,
`modalities`, `prediction`, `service_tier`, `web_search_options`, built-in tools).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

CHAT = "chat"
EMBEDDINGS = "embeddings"
RESPONSES = "responses"  # OpenAI Responses API
MESSAGES = "messages"  # Anthropic Messages API
COMPLETIONS = "completions"  # OpenAI text completions
MODELS = "models"
KEY = "key"
GENERATION = "generation"
ANSWERED = frozenset({MODELS, KEY, GENERATION})  # answered by the guard itself, never by LiteLLM

# path -> (kind, method). LiteLLM serves each route with and without the /v1 prefix.
ROUTES: dict[str, tuple[str, str]] = {
    "/chat/completions": (CHAT, "POST"),
    "/v1/chat/completions": (CHAT, "POST"),
    "/embeddings": (EMBEDDINGS, "POST"),
    "/v1/embeddings": (EMBEDDINGS, "POST"),
    "/responses": (RESPONSES, "POST"),
    "/v1/responses": (RESPONSES, "POST"),
    "/v1/messages": (MESSAGES, "POST"),
    "/completions": (COMPLETIONS, "POST"),
    "/v1/completions": (COMPLETIONS, "POST"),
    "/models": (MODELS, "GET"),
    "/v1/models": (MODELS, "GET"),
    "/key": (KEY, "GET"),
    "/v1/key": (KEY, "GET"),
    "/api/v1/key": (KEY, "GET"),
    "/generation": (GENERATION, "GET"),
    "/v1/generation": (GENERATION, "GET"),
    "/api/v1/generation": (GENERATION, "GET"),
}
# each billed kind's public path, as the model list names the routes a model serves
BILLED_PATHS = {
    CHAT: "/v1/chat/completions",
    RESPONSES: "/v1/responses",
    MESSAGES: "/v1/messages",
    COMPLETIONS: "/v1/completions",
    EMBEDDINGS: "/v1/embeddings",
}
# liveness probes (no provider call, no data) stay open to requests that carry no credential at all
ANONYMOUS_PROBES = frozenset({"/health/liveliness", "/health/liveness"})
CREDENTIAL_HEADERS = frozenset(
    {"authorization", "api-key", "x-api-key", "x-goog-api-key", "x-litellm-api-key", "ocp-apim-subscription-key"}
)
# request headers LiteLLM reads as instructions (x-litellm-timeout, x-litellm-num-retries, x-litellm-tags...)
RESERVED_HEADER_PREFIXES = ("x-litellm-", "litellm-")

MAX_CHOICES = 128
MAX_OUTPUT_TOKENS = 10_000_000

CHAT_PARAMS = frozenset(
    {
        "model",
        "messages",
        "max_tokens",
        "max_completion_tokens",
        "n",
        "stream",
        "stream_options",
        "temperature",
        "top_p",
        "stop",
        "presence_penalty",
        "frequency_penalty",
        "logit_bias",
        "logprobs",
        "top_logprobs",
        "user",
        "seed",
        "response_format",
        "tools",
        "tool_choice",
        "parallel_tool_calls",
        "functions",
        "function_call",
        "reasoning_effort",
    }
)
EMBEDDING_PARAMS = frozenset({"model", "input", "encoding_format", "dimensions", "user"})
MESSAGE_KEYS = frozenset({"role", "content", "name", "tool_calls", "tool_call_id", "function_call", "refusal"})
ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function"})
# content parts whose tokens the hold can bound: text is counted, an image is bounded per image
CONTENT_PARTS = frozenset({"text", "image_url"})
PART_KEYS = frozenset({"type", "text", "image_url", "cache_control"})
TOOL_TYPES = frozenset({"function"})


@dataclass(frozen=True)
class Refusal(Exception):
    """A request the gateway will not forward: HTTP status, machine-readable code, and a sentence for humans."""

    status: int
    code: str
    message: str
    param: str | None = None


def _bad(code: str, message: str, param: str | None = None) -> Refusal:
    return Refusal(400, code, message, param)


def check_headers(header_names: Iterable[str], query_string: bytes) -> None:
    for name in header_names:
        if name.startswith(RESERVED_HEADER_PREFIXES):
            raise _bad(
                "unsupported_header", f"Header '{name}' is not accepted: LiteLLM request controls are the operator's."
            )
    if query_string:
        raise _bad(
            "unsupported_parameter",
            "Query parameters are not accepted on this route; send parameters in the JSON body.",
        )


def _positive_int(body: dict[str, Any], name: str, limit: int) -> None:
    value = body.get(name)
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= limit:
        raise _bad("invalid_parameter", f"'{name}' must be an integer from 1 to {limit}.", name)


def _check_messages(messages: Any) -> None:
    if not isinstance(messages, list) or not messages:
        raise _bad("invalid_parameter", "'messages' must be a non-empty array of message objects.", "messages")
    for i, message in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(message, dict) or message.get("role") not in ROLES:
            raise _bad(
                "invalid_parameter", f"{where} must be an object with a role ({', '.join(sorted(ROLES))}).", where
            )
        extra = sorted(set(message) - MESSAGE_KEYS)
        if extra:
            raise _bad(
                "unsupported_parameter", f"{where}.{extra[0]} is not accepted by this gateway.", f"{where}.{extra[0]}"
            )
        content = message.get("content")
        if content is None or isinstance(content, str):
            continue
        if not isinstance(content, list):
            raise _bad(
                "invalid_parameter",
                f"{where}.content must be a string or an array of content parts.",
                f"{where}.content",
            )
        for j, part in enumerate(content):
            part_where = f"{where}.content[{j}]"
            kind = part.get("type") if isinstance(part, dict) else None
            if kind not in CONTENT_PARTS:
                raise _bad(
                    "unsupported_content",
                    f"{part_where} of type {kind!r} is not accepted: its cost cannot be bounded before the call "
                    f"(accepted content parts: {', '.join(sorted(CONTENT_PARTS))}).",
                    part_where,
                )
            extra = sorted(set(part) - PART_KEYS)
            if extra:
                raise _bad(
                    "unsupported_parameter", f"{part_where}.{extra[0]} is not accepted by this gateway.", part_where
                )


def _check_tools(body: dict[str, Any]) -> None:
    for name in ("tools", "functions"):
        items = body.get(name)
        if items is None:
            continue
        if not isinstance(items, list) or not all(isinstance(item, dict) for item in items):
            raise _bad("invalid_parameter", f"'{name}' must be an array of objects.", name)
    for i, tool in enumerate(body.get("tools") or []):
        if tool.get("type") not in TOOL_TYPES:
            raise _bad(
                "unsupported_parameter",
                f"tools[{i}] of type {tool.get('type')!r} is not accepted: built-in provider tools are billed per use, "
                "outside the tokens a hold can bound (accepted: function tools).",
                f"tools[{i}]",
            )


def _check_stream(body: dict[str, Any]) -> None:
    if "stream" in body and not isinstance(body["stream"], bool):
        raise _bad("invalid_parameter", "'stream' must be true or false.", "stream")
    options = body.get("stream_options")
    if options is None:
        return
    if (
        not isinstance(options, dict)
        or set(options) - {"include_usage"}
        or not isinstance(options.get("include_usage", False), bool)
    ):
        raise _bad(
            "invalid_parameter", "'stream_options' accepts only {\"include_usage\": true|false}.", "stream_options"
        )


def _is_token_ids(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(type(item) is int and item >= 0 for item in value)


def _check_embedding_input(value: Any) -> None:
    """OpenAI's four shapes, each homogeneous: a string, an array of strings, an array of token ids, an array
    of arrays of token ids. A mix (`[[1], "<long text>"]`) would be counted by the wrong rule for one shape."""
    if isinstance(value, str) and value:
        return
    if isinstance(value, list) and value:
        if all(isinstance(item, str) and item for item in value) or _is_token_ids(value):
            return
        if all(_is_token_ids(item) for item in value):
            return
    raise _bad(
        "invalid_parameter",
        "'input' must be a non-empty string, an array of non-empty strings, an array of token ids, or an array "
        "of arrays of token ids (one shape, not mixed).",
        "input",
    )


def check_body(kind: str, body: Any) -> None:
    """Refuse what the hold cannot bound or what is not ours to let a client set (see the module docstring)."""
    if not isinstance(body, dict):
        raise _bad("invalid_request", "The request body must be a JSON object.")
    if kind not in (CHAT, EMBEDDINGS):  # the other billed APIs: gateway.proxy.apis
        return
    allowed = CHAT_PARAMS if kind == CHAT else EMBEDDING_PARAMS
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise _bad(
            "unsupported_parameter",
            f"Parameter '{unknown[0]}' is not accepted by this gateway (accepted: {', '.join(sorted(allowed))}).",
            unknown[0],
        )
    if not isinstance(body.get("model"), str) or not body["model"]:
        raise _bad("invalid_parameter", "'model' must name a model (see GET /v1/models).", "model")
    if kind == EMBEDDINGS:
        _check_embedding_input(body.get("input"))
        return
    _check_messages(body.get("messages"))
    _positive_int(body, "n", MAX_CHOICES)
    _positive_int(body, "max_tokens", MAX_OUTPUT_TOKENS)
    _positive_int(body, "max_completion_tokens", MAX_OUTPUT_TOKENS)
    _check_stream(body)
    _check_tools(body)
    for name in ("response_format", "logit_bias"):
        if body.get(name) is not None and not isinstance(body[name], dict):
            raise _bad("invalid_parameter", f"'{name}' must be an object.", name)
