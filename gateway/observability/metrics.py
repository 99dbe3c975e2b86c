"""The gateway's Prometheus metrics: their definitions, the bounded label values, and the `/metrics` answer.

Every process writes its samples with prometheus-client; a process started with PROMETHEUS_MULTIPROC_DIR
(the proxy's LiteLLM workers; the sidecar and the watcher under `gateway up`) writes them to files in that
folder, and `exposition` aggregates every process's files with `MultiProcessCollector`. Gauges about the
database (open holds, their oldest age, expired holds, payments by status) are read at scrape time
(`gateway.observability.db_gauges`), never on a call's path.

Labels carry only bounded, non-identifying values: model names from the configuration (`model_label`),
outcomes, hold events, route templates and statuses, and per proxy worker the hash of the config it serves
(with its pid). Never a key, a wallet or an account id.

The metric objects are module-level on purpose, not part of a process's runtime (gateway/runtime.py):
prometheus-client registers each once per process, and with PROMETHEUS_MULTIPROC_DIR its samples are files
of the process, not of a runtime; a runtime built again (a test's) counts into the same ones, harmlessly.
"""

from __future__ import annotations

import os
import secrets
import shutil
from collections.abc import Collection, Iterable
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import REGISTRY, Collector

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
OTHER_MODEL = "other"  # a model name the configuration does not list (clients choose it: unbounded)
NO_MODEL = "none"  # a refusal before a model was read (unknown route, unreadable body)

CALLS = Counter(
    "gateway_proxy_calls",
    "Calls of virtual keys at the proxy by model and outcome (200, 401, 402, 403, 4xx, 5xx).",
    ["model", "outcome"],
)
HOLD_EVENTS = Counter("gateway_hold_events", "Holds opened, settled and released by the proxy.", ["event"])
SETTLE_SECONDS = Histogram(
    "gateway_settle_seconds",
    "Time to settle a call (the ledger write, or the spool when the database is unreachable).",
    buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
PROVIDER_COST = Counter(
    "gateway_provider_cost_micros", "What providers billed for settled calls, USD micros.", ["model"]
)
REVENUE = Counter("gateway_revenue_micros", "What accounts were charged for settled calls, USD micros.", ["model"])
UNCOLLECTED = Counter(
    "gateway_uncollected_micros",
    "User price above what a hold let the account be charged (operator loss), USD micros.",
    ["model"],
)
SPOOLED = Counter(
    "gateway_spooled", "Settles and releases written to the spool: the database was unreachable.", ["kind"]
)
LEDGER_REFUSALS = Counter(
    "gateway_ledger_refusals",
    "Holds, settles and releases the database refused permanently (never retried; see gateway reconcile).",
    ["op"],
)
SIDECAR_REQUESTS = Counter(
    "gateway_sidecar_requests", "Sidecar requests by route template, method and status.", ["route", "method", "status"]
)
WATCHER_HEAD_LAG = Gauge(
    "gateway_watcher_head_lag_blocks",
    "How many blocks the watcher's cursor is behind the chain head after its last run.",
    multiprocess_mode="mostrecent",
)
GAS_WALLET_BALANCE = Gauge(
    "gateway_x402_gas_wallet_balance_wei",
    "The x402 gas wallet's balance (wei, pending block) as last read before a settlement; alert well above zero.",
    multiprocess_mode="mostrecent",
)
CONFIG_LOADED = Gauge(
    "gateway_config_loaded",
    "Per proxy worker: the hash of the LiteLLM config it serves (label) and when it loaded it (unix time); "
    "0 for a hash it served before. Every worker of every replica shows one hash once a reload converged.",
    ["hash"],
    multiprocess_mode="liveall",
)

_OUTCOMES = {200: "200", 401: "401", 402: "402", 403: "403"}


def outcome(status: int) -> str:
    """A response status as a call outcome: 200, 401, 402, 403, else its class (2xx, 4xx, 5xx)."""
    return _OUTCOMES.get(status) or f"{status // 100}xx"


def model_label(model: object, configured: Collection[str]) -> str:
    """`model` if the configuration lists it, else "other" (clients must not mint label values)."""
    if not isinstance(model, str) or not model:
        return NO_MODEL
    return model if model in configured else OTHER_MODEL


NEEDS_TOKEN = "metrics need METRICS_BEARER_TOKEN set on the server and sent as Authorization: Bearer <it>\n"


def authorized(authorization: str | None, token: str | None) -> bool:
    """The /metrics token rule: `Authorization: Bearer <METRICS_BEARER_TOKEN>`; without the setting, nobody (the
    figures are the operator's business: revenue, provider cost, losses)."""
    if not token:
        return False
    presented = (authorization or "").encode("latin-1", "replace")
    return secrets.compare_digest(presented, f"Bearer {token}".encode())


class _Families(Collector):
    def __init__(self, families: Iterable[Metric]) -> None:
        self.families = list(families)

    def collect(self) -> Iterable[Metric]:
        return self.families


def exposition(extra: Iterable[Metric] = ()) -> bytes:
    """The Prometheus text of this process (or of every process writing to PROMETHEUS_MULTIPROC_DIR), plus
    `extra` families read at scrape time."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Families(extra))
    if os.environ.get(MULTIPROC_ENV):
        MultiProcessCollector(registry)  # type: ignore[no-untyped-call]  # prometheus-client leaves it untyped
        return generate_latest(registry)
    return generate_latest(REGISTRY) + generate_latest(registry)


def fresh_multiproc_dir(folder: Path) -> Path:
    """An empty folder for one start's metric files (files of a previous start would be summed in)."""
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    return folder
