"""Model prices and prompt sizes for holds, read from LiteLLM (the router's deployments, its price map and
its token counter).

A hold must bound what the provider can bill, so both numbers here err high:
- the rates are the highest a call to the model group can be billed at: the dearest deployment of the
  group, and the dearest per-token rate of each side (cache writes and long-context tiers cost more
  than plain input; reasoning tokens may cost more than plain output);
- the prompt is counted as the tokens of its JSON text (messages, tools, functions, response_format,
  tool_choice), which is more than a provider counts for the same content (it adds only a few tokens
  of framing per message), plus a configured bound per image (an image's tokens depend on its pixels,
  which only the provider sees; LiteLLM's own counter would download an image URL to measure it).
- a text is counted exactly, never extrapolated: LiteLLM's `_get_count_function` samples texts above 4M
  characters, and a prompt shaped against its samples was held at 3% of its cost. Above
  `EXACT_COUNT_MAX_CHARS` (where an exact count would hold the worker's event loop for more than ~0.1 s)
  the hold takes the text's UTF-8 byte length instead: in byte-level BPE every token covers at least one
  byte, so the byte length bounds the token count whatever the text is.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from litellm.litellm_core_utils.token_counter import _get_exact_count_function

from gateway.core.money import TokenPrices, to_decimal
from gateway.proxy import admission

if TYPE_CHECKING:
    from litellm.router import Router

    from gateway.proxy.apis import Billable

# per config generation: gateway.proxy.reload starts a new one (`new_generation`) when it swaps the model list
_prices: dict[str, TokenPrices | None] = {}
_counters: dict[str, Callable[[str], int]] = {}
_routes: dict[str, frozenset[str]] = {}

# price-map keys whose rate a call to the model may be billed at; service tiers and batch rates are not
# reachable (gateway.proxy.admission refuses `service_tier`), audio parts are refused as well
_TIER_SUFFIXES = ("_batches", "_flex", "_priority", "_ultrafast", "_decisions", "_balanced")
_INPUT_RATES = ("input_cost_per_token", "cache_creation_input_token_cost")
_OUTPUT_RATES = ("output_cost_per_token", "output_cost_per_reasoning_token")
PROMPT_PARAMS = ("tools", "functions", "response_format", "tool_choice")
# framing a provider adds that the JSON text does not show: a reply primer, and the tool preamble a
# provider writes around each tool definition (OpenAI renders tools as a TypeScript namespace)
FRAMING_TOKENS = 16
FRAMING_TOKENS_PER_TOOL = 24
# longest text counted exactly (~0.1 s of CPU at worst, measured with o200k on runs of one character); above
# it a text is held at its UTF-8 byte length
EXACT_COUNT_MAX_CHARS = 1_000_000


def _router() -> Router | None:
    """The proxy's router, present once the proxy has loaded its config."""
    from litellm.proxy import proxy_server

    return proxy_server.llm_router


def _highest_rate(infos: list[dict[str, Any]], prefixes: tuple[str, ...]) -> float:
    rates = [
        float(value)
        for info in infos
        for key, value in info.items()
        if key.startswith(prefixes) and not key.endswith(_TIER_SUFFIXES) and isinstance(value, (int, float))
    ]
    return max(rates, default=0.0)


def _deployment_infos(router: Router, model: str) -> list[dict[str, Any]]:
    infos = []
    for deployment in router.get_model_list(model_name=model) or []:
        model_id = (deployment.get("model_info") or {}).get("id") or ""  # "" like None: not a price-map key
        try:
            info = router.get_deployment_model_info(model_id=model_id, model_name=deployment["litellm_params"]["model"])
        except Exception:  # noqa: BLE001 - LiteLLM raises for a model its map does not know
            info = None
        infos.append(dict(info or {}))
    return infos


def new_generation() -> None:
    """Forget the prices and tokenizers of the previous config (a reload swapped the router's model list). Calls
    admitted before keep the `TokenPrices` they were held at (gateway.proxy.inflight.Call)."""
    global _prices, _counters, _routes
    _prices, _counters, _routes = {}, {}, {}


def prices_for(model: str) -> TokenPrices | None:
    """The model group's hold rates, or None when the model is unknown or has no price (cached per generation)."""
    if model in _prices:
        return _prices[model]
    router = _router()
    group = router.get_model_group_info(model) if router is not None else None
    prices = None
    if router is not None and group is not None and (group.input_cost_per_token or group.output_cost_per_token):
        infos = [
            {
                "input_cost_per_token": group.input_cost_per_token or 0,
                "output_cost_per_token": group.output_cost_per_token or 0,
            },
            *_deployment_infos(router, model),
        ]
        prices = TokenPrices(
            input_usd=to_decimal(_highest_rate(infos, _INPUT_RATES)),
            output_usd=to_decimal(_highest_rate(infos, _OUTPUT_RATES)),
            max_output_tokens=int(group.max_output_tokens) if group.max_output_tokens else None,
            max_input_tokens=int(group.max_input_tokens) if group.max_input_tokens else None,
        )
    _prices[model] = prices
    return prices


def count_text(model: str, text: str) -> int:
    """An upper bound of the tokens of `text` for `model`: the model tokenizer's exact count (looked up once
    per process: LiteLLM looks it up on every call, two thirds of the cost for a short prompt), or the UTF-8
    byte length above EXACT_COUNT_MAX_CHARS. Never a sample's extrapolation (see the module docstring)."""
    if len(text) > EXACT_COUNT_MAX_CHARS:
        return len(text.encode("utf-8", "surrogatepass"))
    counter = _counters.get(model)
    if counter is None:
        counter = _counters[model] = _get_exact_count_function(model)
    return counter(text)


