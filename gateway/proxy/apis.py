"""The billed APIs beside chat: OpenAI Responses, Anthropic Messages and OpenAI text completions. For each,
the parameter allow-list a virtual key may send (400 naming anything else) and what the provider is asked
for, as the hold needs it (`billable`): the prompt the provider reads, its images and tool definitions, the
output budget and how many answers are billed. Pure (no I/O); `gateway.proxy.guard` checks bodies with
`check_body`, `gateway.proxy.callbacks` holds from `billable`.

Refused because a hold cannot bound them or they bill outside the token price: built-in tools (web search,
file search, code interpreter, computer use, image generation, MCP, bash / text editor / web fetch...),
`background`, stored `prompt` templates, `conversation`, `previous_response_id` (the provider would bill an
earlier conversation the gateway never sees: send it as `input`), item references and encrypted reasoning
items, files, and anything that makes the provider fetch a URL (images must be inline base64 data).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gateway.proxy.admission import (
    CHAT,
    COMPLETIONS,
    MAX_CHOICES,
    MAX_OUTPUT_TOKENS,
    MESSAGES,
    RESPONSES,
    Refusal,
    _bad,
    _check_stream,
    _positive_int,
)

MAX_BEST_OF = 20  # OpenAI's bound
MIN_RESPONSES_OUTPUT = 16  # OpenAI refuses max_output_tokens below 16
COMPLETIONS_DEFAULT_MAX_TOKENS = 16  # the completions API's own default
# Anthropic wraps tool definitions in a tool-use system prompt it bills as input (346 tokens documented for
# the Claude models; the hold takes more)
ANTHROPIC_TOOL_PROMPT_TOKENS = 512
OUTPUT_PARAM = {CHAT: "max_tokens", RESPONSES: "max_output_tokens", MESSAGES: "max_tokens", COMPLETIONS: "max_tokens"}

RESPONSES_PARAMS = frozenset(
    {
        "model",
        "input",
        "instructions",
        "max_output_tokens",
        "stream",
        "temperature",
        "top_p",
        "tools",
        "tool_choice",
        "parallel_tool_calls",
        "text",
        "reasoning",
        "user",
        "store",
        "truncation",
        "top_logprobs",
        "safety_identifier",
        "prompt_cache_key",
    }
)
MESSAGES_PARAMS = frozenset(
    {
        "model",
        "messages",
        "system",
        "max_tokens",
        "stop_sequences",
        "stream",
        "temperature",
        "top_p",
        "top_k",
        "tools",
        "tool_choice",
        "thinking",
        "metadata",
    }
)
COMPLETIONS_PARAMS = frozenset(
    {
        "model",
        "prompt",
        "suffix",
        "max_tokens",
        "n",
        "best_of",
        "echo",
        "stream",
        "stream_options",
        "temperature",
        "top_p",
        "stop",
        "presence_penalty",
        "frequency_penalty",
        "logit_bias",
        "logprobs",
        "user",
        "seed",
    }
)
PARAMS = {RESPONSES: RESPONSES_PARAMS, MESSAGES: MESSAGES_PARAMS, COMPLETIONS: COMPLETIONS_PARAMS}
# why a well-known parameter is refused, so the client learns what to do instead
REFUSED_BECAUSE = {
    "previous_response_id": "the provider would bill the earlier conversation, which the gateway never saw and "
    "cannot bound: send the conversation as 'input' items instead",
    "conversation": "a stored conversation is billed as input the gateway cannot see: send it as 'input' items",
    "prompt": "stored prompt templates are expanded by the provider, unseen by the hold: send the text as 'input'",
    "background": "background responses run detached from this request and cannot be settled with it",
    "include": "it only adds outputs of built-in tools, which are refused",
    "max_tool_calls": "it only bounds built-in tools, which are refused",
    "service_tier": "service tiers bill at other rates",
    "mcp_servers": "remote MCP servers are billed outside the tokens a hold can bound",
    "container": "code execution containers are billed per use",
}

RESPONSES_ITEM_TYPES = frozenset({"message", "function_call", "function_call_output"})
RESPONSES_PART_TYPES = frozenset({"input_text", "input_image", "output_text", "refusal"})
MESSAGES_BLOCK_TYPES = frozenset({"text", "image", "tool_use", "tool_result", "thinking", "redacted_thinking"})
MESSAGES_ROLES = frozenset({"user", "assistant"})
CUSTOM_TOOL_TYPES = {RESPONSES: frozenset({"function"}), MESSAGES: frozenset({None, "custom"})}
TEXT_FORMATS = frozenset({"text", "json_object", "json_schema"})


def _refuse_param(kind: str, name: str) -> Refusal:
    why = REFUSED_BECAUSE.get(name)
    if why:
        return _bad("unsupported_parameter", f"Parameter '{name}' is not accepted by this gateway: {why}.", name)
    accepted = ", ".join(sorted(PARAMS[kind]))
    return _bad(
        "unsupported_parameter", f"Parameter '{name}' is not accepted by this gateway (accepted: {accepted}).", name
    )


def _object(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _bad("invalid_parameter", f"{where} must be an object.", where)
    return value


def _check_tools(kind: str, body: dict[str, Any]) -> None:
    tools = body.get("tools")
    if tools is None:
        return
    if not isinstance(tools, list):
        raise _bad("invalid_parameter", "'tools' must be an array of tool definitions.", "tools")
    for i, tool in enumerate(tools):
        kind_of = _object(tool, f"tools[{i}]").get("type")
        if kind_of not in CUSTOM_TOOL_TYPES[kind]:
            raise _bad(
                "unsupported_parameter",
                f"tools[{i}] of type {kind_of!r} is not accepted: built-in provider tools are billed per use, "
                "outside the tokens a hold can bound (accepted: your own function tools).",
                f"tools[{i}]",
            )


def _check_image_source(source: Any, where: str) -> None:
    """Only inline images: a URL or file id would have the provider fetch what the hold never saw."""
    if isinstance(source, dict) and source.get("type") == "base64" and isinstance(source.get("data"), str):
        return
    if isinstance(source, str) and source.startswith("data:"):
        return
    raise _bad(
        "unsupported_content",
        f"{where}: only inline (base64 / data: URL) images are accepted; the gateway does not let the provider "
        "fetch URLs or files.",
        where,
    )


def _check_parts(parts: Any, allowed: frozenset[str], where: str, kind: str) -> None:
    if isinstance(parts, str):
        return
    if not isinstance(parts, list):
        raise _bad("invalid_parameter", f"{where} must be a string or an array of content blocks.", where)
    for j, part in enumerate(parts):
        part_where = f"{where}[{j}]"
        part_type = _object(part, part_where).get("type")
        if part_type not in allowed:
            raise _bad(
                "unsupported_content",
                f"{part_where} of type {part_type!r} is not accepted: its cost cannot be bounded before the call "
                f"(accepted: {', '.join(sorted(allowed))}).",
                part_where,
            )
        if part_type == "input_image":
            if "file_id" in part:
                raise _bad("unsupported_content", f"{part_where}: file ids are not accepted.", part_where)
            _check_image_source(part.get("image_url"), part_where)
        elif part_type == "image":
            _check_image_source(part.get("source"), part_where)
        elif part_type == "tool_result":
            _check_parts(part.get("content", ""), frozenset({"text", "image"}), f"{part_where}.content", kind)


def _check_responses(body: dict[str, Any]) -> None:
    items = body.get("input")
    if isinstance(items, str):
        pass
    elif isinstance(items, list) and items:
        for i, item in enumerate(items):
            where = f"input[{i}]"
            item_type = _object(item, where).get("type", "message")
            if item_type not in RESPONSES_ITEM_TYPES:
                raise _bad(
                    "unsupported_content",
                    f"{where} of type {item_type!r} is not accepted: references, stored or encrypted items and "
                    f"built-in tool results cannot be bounded (accepted: {', '.join(sorted(RESPONSES_ITEM_TYPES))}).",
                    where,
                )
            if item_type == "message":
                _check_parts(item.get("content"), RESPONSES_PART_TYPES, f"{where}.content", RESPONSES)
            elif item_type == "function_call_output" and not isinstance(item.get("output"), str):
                raise _bad("invalid_parameter", f"{where}.output must be a string.", f"{where}.output")
    else:
        raise _bad("invalid_parameter", "'input' must be a string or a non-empty array of input items.", "input")
    if body.get("instructions") is not None and not isinstance(body["instructions"], str):
        raise _bad("invalid_parameter", "'instructions' must be a string.", "instructions")
    _positive_int(body, "max_output_tokens", MAX_OUTPUT_TOKENS)
    budget = body.get("max_output_tokens")
    if budget is not None and budget < MIN_RESPONSES_OUTPUT:
        raise _bad(
            "invalid_parameter", f"'max_output_tokens' must be at least {MIN_RESPONSES_OUTPUT}.", "max_output_tokens"
        )
    text = body.get("text")
    if text is not None:
        fmt = _object(text, "text").get("format")
        if fmt is not None and _object(fmt, "text.format").get("type") not in TEXT_FORMATS:
            raise _bad("invalid_parameter", f"text.format.type must be one of {sorted(TEXT_FORMATS)}.", "text.format")
    if body.get("reasoning") is not None and set(_object(body["reasoning"], "reasoning")) - {"effort", "summary"}:
        raise _bad("unsupported_parameter", "'reasoning' accepts only effort and summary.", "reasoning")


def _check_messages(body: dict[str, Any]) -> None:
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise _bad("invalid_parameter", "'messages' must be a non-empty array of messages.", "messages")
    for i, message in enumerate(messages):
        where = f"messages[{i}]"
        if _object(message, where).get("role") not in MESSAGES_ROLES or set(message) - {"role", "content"}:
            raise _bad("invalid_parameter", f"{where} must be {{role: user|assistant, content}}.", where)
        _check_parts(message.get("content"), MESSAGES_BLOCK_TYPES, f"{where}.content", MESSAGES)
    system = body.get("system")
    if system is not None:
        _check_parts(system, frozenset({"text"}), "system", MESSAGES)
    if "max_tokens" not in body:
        raise _bad("invalid_parameter", "'max_tokens' is required on /v1/messages.", "max_tokens")
    _positive_int(body, "max_tokens", MAX_OUTPUT_TOKENS)
    thinking = body.get("thinking")
    if thinking is not None:
        mode = _object(thinking, "thinking").get("type")
        budget = thinking.get("budget_tokens")
        if mode == "disabled" and set(thinking) == {"type"}:
            pass
        elif (
            mode != "enabled"
            or set(thinking) != {"type", "budget_tokens"}
            or isinstance(budget, bool)
            or not isinstance(budget, int)
            or not 1 <= budget < body["max_tokens"]
        ):
            raise _bad(
                "invalid_parameter",
                "'thinking' must be {type: disabled} or {type: enabled, budget_tokens} with budget_tokens below "
                "max_tokens (thinking is billed as output, inside max_tokens).",
                "thinking",
            )
    metadata = body.get("metadata")
    if metadata is not None and (set(_object(metadata, "metadata")) - {"user_id"}):
        raise _bad("unsupported_parameter", "'metadata' accepts only user_id.", "metadata")


def _token_ids(value: Any) -> bool:
    """A non-empty array of token ids (each counted as one token by the hold, so nothing else may hide in it)."""
    return isinstance(value, list) and bool(value) and all(type(t) is int and t >= 0 for t in value)


def _check_completions(body: dict[str, Any]) -> None:
    prompts = completion_prompts(body.get("prompt"))
    if not prompts or not (all(isinstance(p, str) for p in prompts) or all(_token_ids(p) for p in prompts)):
        raise _bad(
            "invalid_parameter",
            "'prompt' must be a string, an array of strings, an array of token ids or an array of such arrays "
            "(one shape, not mixed).",
            "prompt",
        )
    if len(prompts) > MAX_CHOICES:
        raise _bad("invalid_parameter", f"'prompt' may hold at most {MAX_CHOICES} prompts.", "prompt")
    _positive_int(body, "n", MAX_CHOICES)
    _positive_int(body, "best_of", MAX_BEST_OF)
    _positive_int(body, "max_tokens", MAX_OUTPUT_TOKENS)
    n, best_of = body.get("n") or 1, body.get("best_of")
    if best_of is not None and best_of < n:
        raise _bad("invalid_parameter", "'best_of' must be at least 'n'.", "best_of")
    if body.get("stream") and best_of is not None and best_of > n:
        raise _bad("invalid_parameter", "'best_of' cannot be used with stream.", "best_of")
    if body.get("suffix") is not None and not isinstance(body["suffix"], str):
        raise _bad("invalid_parameter", "'suffix' must be a string.", "suffix")
    if "echo" in body and not isinstance(body["echo"], bool):
        raise _bad("invalid_parameter", "'echo' must be true or false.", "echo")
    _check_stream(body)


_CHECKS = {RESPONSES: _check_responses, MESSAGES: _check_messages, COMPLETIONS: _check_completions}


def check_body(kind: str, body: dict[str, Any]) -> None:
    """Refuse what the hold cannot bound on a Responses, Messages or completions call (see the docstring)."""
    unknown = sorted(set(body) - PARAMS[kind])
    if unknown:
        raise _refuse_param(kind, unknown[0])
    if not isinstance(body.get("model"), str) or not body["model"]:
        raise _bad("invalid_parameter", "'model' must name a model (see GET /v1/models).", "model")
    if "stream" in body and not isinstance(body["stream"], bool):
        raise _bad("invalid_parameter", "'stream' must be true or false.", "stream")
    if kind != COMPLETIONS:
        _check_tools(kind, body)
    _CHECKS[kind](body)


def completion_prompts(prompt: Any) -> list[Any]:
    """A completion's prompts: a string, a list of strings, a token array or a list of token arrays."""
    if isinstance(prompt, str):
        return [prompt]
    if isinstance(prompt, list) and prompt and all(isinstance(t, int) and not isinstance(t, bool) for t in prompt):
        return [prompt]
    return list(prompt) if isinstance(prompt, list) else []


