"""The tokens a provider reported for a call, whatever API it answered in: chat and text completions
(`usage.prompt_tokens/completion_tokens`), Responses (`usage.input_tokens/output_tokens`, reasoning inside
output) and Anthropic Messages (`usage.input_tokens` + `cache_creation_input_tokens` +
`cache_read_input_tokens`, `output_tokens`, thinking inside output); as objects or dicts, plain or streamed.

Streams report usage in different places: a chat / completion stream in its last chunk (when asked), a
Responses stream in its terminal event (`response.completed`, `response.incomplete` or `response.failed`),
an Anthropic stream in `message_start` (input) and `message_delta` (output so far, and input again). LiteLLM
hands the stream hook objects, dicts or the SSE bytes of a passed-through stream: `StreamUsage` reads them all.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from gateway.core.billing import ReportedCost

RESPONSES_TERMINAL = frozenset({"response.completed", "response.incomplete", "response.failed"})


def _get(obj: Any, name: str) -> Any:
    return obj.get(name) if isinstance(obj, dict) else getattr(obj, name, None)


def _int(value: Any) -> int:
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else 0


def usage_tokens(usage: Any) -> tuple[int, int] | None:
    """(prompt, completion) tokens of one usage object of any of the APIs, or None if it has none."""
    if usage is None:
        return None
    if _get(usage, "prompt_tokens") is not None or _get(usage, "completion_tokens") is not None:
        return _int(_get(usage, "prompt_tokens")), _int(_get(usage, "completion_tokens"))
    if _get(usage, "input_tokens") is None and _get(usage, "output_tokens") is None:
        return None
    prompt = sum(
        _int(_get(usage, k)) for k in ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")
    )
    return prompt, _int(_get(usage, "output_tokens"))


def reported_usage(response: Any) -> tuple[int, int]:
    """(prompt, completion) tokens of a plain response of any of the APIs ((0, 0) if it reports none)."""
    return usage_tokens(_get(response, "usage")) or (0, 0)


def _events(chunk: Any) -> list[Any]:
    """The JSON events in a chunk: itself, or those in the `data:` lines of SSE bytes."""
    if isinstance(chunk, (bytes, str)):
        text = chunk.decode("utf-8", "replace") if isinstance(chunk, bytes) else chunk
        events = []
        for line in text.splitlines():
            if line.startswith("data:") and line[5:].strip().startswith("{"):
                try:
                    events.append(json.loads(line[5:]))
                except ValueError:
                    continue
        return events
    return [chunk]


@dataclass
class StreamUsage:
    """Usage read off a stream as it passes: `final` once the provider's last word on usage went by."""

    prompt: int = 0
    completion: int = 0
    produced: bool = False  # any output (content, reasoning, tool calls) went by
    final: bool = False
    cost: Any = None  # LiteLLM's own cost of the stream, when its usage chunk carries one
    priced: Any = None  # what LiteLLM can price the stream from: its terminal event or an Anthropic message

    def feed(self, chunk: Any, text: list[str]) -> bool:
        """Read one chunk, appending the output text it carries to `text`; True if it carried the stream's
        final usage."""
        found = False
        for event in _events(chunk):
            found = self._read(event, text) or found
        return found

    def _read(self, event: Any, text: list[str]) -> bool:
        kind = _get(event, "type")
        kind = str(getattr(kind, "value", kind)) if kind is not None else None
        if kind is not None and kind.startswith("response."):
            if kind.endswith(".delta"):
                self.produced = True
                delta = _get(event, "delta")
                text.append(delta if isinstance(delta, str) else "")
            if kind in RESPONSES_TERMINAL:
                self.priced = event
                return self._take(_get(_get(event, "response"), "usage"))
            return False
        if kind == "message_start":
            message = _get(event, "message")
            tokens = usage_tokens(_get(message, "usage"))
            self.prompt = tokens[0] if tokens else self.prompt
            self.priced = dict(message) if isinstance(message, dict) else None
            return False
        if kind == "content_block_delta":
            self.produced = True
            delta = _get(event, "delta")
            for name in ("text", "thinking", "partial_json"):
                piece = _get(delta, name)
                text.append(piece if isinstance(piece, str) else "")
            return False
        if kind == "message_delta":
            usage = _get(event, "usage")
            output = _int(_get(usage, "output_tokens"))
            prompt = usage_tokens(usage)
            self.prompt = max(self.prompt, prompt[0] if prompt else 0)
            self.completion = max(self.completion, output)
            if isinstance(self.priced, dict) and isinstance(usage, dict):
                self.priced["usage"] = {**(self.priced.get("usage") or {}), **usage}
            self.final = True
            return True
        for choice in _get(event, "choices") or []:
            piece = _get(choice, "text")
            if piece:
                self.produced = True
                text.append(piece)
        usage = _get(event, "usage")
        if usage is not None and _get(usage, "completion_tokens") is not None:
            self.cost = _get(usage, "cost")
            return self._take(usage)
        return False

    def _take(self, usage: Any) -> bool:
        tokens = usage_tokens(usage)
        if tokens is None:
            return False
        self.prompt, self.completion = tokens
        self.final = True
        return True


def litellm_cost(request_data: dict[str, Any], result: Any) -> ReportedCost:
    """LiteLLM's cost of a result that does not carry one (an Anthropic Messages dict, a Responses event),
    from the call's own logging object (the deployment's prices); None if it cannot price it."""
    logging_obj = request_data.get("litellm_logging_obj")
    if logging_obj is None or result is None:
        return None
    try:
        cost: ReportedCost = logging_obj.response_cost_calculator(result=result)
    except Exception:  # noqa: BLE001 - the settle falls back to the price table (core.billing.price_call)
        return None
    return cost
