"""What one request may cost: the model's rates, its prompt counted as the provider could bill it, and the
hold that bounds the call (`plan_request`), composed from `gateway.proxy.pricing` (rates and counts from
LiteLLM), `gateway.proxy.apis` (what each API's request asks for) and `gateway.core.billing` (the rule).

The pre-call hook holds this plan; an x402 call pays exactly it (gateway.proxy.x402_gate), and the plan it
paid is carried to the hook, so the prompt is counted once.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from gateway.core.billing import HoldPlan, plan_hold
from gateway.core.money import TokenPrices
from gateway.proxy import admission, apis, errors
from gateway.proxy.pricing import count_billable, count_prompt_tokens, embedding_input_tokens, prices_for, routes_for
from gateway.proxy.runtime import runtime


@dataclass(frozen=True)
class Plan:
    """A request's hold: for `model` on route `kind` (gateway.proxy.admission), at `prices` x `markup`."""

    model: str
    kind: str
    prices: TokenPrices
    markup: Decimal
    hold: HoldPlan


def _requested_max_tokens(data: dict[str, Any]) -> int | None:
    """The output budget per choice the client asked for (the larger, if it sent both names; the guard
    checked that each is a positive integer)."""
    values = [data[name] for name in ("max_tokens", "max_completion_tokens") if data.get(name) is not None]
    return max(values) if values else None


def plan_request(model: str, data: dict[str, Any], kind: str) -> Plan:
    """What to hold for this request on route `kind` (400 for a model with no price, one that does not serve
    the route, or a prompt longer than the model takes: refused before the provider is called)."""
    prices = prices_for(model)
    if prices is None:
        raise errors.unpriced_model(model)
    if kind not in routes_for(model):
        raise errors.model_route_refused(model, admission.BILLED_PATHS[kind])
    settings = runtime().settings
    markup = settings.user_price_markup_factor
    if kind == admission.EMBEDDINGS:  # a model's input limit is per input
        inputs = embedding_input_tokens(model, data.get("input") or [])
        prompt_tokens, longest = sum(inputs), max(inputs, default=0)
    elif kind == admission.CHAT:
        prompt_tokens = longest = count_prompt_tokens(model, data, False, settings.hold_tokens_per_image)
    else:
        wanted = apis.billable(kind, data)
        prompt_tokens = longest = count_billable(model, wanted, settings.hold_tokens_per_image)
    if prices.max_input_tokens and longest > prices.max_input_tokens:
        raise errors.prompt_too_long(model, longest, prices.max_input_tokens)
    if kind in (admission.CHAT, admission.EMBEDDINGS):
        embedding = kind == admission.EMBEDDINGS
        requested = None if embedding else _requested_max_tokens(data)
        choices = 1 if embedding else int(data.get("n") or 1)
        hold = plan_hold(prices, prompt_tokens, requested, markup, choices=choices, embedding=embedding)
    else:
        hold = plan_hold(
            prices, prompt_tokens, wanted.output, markup, choices=wanted.answers, min_output_tokens=wanted.min_output
        )
    return Plan(model, kind, prices, markup, hold)
