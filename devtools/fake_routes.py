"""The fake upstream's other APIs: OpenAI Responses (`POST /v1/responses`), OpenAI text completions
(`POST /v1/completions`) and Anthropic Messages (`POST /v1/messages`), plain and streamed, billing the way
each real API does. Pure functions of the request body and the fake's mode; `devtools.fake_upstream`
serves them (it owns the HTTP server, the mode and the counters).

Billing, like the real APIs (and never less, so a gateway's hold is tested against an honest bill):

- **Prompt**: the tokens of every text the provider reads (system / instructions, message texts, tool_use
  inputs and tool results, function_call arguments and outputs, the JSON of tool definitions and of output
  schemas, a completion's `suffix`), plus the mode's `image_tokens` per image and `prompt_extra_tokens`.
  Anthropic adds its tool-use system prompt (`ANTHROPIC_TOOL_PROMPT_TOKENS`) when tools are defined.
- **Output**: each answer spends its hidden reasoning first (mode `reasoning_tokens`; Anthropic's
  `thinking.budget_tokens`, spent whole) and then words (mode `words`, or all of the budget with mode
  `fill`), never more than the output budget (`max_output_tokens`, `max_tokens`; completions default to 16).
  Completions bill `max(n, best_of)` answers per prompt (a list `prompt` is that many prompts).
- **Usage** as each API reports it: Responses `usage.input_tokens/output_tokens/output_tokens_details.
  reasoning_tokens`, `status: "incomplete"` when the budget cut the answer (the stream then ends with
  `response.incomplete`); Messages `usage.input_tokens/output_tokens/cache_creation_input_tokens` (a request
  with any `cache_control` marker writes its whole prompt to the cache, billed as cache creation), the
  stream's `message_start` and `message_delta` carrying them; completions `usage.prompt_tokens/
  completion_tokens`, streamed only with `stream_options.include_usage`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

ANTHROPIC_TOOL_PROMPT_TOKENS = 346  # Anthropic's documented tool-use system prompt (tool_choice auto/none)
COMPLETIONS_DEFAULT_MAX_TOKENS = 16


@dataclass
class Reply:
    """What to answer: a JSON body, or SSE events `(event name or None, data)` (plus `[DONE]` if `done`)."""

    status: int
    body: dict[str, Any] | None = None
    events: list[tuple[str | None, Any]] = field(default_factory=list)
    done: bool = False


@dataclass
class Biller:
    count: Callable[[str], int]  # tokens of a text, the provider's tokenizer
    words: Callable[[int], list[str]]  # the deterministic answer's first n words
    mode: dict[str, Any]
    answer_words: int  # uncapped answer length (mode, model suffix or header)
    seq: int

    def compact(self, value: Any) -> int:
        return self.count(json.dumps(value, ensure_ascii=False, separators=(",", ":")))

    def spend(self, budget: int | None, reasoning: int) -> tuple[int, int, bool]:
        """(reasoning, words, cut) of one answer within `budget` output tokens."""
        words = self.answer_words
        if budget is None:
            return reasoning, words, False
        reasoning = min(reasoning, budget)
        room = budget - reasoning
        cut = room < words or self.mode["fill"]
        return reasoning, (room if cut else words), cut


def _error(status: int, message: str, anthropic: bool = False) -> Reply:
    if anthropic:
        return Reply(status, {"type": "error", "error": {"type": "invalid_request_error", "message": message}})
    return Reply(status, {"error": {"message": message, "type": "invalid_request_error", "param": None, "code": None}})


# ---- Anthropic Messages ----------------------------------------------------------------------------


def _anthropic_block_tokens(block: Any, b: Biller) -> int:
    if isinstance(block, str):
        return b.count(block)
    if not isinstance(block, dict):
        return 0
    kind = block.get("type")
    if kind == "text":
        return b.count(block.get("text") or "")
    if kind == "image":
        return int(b.mode["image_tokens"])
    if kind == "tool_use":
        return b.compact(block.get("input") or {}) + b.count(block.get("name") or "")
    if kind == "tool_result":
        content = block.get("content")
        blocks = content if isinstance(content, list) else [content or ""]
        return sum(_anthropic_block_tokens(c, b) for c in blocks)
    if kind in ("thinking", "redacted_thinking"):
        return b.count(block.get("thinking") or block.get("data") or "")
    return b.compact(block)


def _has_cache_marker(value: Any) -> bool:
    if isinstance(value, dict):
        return "cache_control" in value or any(_has_cache_marker(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_cache_marker(v) for v in value)
    return False


def anthropic_prompt_tokens(data: dict[str, Any], b: Biller) -> int:
    system = data.get("system")
    tokens = sum(_anthropic_block_tokens(s, b) for s in (system if isinstance(system, list) else [system or ""]))
    for message in data.get("messages") or []:
        content = message.get("content") if isinstance(message, dict) else None
        tokens += sum(_anthropic_block_tokens(c, b) for c in (content if isinstance(content, list) else [content]))
    if data.get("tools"):
        tokens += b.compact(data["tools"]) + ANTHROPIC_TOOL_PROMPT_TOKENS
    return tokens + int(b.mode["prompt_extra_tokens"])


def messages(data: dict[str, Any], b: Biller) -> Reply:
    model = data.get("model")
    budget = data.get("max_tokens")
    if not isinstance(model, str) or not isinstance(data.get("messages"), list):
        return _error(400, "model and messages are required", anthropic=True)
    if type(budget) is not int or budget < 1:
        return _error(400, "max_tokens: Field required", anthropic=True)
    thinking = data.get("thinking") or {}
    think_budget = int(thinking.get("budget_tokens") or 0) if thinking.get("type") == "enabled" else 0
    if think_budget and think_budget >= budget:
        return _error(400, "`max_tokens` must be greater than `thinking.budget_tokens`", anthropic=True)
    prompt = anthropic_prompt_tokens(data, b)
    reasoning, words, cut = b.spend(budget, think_budget or int(b.mode["reasoning_tokens"]))
    text = " ".join(b.words(words))
    cache_write = _has_cache_marker(data)
    usage = {
        "input_tokens": 0 if cache_write else prompt,
        "cache_creation_input_tokens": prompt if cache_write else 0,
        "cache_read_input_tokens": 0,
        "output_tokens": reasoning + words,
    }
    stop = "max_tokens" if cut else "end_turn"
    msg_id = f"msg_fake{b.seq}"
    content: list[dict[str, Any]] = []
    if think_budget:
        content.append({"type": "thinking", "thinking": " ".join(b.words(reasoning)), "signature": "fake"})
    content.append({"type": "text", "text": text})
    message = {
        "id": msg_id,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": stop,
        "stop_sequence": None,
        "usage": usage,
    }
    if not data.get("stream"):
        return Reply(200, message)
    start = {**message, "content": [], "stop_reason": None, "usage": {**usage, "output_tokens": 1}}
    events: list[tuple[str | None, Any]] = [("message_start", {"type": "message_start", "message": start})]
    for index, block in enumerate(content):
        kind = block["type"]
        empty = {"type": kind, kind: "", **({"signature": ""} if kind == "thinking" else {})}
        events.append(("content_block_start", {"type": "content_block_start", "index": index, "content_block": empty}))
        delta_kind = "thinking_delta" if kind == "thinking" else "text_delta"
        for i, word in enumerate(block[kind].split(" ") if block[kind] else []):
            delta = {"type": delta_kind, kind: word if i == 0 else " " + word}
            events.append(("content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta}))
        events.append(("content_block_stop", {"type": "content_block_stop", "index": index}))
    events.append(
        (
            "message_delta",
            {"type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": None}, "usage": usage},
        )
    )
    events.append(("message_stop", {"type": "message_stop"}))
    return Reply(200, events=events)


# ---- OpenAI Responses ------------------------------------------------------------------------------


def _response_content_tokens(content: Any, b: Biller) -> int:
    if isinstance(content, str):
        return b.count(content)
    tokens = 0
    for part in content if isinstance(content, list) else []:
        if not isinstance(part, dict):
            continue
        if part.get("type") == "input_image":
            tokens += int(b.mode["image_tokens"])
        else:
            tokens += b.count(part.get("text") or "")
    return tokens


def responses_prompt_tokens(data: dict[str, Any], b: Biller) -> int:
    tokens = b.count(data.get("instructions") or "")
    items = data.get("input")
    for item in [{"role": "user", "content": items}] if isinstance(items, str) else items or []:
        if not isinstance(item, dict):
            continue
        kind = item.get("type", "message")
        if kind == "message":
            tokens += _response_content_tokens(item.get("content"), b)
        elif kind == "function_call":
            tokens += b.count(item.get("arguments") or "") + b.count(item.get("name") or "")
        elif kind == "function_call_output":
            tokens += _response_content_tokens(item.get("output"), b)
        else:
            tokens += b.compact(item)
    if data.get("tools"):
        tokens += b.compact(data["tools"])
    fmt = (data.get("text") or {}).get("format")
    if isinstance(fmt, dict) and fmt.get("type") == "json_schema":
        tokens += b.compact(fmt.get("schema") or {})
    return tokens + int(b.mode["prompt_extra_tokens"])


def responses(data: dict[str, Any], b: Biller) -> Reply:
    model = data.get("model")
    if not isinstance(model, str) or data.get("input") is None:
        return _error(400, "model and input are required")
    budget = data.get("max_output_tokens")
    if budget is not None and (type(budget) is not int or budget < 16):
        return _error(400, "Invalid 'max_output_tokens': integer below minimum value 16.")
    prompt = responses_prompt_tokens(data, b)
    reasoning, words, cut = b.spend(budget, int(b.mode["reasoning_tokens"]))
    text = " ".join(b.words(words))
    usage = {
        "input_tokens": prompt,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": reasoning + words,
        "output_tokens_details": {"reasoning_tokens": reasoning},
        "total_tokens": prompt + reasoning + words,
    }
    rid = f"resp_fake{b.seq}"
    item = {
        "id": f"msg_fake{b.seq}",
        "type": "message",
        "status": "incomplete" if cut else "completed",
        "role": "assistant",
        "content": [{"type": "output_text", "text": text, "annotations": []}],
    }
    response = {
        "id": rid,
        "object": "response",
        "created_at": 0,
        "status": "incomplete" if cut else "completed",
        "incomplete_details": {"reason": "max_output_tokens"} if cut else None,
        "error": None,
        "model": model,
        "output": [item],
        "max_output_tokens": budget,
        "parallel_tool_calls": True,
        "tool_choice": "auto",
        "tools": [],
        "usage": usage,
    }
    if not data.get("stream"):
        return Reply(200, response)
    pending = {**response, "status": "in_progress", "output": [], "usage": None, "incomplete_details": None}
    events: list[tuple[str | None, Any]] = [
        ("response.created", {"type": "response.created", "response": pending}),
        ("response.in_progress", {"type": "response.in_progress", "response": pending}),
        (
            "response.output_item.added",
            {"type": "response.output_item.added", "output_index": 0, "item": {**item, "content": []}},
        ),
    ]
    where = {"item_id": item["id"], "output_index": 0, "content_index": 0}
    for i, word in enumerate(text.split(" ") if text else []):
        delta = word if i == 0 else " " + word
        events.append(("response.output_text.delta", {"type": "response.output_text.delta", **where, "delta": delta}))
    events.append(("response.output_text.done", {"type": "response.output_text.done", **where, "text": text}))
    events.append(("response.output_item.done", {"type": "response.output_item.done", "output_index": 0, "item": item}))
    final = "response.incomplete" if cut else "response.completed"
    events.append((final, {"type": final, "response": response}))
    for number, (_, event) in enumerate(events):
        event["sequence_number"] = number
    return Reply(200, events=events)


# ---- OpenAI text completions -----------------------------------------------------------------------


def completion_prompts(prompt: Any) -> list[Any]:
    """A completion's prompts: a string, a list of strings, a token array or a list of token arrays."""
    if isinstance(prompt, str):
        return [prompt]
    if isinstance(prompt, list) and prompt and all(isinstance(t, int) for t in prompt):
        return [prompt]
    return list(prompt) if isinstance(prompt, list) else []


