"""The model catalog of a LiteLLM config file, read the way the proxy reads it: every model with its user
price (the same `pricing.list_rates` + `core.billing.user_rates` the proxy's GET /v1/models answers with),
context and output limits, and every problem an operator must fix before users meet it (`gateway check`,
and `gateway up` before it starts).

It builds a LiteLLM Router from the config's model list, as the proxy does at start-up, so prices come from
the config's own `input_cost_per_token`/`output_cost_per_token` or LiteLLM's bundled price map. Importing
litellm takes seconds: only the CLI and the proxy use this module. The sidecar serves the price list from
the JSON snapshot `gateway up` writes (`publish`), so it never imports litellm (the import contract).
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from dataclasses import asdict, dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import yaml

from gateway.core.billing import user_rates

PRICE_FIELDS = ("input_cost_per_token", "output_cost_per_token")
ENV_PREFIX = "os.environ/"


@dataclass(frozen=True)
class Problem:
    severity: str  # error (gateway up refuses to start) | warning
    model: str | None
    message: str  # what is wrong and how to fix it, one line

    def line(self) -> str:
        where = f"model '{self.model}': " if self.model else ""
        return f"{self.severity}: {where}{self.message}"


@dataclass(frozen=True)
class ModelPrice:
    id: str
    pricing: dict[str, str]  # user prices (core.billing.user_rates)
    context_tokens: int | None
    max_output_tokens: int | None
    mode: str | None
    routes: list[str] = field(default_factory=list)  # the billed API paths the model serves
    provider_input_usd_per_token: str = field(repr=False, default="")
    provider_output_usd_per_token: str = field(repr=False, default="")

    def public(self) -> dict[str, Any]:
        """The entry anyone may see: never the provider price."""
        doc = asdict(self)
        del doc["provider_input_usd_per_token"], doc["provider_output_usd_per_token"]
        return doc


@dataclass
class Catalog:
    config: Path
    models: list[ModelPrice] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "error"]


def _is_number(value: Any) -> bool:
    """What LiteLLM accepts as a price (pydantic's float: a number, or a string of one), and not negative."""
    if isinstance(value, bool):
        return False
    try:
        return Decimal(str(value)).is_finite() and Decimal(str(value)) >= 0
    except InvalidOperation:
        return False


def _env_refs(value: Any) -> list[str]:
    if isinstance(value, str) and value.startswith(ENV_PREFIX):
        return [value.removeprefix(ENV_PREFIX)]
    if isinstance(value, dict):
        return [ref for item in value.values() for ref in _env_refs(item)]
    if isinstance(value, list):
        return [ref for item in value for ref in _env_refs(item)]
    return []


def _read(path: Path, catalog: Catalog) -> list[dict[str, Any]]:
    try:
        config = yaml.safe_load(path.read_text())
    except OSError as exc:
        catalog.problems.append(Problem("error", None, f"cannot read {path}: {exc.strerror}; pass --config PATH"))
        return []
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        problem = getattr(exc, "problem", None) or "unreadable"
        catalog.problems.append(Problem("error", None, f"{path} is not valid YAML ({where}{problem}); fix the file"))
        return []
    if isinstance(config, dict):
        _declare_custom_providers(config.get("litellm_settings"))
    models = (config or {}).get("model_list") if isinstance(config, dict) else None
    if not isinstance(models, list) or not models:
        catalog.problems.append(Problem("error", None, f"{path} has no model_list; add at least one model"))
        return []
    return models


def _declare_custom_providers(litellm_settings: Any) -> None:
    """Make the config's custom providers (`litellm_settings.custom_provider_map`, e.g. the demo model's) known by
    name: the Router refuses a model whose provider it does not know. The proxy loads their handlers itself."""
    import litellm

    items = litellm_settings.get("custom_provider_map") if isinstance(litellm_settings, dict) else None
    for item in items if isinstance(items, list) else []:
        name = item.get("provider") if isinstance(item, dict) else None
        if isinstance(name, str) and name not in litellm._custom_providers:
            litellm.provider_list.append(name)  # as LiteLLM's own custom_llm_setup does
            litellm._custom_providers.append(name)


def _usable(entry: Any, catalog: Catalog, env: dict[str, str]) -> bool:
    """Whether a model_list entry can be loaded by LiteLLM; its problems are recorded either way."""
    name = entry.get("model_name") if isinstance(entry, dict) else None
    params = entry.get("litellm_params") if isinstance(entry, dict) else None
    if not isinstance(name, str) or not isinstance(params, dict) or not isinstance(params.get("model"), str):
        catalog.problems.append(
            Problem("error", name, "each model_list entry needs model_name and litellm_params.model")
        )
        return False
    usable = True
    for price in PRICE_FIELDS:
        if price in params and not _is_number(params[price]):
            catalog.problems.append(
                Problem("error", name, f"{price} is {params[price]!r}, not a price; set a number of USD per token")
            )
            usable = False
    for ref in _env_refs(params):
        if not env.get(ref):
            catalog.problems.append(
                Problem("error", name, f"environment variable {ref} (litellm_params: {ENV_PREFIX}{ref}) is not set")
            )
    return usable


def _routable(entry: dict[str, Any], catalog: Catalog) -> bool:
    """Whether LiteLLM knows the entry's provider (the check its Router makes for the whole list, per model)."""
    from litellm import get_llm_provider

    params = entry["litellm_params"]
    try:
        get_llm_provider(
            model=params["model"],
            custom_llm_provider=params.get("custom_llm_provider"),
            api_base=params.get("api_base"),
        )
    except Exception:  # noqa: BLE001 - LiteLLM's BadRequestError, or whatever it raises for a bad name
        catalog.problems.append(
            Problem(
                "error", entry["model_name"], f"LiteLLM knows no provider for litellm_params.model "
                f"'{params['model']}'; write it as <provider>/<model>, e.g. openai/gpt-4o-mini",
            )
        )  # fmt: skip
        return False
    return True


def load(path: Path, markup: Decimal, env: dict[str, str] | None = None) -> Catalog:
    """The catalog of the config at `path` at user prices (provider price x `markup`), and its problems."""
    litellm_log = logging.getLogger("LiteLLM")
    level = litellm_log.level
    litellm_log.setLevel(logging.ERROR)  # its notes on custom prices are not our problems
    try:  # a running proxy checks a reload with this: its own log level is left as it was
        return _load(path, markup, dict(os.environ) if env is None else env)
    finally:
        litellm_log.setLevel(level)


def _load(path: Path, markup: Decimal, env: dict[str, str]) -> Catalog:
    from litellm.router import Router

    from gateway.proxy.pricing import list_rates, model_names, route_paths

    catalog = Catalog(path)
    entries = [entry for entry in _read(path, catalog) if _usable(entry, catalog, env) and _routable(entry, catalog)]
    if not entries:
        return catalog
    try:
        router = Router(model_list=entries)
    except Exception as exc:  # noqa: BLE001 - LiteLLM refuses the list: the proxy would not start either
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        catalog.problems.append(Problem("error", None, f"LiteLLM cannot load the model list: {first}"))
        return catalog
    for name in model_names(router):
        rates = list_rates(name, router)
        if rates is None:
            catalog.problems.append(
                Problem(
                    "error", name, "no price: LiteLLM's price map does not know it; set input_cost_per_token and "
                    "output_cost_per_token (USD per token) in its litellm_params",
                )
            )  # fmt: skip
            continue
        group = router.get_model_group_info(name)
        max_output = int(group.max_output_tokens) if group and group.max_output_tokens else None
        mode = group.mode if group else None
        if max_output is None and mode != "embedding":
            catalog.problems.append(
                Problem(
                    "warning", name, "output limit unknown: a call without max_tokens is held for what the account "
                    "affords; set model_info.max_output_tokens",
                )
            )  # fmt: skip
        catalog.models.append(
            ModelPrice(
                id=name,
                pricing=user_rates(*rates, markup),
                context_tokens=int(group.max_input_tokens) if group and group.max_input_tokens else None,
                max_output_tokens=max_output,
                mode=mode,
                routes=route_paths(name, router),
                provider_input_usd_per_token=format(rates[0], "f"),
                provider_output_usd_per_token=format(rates[1], "f"),
            )
        )
    return catalog


def publish(catalog: Catalog, path: Path) -> None:
    """Write the public price list (never provider prices) for the sidecar, atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    document = {"object": "list", "data": [m.public() for m in catalog.models]}
    with tempfile.NamedTemporaryFile("w", dir=path.parent, prefix=".price_list.", delete=False) as tmp:
        json.dump(document, tmp)
    Path(tmp.name).replace(path)