def count_texts(model: str, texts: list[str]) -> list[int]:
    """`count_text` for each text, with the exact-count budget shared: a request of many texts is counted
    exactly only while their total stays within EXACT_COUNT_MAX_CHARS (else each is held at its byte length)."""
    if sum(len(text) for text in texts) > EXACT_COUNT_MAX_CHARS:
        return [len(text.encode("utf-8", "surrogatepass")) for text in texts]
    return [count_text(model, text) for text in texts]


def _without_images(messages: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], int]:
    """The messages with every image part reduced to its type (a data: URL would count as millions of
    tokens; a provider bills an image by its pixels), and how many images there were."""
    images = 0
    stripped = []
    for message in messages:
        content = message.get("content")
        if isinstance(content, list):
            parts = []
            for part in content:
                if isinstance(part, dict) and part.get("type") == "image_url":
                    images += 1
                    parts.append({"type": "image_url"})
                else:
                    parts.append(part)
            message = {**message, "content": parts}
        stripped.append(message)
    return stripped, images


def embedding_input_tokens(model: str, items: str | list[Any]) -> list[int]:
    """An upper bound of the tokens of each embedding input. The guard admits only the four shapes OpenAI
    defines (a string, strings, token ids, lists of token ids), each list homogeneous; this still counts
    every element by its own type, so a mixed list is never held for less than its texts' tokens."""
    if isinstance(items, str):
        return count_texts(model, [items])
    if items and all(isinstance(item, int) for item in items):  # one array of token ids: one input
        return [len(items)]
    text_counts = dict(
        zip(
            (i for i, item in enumerate(items) if isinstance(item, str)),
            count_texts(model, [item for item in items if isinstance(item, str)]),
            strict=True,
        )
    )
    return [
        text_counts[i] if i in text_counts else len(item) if isinstance(item, list) else 1
        for i, item in enumerate(items)
    ]


def count_prompt_tokens(model: str, data: dict[str, Any], embedding: bool, tokens_per_image: int) -> int:
    """An upper bound of the prompt tokens a provider bills for this request (see the module docstring)."""
    if embedding:
        return sum(embedding_input_tokens(model, data.get("input") or []))
    messages, images = _without_images(data.get("messages") or [])
    prompt: dict[str, Any] = {"messages": messages}
    prompt.update((name, data[name]) for name in PROMPT_PARAMS if data.get(name) is not None)
    text = json.dumps(prompt, ensure_ascii=False, separators=(",", ":"))
    tools = len(data.get("tools") or []) + len(data.get("functions") or [])
    framing = FRAMING_TOKENS + FRAMING_TOKENS_PER_TOOL * tools
    return count_text(model, text) + framing + images * tokens_per_image


def count_billable(model: str, billable: Billable, tokens_per_image: int) -> int:
    """An upper bound of the prompt tokens a provider bills for a Responses, Messages or completions request:
    the tokens of its JSON text, framing per tool, a bound per image, tokens counted already (token ids)."""
    text = json.dumps(billable.text, ensure_ascii=False, separators=(",", ":"))
    framing = FRAMING_TOKENS + FRAMING_TOKENS_PER_TOOL * billable.tools
    once = count_text(model, text) + framing + billable.images * tokens_per_image + billable.tokens
    return once * billable.prompt_copies


# the routes a model group serves, by its mode in LiteLLM's price map (LiteLLM translates between the chat-like
# APIs for any chat model; a text-completion model serves completions only, an embedding model embeddings)
_CHAT_LIKE = frozenset({admission.CHAT, admission.RESPONSES, admission.MESSAGES, admission.COMPLETIONS})
ROUTES_BY_MODE: dict[str, frozenset[str]] = {
    "chat": _CHAT_LIKE,
    "responses": frozenset({admission.RESPONSES}),
    "completion": frozenset({admission.COMPLETIONS}),
    "embedding": frozenset({admission.EMBEDDINGS}),
}


def route_paths(model: str, router: Any = None) -> list[str]:
    """The paths of the billed routes a model group serves, as the price lists show them."""
    served = routes_for(model, router)
    return [path for kind, path in admission.BILLED_PATHS.items() if kind in served]


def routes_for(model: str, router: Any = None) -> frozenset[str]:
    """The billed routes a model group serves (a group without a mode is taken as a chat model). The proxy's own
    answer is cached per config generation, as prices are: LiteLLM builds the group's info anew on each ask
    (~0.4 ms, on every call's plan)."""
    if router is None and model in _routes:
        return _routes[model]
    live = router is None
    router = router or _router()
    group = router.get_model_group_info(model) if router is not None else None
    served = ROUTES_BY_MODE.get(str(getattr(group, "mode", None) or "chat"), frozenset())
    if live and router is not None:
        _routes[model] = served
    return served


def model_names(router: Any = None) -> list[str]:
    router = router or _router()
    return sorted(router.get_model_names()) if router is not None else []


def list_rates(model: str, router: Any = None) -> tuple[Decimal, Decimal] | None:
    """The model group's list price (plain input and output USD per token), or None when it has none. From the
    proxy's router, or `router` (one `gateway check` built from the same config)."""
    router = router or _router()
    group = router.get_model_group_info(model) if router is not None else None
    if group is None or not (group.input_cost_per_token or group.output_cost_per_token):
        return None
    return to_decimal(group.input_cost_per_token or 0), to_decimal(group.output_cost_per_token or 0)