@dataclass(frozen=True)
class Billable:
    """What one request asks the provider for, as the hold bounds it. `text` is counted with the model's
    tokenizer; `tokens` are counted already (token-id prompts, framing); `output` None is ours to choose."""

    text: dict[str, Any]
    images: int
    tools: int
    tokens: int
    output: int | None
    answers: int = 1  # answers billed, each up to `output` tokens
    prompt_copies: int = 1  # a completion's `echo` bills its prompt again with each answer
    min_output: int = 1


def _strip_images(parts: Any, image_types: frozenset[str]) -> tuple[Any, int]:
    """Content with every image reduced to its type (its size is bounded per image), and how many."""
    if not isinstance(parts, list):
        return parts, 0
    images = 0
    out = []
    for part in parts:
        if isinstance(part, dict) and part.get("type") in image_types:
            images += 1
            part = {"type": part["type"]}
        elif isinstance(part, dict) and isinstance(part.get("content"), list):  # a tool_result's blocks
            inner, found = _strip_images(part["content"], image_types)
            images += found
            part = {**part, "content": inner}
        out.append(part)
    return out, images


def _stripped_items(items: Any, image_types: frozenset[str]) -> tuple[Any, int]:
    if not isinstance(items, list):
        return items, 0
    images = 0
    out = []
    for item in items:
        if isinstance(item, dict) and isinstance(item.get("content"), list):
            content, found = _strip_images(item["content"], image_types)
            images += found
            item = {**item, "content": content}
        out.append(item)
    return out, images


