"""`gateway models` and `gateway check`: the price list users see and the problems of a LiteLLM config,
computed from the config the way the proxy loads it (gateway.proxy.catalog)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.table import Table

from gateway.cli.common import JsonOpt, emit
from gateway.cli.output import err, out
from gateway.config import get_settings

if TYPE_CHECKING:
    from gateway.proxy.catalog import Catalog, ModelPrice

ConfigOpt = typer.Option(
    None, "--config", help="The LiteLLM config to read (default: GATEWAY_LITELLM_CONFIG, else the repo's)."
)


def load_catalog(config: Path | None) -> Catalog:
    from gateway.proxy.catalog import load  # litellm loads only for these commands

    settings = get_settings()
    return load(config.resolve() if config else settings.effective_litellm_config, settings.user_price_markup_factor)


def _entry(model: ModelPrice, provider_prices: bool) -> dict[str, Any]:
    doc = model.public()
    if provider_prices:
        doc["provider_input_usd_per_token"] = model.provider_input_usd_per_token
        doc["provider_output_usd_per_token"] = model.provider_output_usd_per_token
    return doc


def _table(entries: list[dict[str, Any]], provider_prices: bool) -> Table:
    columns = ["model", "input USD/1M", "output USD/1M", "input credits/1M", "output credits/1M", "context", "output"]
    table = Table(*columns, *(["provider in/out USD per token"] if provider_prices else []))
    for e in entries:
        p = e["pricing"]
        row = [e["id"], p["prompt_usd_per_1m_tokens"], p["completion_usd_per_1m_tokens"]]
        row += [p["prompt_credits_per_1m_tokens"], p["completion_credits_per_1m_tokens"]]
        row += [str(e["context_tokens"] or "?"), str(e["max_output_tokens"] or "?")]
        if provider_prices:
            row.append(f"{e['provider_input_usd_per_token']} / {e['provider_output_usd_per_token']}")
        table.add_row(*row)
    return table


def models(
    config: Path | None = ConfigOpt,
    provider_prices: bool = typer.Option(False, "--provider-prices", help="Also show provider prices (operators)."),
    as_json: bool = JsonOpt,
) -> None:
    """The price list: each callable model's user price per 1M input and output tokens, in USD and credits."""
    catalog = load_catalog(config)
    entries = [_entry(m, provider_prices) for m in catalog.models]
    emit(as_json, {"object": "list", "data": entries}, lambda: out.print(_table(entries, provider_prices)))


def check(config: Path | None = ConfigOpt, as_json: bool = JsonOpt) -> None:
    """Check a LiteLLM config the way the proxy will load it: every model's user price and every problem.
    Exit status 1 when there is an error (`gateway up` would refuse to start)."""
    catalog = load_catalog(config)
    doc = {
        "config": str(catalog.config),
        "ok": not catalog.errors,
        "models": [m.public() for m in catalog.models],
        "problems": [{"severity": p.severity, "model": p.model, "message": p.message} for p in catalog.problems],
    }

    def render() -> None:
        out.print(_table([_entry(m, False) for m in catalog.models], False))
        for problem in catalog.problems:
            (err if problem.severity == "error" else out).print(problem.line(), markup=False, highlight=False)
        out.print(f"{catalog.config}: {'ok' if not catalog.errors else f'{len(catalog.errors)} error(s)'}")

    emit(as_json, doc, render)
    if catalog.errors:
        raise typer.Exit(1)
