"""What the proxy counts and logs per call, at O(1) cost and with no database round trip: the call outcome
counter (wrapped around the response's `send` by the guard), the hold/settle/release counters and the one
log line per billed call (from the callbacks), the ledger's permanent refusals, and the proxy's `GET /metrics`
answer (aggregated over the LiteLLM workers; database gauges read at scrape time).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from gateway.failures import refusal_reason
from gateway.observability import metrics
from gateway.observability.db_gauges import database_families
from gateway.observability.logging import get_logger
from gateway.proxy.inflight import Call
from gateway.proxy.runtime import runtime

Message = dict[str, Any]
Send = Callable[[Message], Awaitable[None]]

calls_log = get_logger("gateway.calls")
billing_log = logging.getLogger("gateway.proxy.billing")


@functools.lru_cache(maxsize=1)
def _configured() -> frozenset[str]:
    from gateway.proxy.pricing import model_names  # LiteLLM's router, loaded by then

    names = frozenset(model_names())
    if not names:  # the router is not loaded yet: do not cache an empty list
        _configured.cache_clear()
    return names


def models_changed() -> None:
    """The configured models changed (a reload): label calls by the new list."""
    _configured.cache_clear()


def model_label(model: object) -> str:
    return metrics.model_label(model, _configured())


@functools.lru_cache(maxsize=1024)  # label values are bounded (configured models, outcomes): no eviction churn
def _child(metric: Any, *labels: str) -> Any:
    """`metric.labels(*labels)`, looked up once per label set instead of on every call."""
    return metric.labels(*labels)


class CountedSend:
    """`send` that counts the call's outcome when its response starts; the guard sets `model` once read."""

    def __init__(self, send: Send) -> None:
        self._send = send
        self.model: object = None

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            _child(metrics.CALLS, model_label(self.model), metrics.outcome(int(message["status"]))).inc()
        await self._send(message)


def held() -> None:
    _child(metrics.HOLD_EVENTS, "opened").inc()


def _add(amount: int, metric: Any, *labels: str) -> None:
    """Count `amount` (0 too: the child, created once, is the series, so it exists from the first call on
    without a write for nothing; in multi-process mode every increment is a write to a shared file)."""
    child = _child(metric, *labels)
    if amount:
        child.inc(amount)


def settled(call: Call, provider_cost_micros: int, user_price_micros: int, seconds: float, spooled: bool) -> None:
    model = model_label(call.model)
    charged = call.charged_micros or 0
    _child(metrics.HOLD_EVENTS, "settled").inc()
    metrics.SETTLE_SECONDS.observe(seconds)
    _add(provider_cost_micros, metrics.PROVIDER_COST, model)
    _add(charged, metrics.REVENUE, model)
    _add(max(0, user_price_micros - charged), metrics.UNCOLLECTED, model)
    _add(int(spooled), metrics.SPOOLED, "settle")
    _log(call, "settled", charged_micros=charged, spooled=spooled)


def released(call: Call, spooled: bool) -> None:
    _child(metrics.HOLD_EVENTS, "released").inc()
    _add(int(spooled), metrics.SPOOLED, "release")
    _log(call, "released", charged_micros=0, spooled=spooled)


def refused(request_id: str, account_id: int, key_id: int | None, model: str, outcome: str) -> None:
    """A billed call refused at the hold (402, 503): its one log line (no hold was opened)."""
    calls_log.info("call", request_id=request_id, account_id=account_id, key_id=key_id, model=model, outcome=outcome)


def refused_by_ledger(request_id: str, op: str, exc: BaseException, call: Call | None = None) -> None:
    """A hold, settle or release the database refused permanently: counted, and logged at ERROR with the
    request id and the driver's reason (an operator's work; `gateway reconcile` lists the settles)."""
    metrics.LEDGER_REFUSALS.labels(op).inc()
    reason = refusal_reason(exc)
    billing_log.error("%s of %s refused by the ledger (%s)", op, request_id, reason, exc_info=exc)
    if call is not None:
        _log(call, f"{op}_refused", charged_micros=0, reason=reason)


def _log(call: Call, outcome: str, **fields: Any) -> None:
    calls_log.info(
        "call",
        request_id=call.request_id,
        account_id=call.account_id,
        key_id=call.key_id,
        model=call.model,
        outcome=outcome,
        held_micros=call.held_micros,
        streamed=call.streamed,
        route=call.route,
        **fields,
    )


async def serve_metrics(method: str, authorization: bytes | None, send: Send) -> None:
    """`GET /metrics`: the Prometheus text for the METRICS_BEARER_TOKEN, else 401 (always, when none is set)."""
    rt = runtime()
    if method != "GET":
        return await _answer(send, 405, b"GET only\n")
    presented = authorization.decode("latin-1") if authorization else None
    if not metrics.authorized(presented, rt.settings.metrics_bearer_token):
        return await _answer(send, 401, metrics.NEEDS_TOKEN.encode())
    await _answer(send, 200, metrics.exposition(await database_families(rt.db)), metrics.CONTENT_TYPE)


async def _answer(send: Send, status: int, body: bytes, content_type: str = "text/plain; charset=utf-8") -> None:
    headers = [(b"content-type", content_type.encode()), (b"content-length", str(len(body)).encode())]
    if status == 401:
        headers.append((b"www-authenticate", b"Bearer"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
