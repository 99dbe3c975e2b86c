"""Billing rules for one LLM call, free of LiteLLM: how much to hold, how to price what was used, and
what to tell a client whose account cannot cover the call.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from gateway.core.money import (
    MICROS_PER_CREDIT,
    MICROS_PER_USD,
    TokenPrices,
    affordable_output_tokens,
    micros_to_credits,
    to_decimal,
    usd_to_micros_ceil,
    user_price_micros,
    worst_case_price_micros,
)
from gateway.core.posting import InsufficientCredit

DEFAULT_OUTPUT_CAP = 4096
COST_QUANTUM = Decimal(
    "1e-12"
)  # USD; a millionth of a micro  # output-token cap for a model whose limit LiteLLM does not know


@dataclass(frozen=True)
class HoldPlan:
    """What to reserve before the provider is called. `min_micros` is set when max_tokens is ours to choose.

    The hold covers `choices` x `max_output_tokens` output tokens (a provider bills every choice) plus the
    prompt as counted by `gateway.proxy.pricing` (an upper bound of the provider's count).
    """

    amount_micros: int
    min_micros: int | None
    prompt_tokens: int
    max_output_tokens: int  # per choice: the client's max_tokens, or the cap we may lower to what the hold covers
    choices: int = 1


def plan_hold(
    prices: TokenPrices,
    prompt_tokens: int,
    requested_max: int | None,
    markup: Decimal,
    *,
    choices: int = 1,
    embedding: bool = False,
    min_output_tokens: int = 1,
) -> HoldPlan:
    """What to hold for `prompt_tokens` and `choices` answers of up to `requested_max` output tokens each; with
    no `requested_max`, a flexible hold from `min_output_tokens` per answer (an API's least output budget) up to
    the model's output limit."""
    if choices < 1:
        raise ValueError("a call has at least one choice")
    if embedding:
        return HoldPlan(worst_case_price_micros(prices, prompt_tokens, 0, markup), None, prompt_tokens, 0)
    if requested_max is not None:
        amount = worst_case_price_micros(prices, prompt_tokens, choices * requested_max, markup)
        return HoldPlan(amount, None, prompt_tokens, requested_max, choices)
    cap = prices.max_output_tokens or DEFAULT_OUTPUT_CAP
    return HoldPlan(
        amount_micros=worst_case_price_micros(prices, prompt_tokens, choices * cap, markup),
        min_micros=worst_case_price_micros(prices, prompt_tokens, choices * min_output_tokens, markup),
        prompt_tokens=prompt_tokens,
        max_output_tokens=cap,
        choices=choices,
    )


def max_tokens_for_hold(prices: TokenPrices, plan: HoldPlan, held_micros: int, markup: Decimal) -> int:
    """The per-choice max_tokens that a flexible hold of `held_micros` covers for all of the plan's choices."""
    affordable = affordable_output_tokens(prices, plan.prompt_tokens, held_micros, markup)
    return min(plan.max_output_tokens, max(affordable, 0) // plan.choices)


def insufficient_message(
    model: str, plan: HoldPlan, err: InsufficientCredit, prices: TokenPrices, markup: Decimal
) -> str:
    available = err.balance_micros - err.held_micros
    credits = micros_to_credits
    needed = err.requested_micros
    per_choice = f" x {plan.choices} choices" if plan.choices > 1 else ""
    state = (
        f"Insufficient credits for this request to '{model}': balance {credits(err.balance_micros)} credits, "
        f"{credits(err.held_micros)} held by requests in flight, {credits(available)} available; "
    )
    if plan.min_micros is not None and needed == plan.min_micros:  # no max_tokens: the smallest hold was refused
        head = state + (
            f"this request needs at least {credits(needed)} credits ({plan.prompt_tokens} prompt tokens + 1 output "
            f"token{per_choice}; max_tokens was not set, so the gateway holds what the account affords, up to "
            f"{plan.max_output_tokens} output tokens{per_choice})."
        )
    else:
        head = state + (
            f"this request needs up to {credits(needed)} credits ({plan.prompt_tokens} prompt tokens"
            + (f" + up to {plan.max_output_tokens} output tokens{per_choice})." if plan.max_output_tokens else ").")
        )
    if needed > err.balance_micros:
        fits_balance = affordable_output_tokens(prices, plan.prompt_tokens, err.balance_micros, markup)
        if fits_balance < 0 or plan.max_output_tokens == 0 or fits_balance < plan.choices:
            return head + (
                " This request can never fit in the current balance: its prompt alone (with one output token for "
                "each choice) costs more. Top up credits."
            )
        return head + (
            " It can never fit in the current balance as asked;"
            f" with max_tokens <= {fits_balance // plan.choices}{per_choice} it would. "
            "Lower max_tokens (or n) or top up credits."
        )
    affordable = affordable_output_tokens(prices, plan.prompt_tokens, available, markup)
    return head + (
        f" Credits held by requests in flight cover the rest; right now the account can afford "
        f"{max(affordable, 0)} output tokens for this prompt. Retry when they finish, or top up."
    )


@dataclass(frozen=True)
class Charge:
    provider_cost_micros: int
    user_price_micros: int
    cost_source: str  # "litellm" or "price_table" (LiteLLM reported nothing for a call that used tokens)


ReportedCost = Decimal | float | int | str | None  # a call's cost as LiteLLM reports it (usually a float)


def price_call(
    reported_cost_usd: ReportedCost, prices: TokenPrices, prompt_tokens: int, completion_tokens: int, markup: Decimal
) -> Charge:
    """Price a finished call: LiteLLM's cost when it has one, else the model's price table. Never $0 for tokens.

    LiteLLM's cost is a float sum of per-token products, whose binary noise (0.0135 arrives as
    0.013500000000000002) would round the price up by a whole micro: it is taken to 1e-12 USD first.
    """
    cost = Decimal(0)
    if reported_cost_usd is not None and reported_cost_usd != "":
        cost = to_decimal(reported_cost_usd).quantize(COST_QUANTUM)
    source = "litellm"
    if cost <= 0 and (prompt_tokens or completion_tokens) and prices.is_priced:
        cost = prices.cost_usd(prompt_tokens, completion_tokens)
        source = "price_table"
    return Charge(usd_to_micros_ceil(cost), user_price_micros(cost, markup), source)


def user_rates(input_usd: Decimal, output_usd: Decimal, markup: Decimal) -> dict[str, str]:
    """A model's price list entry at user prices (provider rate x markup), exact decimal strings: USD per token,
    and USD and credits per 1M tokens (1 credit = $0.001). A call's price is the sum over its tokens, rounded up
    to a whole micro (gateway.core.money.user_price_micros)."""
    per_million = Decimal(1_000_000) * MICROS_PER_USD / MICROS_PER_CREDIT
    fields = {}
    for side, rate in (("prompt", input_usd * markup), ("completion", output_usd * markup)):
        fields[f"{side}_usd_per_token"] = _plain(rate)
        fields[f"{side}_usd_per_1m_tokens"] = _plain(rate * 1_000_000)
        fields[f"{side}_credits_per_1m_tokens"] = _plain(rate * per_million)
    return fields


def _plain(value: Decimal) -> str:
    text = format(value.normalize(), "f")
    return text.rstrip("0").rstrip(".") if "." in text else text