def completions(data: dict[str, Any], b: Biller) -> Reply:
    model = data.get("model")
    prompts = completion_prompts(data.get("prompt"))
    if not isinstance(model, str) or not prompts:
        return _error(400, "model and prompt are required")
    n = data.get("n") or 1
    best_of = data.get("best_of") or n
    if best_of < n:
        return _error(400, "best_of must be greater than or equal to n")
    if data.get("stream") and best_of > n:
        return _error(400, "best_of cannot be used with stream")
    budget = data.get("max_tokens", COMPLETIONS_DEFAULT_MAX_TOKENS)
    suffix = b.count(data.get("suffix") or "")
    prompt_tokens = (
        sum(len(p) if isinstance(p, list) else b.count(p) for p in prompts)
        + suffix * len(prompts)
        + int(b.mode["prompt_extra_tokens"])
    )
    _, words, cut = b.spend(budget, 0)
    text = " ".join(b.words(words))
    finish = "length" if cut else "stop"
    usage = {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": len(prompts) * best_of * words,
        "total_tokens": prompt_tokens + len(prompts) * best_of * words,
    }
    base = {"id": f"cmpl-fake{b.seq}", "object": "text_completion", "created": 0, "model": model}
    echoed = [p if isinstance(p, str) else "" for p in prompts] if data.get("echo") else [""] * len(prompts)
    indexes = [(p, c) for p in range(len(prompts)) for c in range(n)]
    if not data.get("stream"):
        choices = [
            {"index": i, "text": echoed[p] + text, "logprobs": None, "finish_reason": finish}
            for i, (p, _) in enumerate(indexes)
        ]
        return Reply(200, {**base, "choices": choices, "usage": usage})
    events: list[tuple[str | None, Any]] = []
    for i, (p, _) in enumerate(indexes):
        pieces = ([echoed[p]] if echoed[p] else []) + [w if j == 0 else " " + w for j, w in enumerate(b.words(words))]
        for piece in pieces:
            events.append(
                (None, {**base, "choices": [{"index": i, "text": piece, "logprobs": None, "finish_reason": None}]})
            )
        events.append(
            (None, {**base, "choices": [{"index": i, "text": "", "logprobs": None, "finish_reason": finish}]})
        )
    options = data.get("stream_options")
    if isinstance(options, dict) and options.get("include_usage") is True:
        events = [(name, {**event, "usage": None}) for name, event in events]
        events.append((None, {**base, "choices": [], "usage": usage}))
    return Reply(200, events=events, done=True)