def billable(kind: str, data: dict[str, Any]) -> Billable:
    tools = len(data.get("tools") or [])
    if kind == RESPONSES:
        items, images = _stripped_items(data.get("input"), frozenset({"input_image"}))
        text = {"instructions": data.get("instructions"), "input": items}
        text.update((k, data[k]) for k in ("tools", "tool_choice", "text") if data.get(k) is not None)
        return Billable(text, images, tools, 0, data.get("max_output_tokens"), min_output=MIN_RESPONSES_OUTPUT)
    if kind == MESSAGES:
        messages, images = _stripped_items(data.get("messages"), frozenset({"image"}))
        system, system_images = _strip_images(data.get("system"), frozenset({"image"}))
        text = {"system": system, "messages": messages}
        text.update((k, data[k]) for k in ("tools", "tool_choice") if data.get(k) is not None)
        framing = ANTHROPIC_TOOL_PROMPT_TOKENS if tools else 0
        return Billable(text, images + system_images, tools, framing, int(data["max_tokens"]))
    prompts = completion_prompts(data.get("prompt"))
    texts = [p for p in prompts if isinstance(p, str)]
    ids = sum(len(p) for p in prompts if isinstance(p, list))
    per_prompt = max(int(data.get("n") or 1), int(data.get("best_of") or 1))
    suffix = data.get("suffix") or ""
    text = {"prompt": texts, "suffix": [suffix] * len(prompts) if suffix else []}
    output = data.get("max_tokens") or COMPLETIONS_DEFAULT_MAX_TOKENS
    copies = 1 + per_prompt if data.get("echo") else 1
    return Billable(text, 0, 0, ids, int(output), answers=len(prompts) * per_prompt, prompt_copies=copies)
