"""Money arithmetic: integer USD micros, credits for display, and the price rules. Pure, no I/O.

1 micro = 1e-6 USD = one base unit of USDC. 1 credit = 1,000 micros ($0.001).
Prices are computed in Decimal and rounded *up* to whole micros, so we never undercharge.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal, InvalidOperation

MICROS_PER_USD = 1_000_000
MICROS_PER_CREDIT = 1_000
_MICRO = Decimal(MICROS_PER_USD)


def to_decimal(value: Decimal | float | int | str) -> Decimal:
    """A Decimal from an int, str, Decimal or (at the LiteLLM boundary) a float, via its shortest repr."""
    if isinstance(value, Decimal):
        return value
    if isinstance(value, float):
        return Decimal(repr(value))
    return Decimal(value)


def usd_to_micros_ceil(usd: Decimal) -> int:
    return int((usd * _MICRO).to_integral_value(rounding=ROUND_CEILING))


def user_price_micros(provider_cost_usd: Decimal, markup: Decimal) -> int:
    """ceil(provider_cost * markup * 1e6): what the user pays for a call that cost us `provider_cost_usd`."""
    if provider_cost_usd < 0:
        raise ValueError("provider cost cannot be negative")
    return usd_to_micros_ceil(provider_cost_usd * markup)


def micros_to_credits(micros: int) -> str:
    """Credits as an exact decimal string (3 decimals at most), e.g. 1500 -> '1.5'."""
    text = format(Decimal(micros) / MICROS_PER_CREDIT, "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def micros_to_usd_text(micros: int) -> str:
    """USD as an exact decimal string, e.g. 18 -> '0.000018'."""
    return format(Decimal(micros) / MICROS_PER_USD, "f")


def credits_to_micros(credits: str | int) -> int:
    """Parse a credit amount ('12', '0.5'); more precision than one micro is refused, never rounded."""
    try:
        value = Decimal(str(credits).strip())
    except InvalidOperation:
        raise ValueError(f"not a number of credits: {credits!r}") from None
    if not value.is_finite():
        raise ValueError(f"not a number of credits: {credits!r}")
    micros = value * MICROS_PER_CREDIT
    if micros != micros.to_integral_value():
        raise ValueError("credits have at most 3 decimals (1 micro = 0.001 credit)")
    return int(micros)


@dataclass(frozen=True)
class TokenPrices:
    """A model's provider prices, USD per token (Decimal), and its output- and input-token limits."""

    input_usd: Decimal
    output_usd: Decimal
    max_output_tokens: int | None = None
    max_input_tokens: int | None = None

    @property
    def is_priced(self) -> bool:
        return self.input_usd > 0 or self.output_usd > 0

    def cost_usd(self, prompt_tokens: int, completion_tokens: int) -> Decimal:
        return prompt_tokens * self.input_usd + completion_tokens * self.output_usd


def worst_case_price_micros(prices: TokenPrices, prompt_tokens: int, max_output_tokens: int, markup: Decimal) -> int:
    """The hold for a call: the user price if it produced every token it is allowed to."""
    return user_price_micros(prices.cost_usd(prompt_tokens, max_output_tokens), markup)


def affordable_output_tokens(prices: TokenPrices, prompt_tokens: int, available_micros: int, markup: Decimal) -> int:
    """The most output tokens whose worst-case price fits in `available_micros` (0 if none; -1 if not even the
    prompt)."""
    if worst_case_price_micros(prices, prompt_tokens, 0, markup) > available_micros:
        return -1
    if prices.output_usd <= 0:
        return prices.max_output_tokens or 0
    budget_usd = Decimal(available_micros) / _MICRO / markup - prompt_tokens * prices.input_usd
    tokens = int((budget_usd / prices.output_usd).to_integral_value(rounding=ROUND_FLOOR))
    while tokens > 0 and worst_case_price_micros(prices, prompt_tokens, tokens, markup) > available_micros:
        tokens -= 1
    return max(tokens, 0)
