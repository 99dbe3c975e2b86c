"""Model prices and token counts, read from LiteLLM (the router's model groups and its token counter)."""

from __future__ import annotations

from litellm import token_counter

from gateway.money import TokenPrices, to_decimal

_prices: dict[str, TokenPrices | None] = {}


def _router():  # noqa: ANN202 - the proxy's router, present once the proxy has loaded its config
    from litellm.proxy import proxy_server

    return proxy_server.llm_router


def prices_for(model: str) -> TokenPrices | None:
    """The model group's prices, or None when the model is unknown or has no price (cached per process)."""
    if model in _prices:
        return _prices[model]
    router = _router()
    info = router.get_model_group_info(model) if router is not None else None
    prices = None
    if info is not None and (info.input_cost_per_token or info.output_cost_per_token):
        prices = TokenPrices(
            input_usd=to_decimal(info.input_cost_per_token or 0),
            output_usd=to_decimal(info.output_cost_per_token or 0),
            max_output_tokens=int(info.max_output_tokens) if info.max_output_tokens else None,
        )
    _prices[model] = prices
    return prices


def count_prompt_tokens(model: str, data: dict, embedding: bool) -> int:
    if embedding:
        items = data.get("input")
        texts = [items] if isinstance(items, str) else list(items or [])
        if texts and not isinstance(texts[0], str):  # token-id input: one token per id
            return sum(len(t) if isinstance(t, list) else 1 for t in texts)
        return sum(token_counter(model=model, text=t) for t in texts)
    return token_counter(model=model, messages=data.get("messages") or [], tools=data.get("tools"))
