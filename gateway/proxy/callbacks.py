"""The billing callback LiteLLM runs around every call: hold before, settle (or release) on the request path.

- `async_pre_call_hook`: price the worst case, set max_tokens if the client did not, HOLD it (402 if the
  account cannot cover it, 503 if the database is unreachable, 400 for a model with no price).
- `async_post_call_success_hook` (plain responses) and the stream wrapper (streams): SETTLE before the
  client receives the end of the response.
- `async_post_call_failure_hook`: RELEASE. A client that leaves mid-stream pays for what was produced.
- `async_log_success_event` / `async_log_failure_event`: LiteLLM's best-effort background callbacks, kept
  as an idempotent backstop (same request id) for a settle that did not happen on the request path. LiteLLM
  starts them while the request path is still settling, so the two take turns per call (`_Inflight.closing`):
  whichever comes second finds the call closed and does nothing (no second database write per call).
- `async_post_call_response_headers_hook`: clients see what *they* pay, never provider cost or upstream URLs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections import OrderedDict
from decimal import Decimal
from typing import Any, AsyncGenerator, AsyncIterator

import litellm
from litellm.integrations.custom_logger import CustomLogger

from gateway import ledger
from gateway.billing import HoldPlan, insufficient_message, max_tokens_for_hold, plan_hold, price_call
from gateway.money import MICROS_PER_USD, TokenPrices, micros_to_credits
from gateway.proxy import errors
from gateway.failures import INFRASTRUCTURE_ERRORS
from gateway.proxy.pricing import count_prompt_tokens, prices_for
from gateway.proxy.runtime import runtime
from gateway.spool import SpoolUnavailable

log = logging.getLogger("gateway.proxy.billing")

CHAT_CALLS = frozenset({"completion", "acompletion"})
EMBEDDING_CALLS = frozenset({"embeddings", "aembedding"})
_HIDDEN_HEADERS = (
    "x-litellm-model-api-base",
    "x-litellm-model-name",
    "x-litellm-key-spend",
    "x-litellm-response-cost-original",
    "x-litellm-response-cost-discount-amount",
    "x-litellm-response-cost-margin-amount",
    "x-litellm-response-cost-margin-percent",
    "x-litellm-response-cost-input",
    "x-litellm-response-cost-output",
    "x-litellm-response-cost-cache-read",
    "x-litellm-response-cost-cache-creation",
    "x-litellm-response-cost-reasoning",
    "x-litellm-response-cost-tool-usage",
    "x-litellm-classifier-cost",
)


def _tag(data: dict | None) -> dict | None:
    """The state dict our pre-call hook put in the request's metadata (it travels to the logging callbacks).

    Only trusted through `BillingCallbacks._inflight`: a client can put anything into `metadata`.
    """
    if not data:
        return None
    for bucket in ("metadata", "litellm_metadata"):
        meta = data.get(bucket)
        if isinstance(meta, dict) and isinstance(meta.get("gateway"), dict):
            return meta["gateway"]
    return None


def _requested_max_tokens(data: dict) -> int | None:
    """The output budget per choice the client asked for (the larger, if it sent both names; the guard
    checked that each is a positive integer)."""
    values = [data[name] for name in ("max_tokens", "max_completion_tokens") if data.get(name) is not None]
    return max(values) if values else None


def plan_request(model: str, data: dict, embedding: bool) -> tuple[TokenPrices, HoldPlan]:
    """The model's hold rates and what to hold for this request (400 for a model with no price). An x402
    call pays exactly this hold (gateway.proxy.x402_gate)."""
    prices = prices_for(model)
    if prices is None:
        raise errors.unpriced_model(model)
    settings = runtime().settings
    requested = None if embedding else _requested_max_tokens(data)
    prompt_tokens = count_prompt_tokens(model, data, embedding, settings.hold_tokens_per_image)
    choices = 1 if embedding else int(data.get("n") or 1)
    plan = plan_hold(prices, prompt_tokens, requested, settings.user_price_markup_factor, choices=choices,
                     embedding=embedding)
    return prices, plan


def _carries_nothing_but_usage(chunk: Any) -> bool:
    return all(
        not getattr(c.delta, "content", None) and not getattr(c.delta, "tool_calls", None) and not c.finish_reason
        for c in getattr(chunk, "choices", None) or []
    )


def _usd_text(micros: int) -> str:
    return format(Decimal(micros) / MICROS_PER_USD, "f")


class _Inflight:
    """Calls this process has held and not yet settled or released, by request id (bounded)."""

    def __init__(self, size: int = 100_000):
        self.size = size
        self._calls: OrderedDict[str, tuple[dict, asyncio.Lock]] = OrderedDict()

    def add(self, meta: dict) -> None:
        self._calls[meta["request_id"]] = (meta, asyncio.Lock())
        if len(self._calls) > self.size:
            self._calls.popitem(last=False)  # its hold expires and is reported by the sweeper

    def get(self, data: dict | None) -> dict | None:
        tag = _tag(data)
        entry = self._calls.get(tag.get("request_id")) if tag else None  # type: ignore[arg-type]
        return entry[0] if entry else None

    def done(self, request_id: str) -> None:
        self._calls.pop(request_id, None)

    @contextlib.asynccontextmanager
    async def closing(self, request_id: str) -> AsyncIterator[bool]:
        """One settle/release attempt per call at a time; yields False if the call is closed already."""
        entry = self._calls.get(request_id)
        if entry is None:
            yield False
            return
        async with entry[1]:
            yield request_id in self._calls


class BillingCallbacks(CustomLogger):
    def __init__(self) -> None:
        super().__init__()
        self._inflight = _Inflight()

    # ---- HOLD -------------------------------------------------------------------------------------
    async def async_pre_call_hook(self, user_api_key_dict, cache, data: dict, call_type) -> dict:  # noqa: ANN001
        request_id = uuid.uuid4().hex  # ours, never the client's x-litellm-call-id (replaying one must not be free)
        try:
            return await self._hold(user_api_key_dict, data, call_type, request_id)
        except errors.GatewayError:
            raise
        except Exception:  # noqa: BLE001 - a bug of ours: the client gets our code, never Python's text
            log.exception("pre-call hook failed for %s", request_id)
            raise errors.internal_error(request_id) from None

    async def _hold(self, user_api_key_dict, data: dict, call_type, request_id: str) -> dict:  # noqa: ANN001
        for bucket in ("metadata", "litellm_metadata"):
            if isinstance(data.get(bucket), dict):
                data[bucket].pop("gateway", None)  # only we write this
        account_id = (user_api_key_dict.metadata or {}).get("gateway_account_id")
        if account_id is None:
            raise errors.admin_key_refused()
        call = str(getattr(call_type, "value", call_type))
        embedding = call in EMBEDDING_CALLS
        if not embedding and call not in CHAT_CALLS:
            raise errors.unsupported_call(call)
        model = str(data.get("model") or "")
        prices, plan = plan_request(model, data, embedding)
        rt = runtime()
        markup = rt.settings.user_price_markup_factor
        key_id = user_api_key_dict.metadata.get("gateway_key_id")
        try:
            held = await asyncio.shield(ledger.hold(  # a client leaving cannot cut a money write in half
                rt.db, account_id, request_id, plan.amount_micros, min_micros=plan.min_micros,
                ttl_seconds=rt.settings.hold_ttl_seconds, key_id=key_id, model=model,
            ))
        except ledger.InsufficientCredit as exc:
            raise errors.insufficient_credits(insufficient_message(model, plan, exc, prices, markup)) from None
        except INFRASTRUCTURE_ERRORS as exc:  # one line, no traceback: an outage would flood the log
            log.warning("hold of %s refused: billing database unreachable (%s)", request_id, type(exc).__name__)
            raise errors.billing_unavailable(request_id) from None
        if plan.min_micros is not None:
            data["max_tokens"] = max_tokens_for_hold(prices, plan, held.amount_micros, markup)
        streamed = bool(data.get("stream"))
        client_wants_usage = bool((data.get("stream_options") or {}).get("include_usage"))
        if streamed:
            data["stream_options"] = {**(data.get("stream_options") or {}), "include_usage": True}
        meta = {
            "request_id": request_id,
            "account_id": account_id,
            "key_id": key_id,
            "model": model,
            "held_micros": held.amount_micros,
            "streamed": streamed,
            "client_wants_usage": client_wants_usage,
        }
        data.setdefault("metadata", {})["gateway"] = meta
        self._inflight.add(meta)
        return data

    # ---- SETTLE -----------------------------------------------------------------------------------
    async def _settle(self, meta: dict, prompt_tokens: int, completion_tokens: int, reported_cost: object) -> int | None:
        """Price and settle the call: what the account was charged, or None if it was closed already (by the
        request path or the backstop)."""
        async with self._inflight.closing(meta["request_id"]) as still_open:
            if not still_open:
                return None
            return await self._settle_open(meta, prompt_tokens, completion_tokens, reported_cost)

    async def _settle_open(self, meta: dict, prompt_tokens: int, completion_tokens: int, reported_cost: object) -> int:
        rt = runtime()
        markup = rt.settings.user_price_markup_factor
        prices = prices_for(meta["model"]) or TokenPrices(Decimal(0), Decimal(0))
        charge = price_call(reported_cost, prices, prompt_tokens, completion_tokens, markup)
        if charge.cost_source != "litellm":
            log.warning("LiteLLM reported no cost for %s (%s); priced from the table", meta["request_id"], meta["model"])
        usage = ledger.Usage(
            request_id=meta["request_id"],
            account_id=meta["account_id"],
            key_id=meta["key_id"],
            model=meta["model"],
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            provider_cost_micros=charge.provider_cost_micros,
            user_price_micros=charge.user_price_micros,
            markup=str(markup),
            streamed=meta["streamed"],
            cost_source=charge.cost_source,
        )
        try:
            settlement = await asyncio.shield(ledger.settle(rt.db, usage))  # completes even if the client leaves
            charged = settlement.charged_micros
        except Exception as exc:  # noqa: BLE001 - the provider served the call: it is billed, now or from the spool
            if not isinstance(exc, INFRASTRUCTURE_ERRORS):
                log.exception("settle of %s refused by the ledger; spooled for an operator", meta["request_id"])
            await asyncio.shield(rt.spool.put_settle(usage))  # on disk before the response completes
            charged = min(usage.user_price_micros, meta["held_micros"])  # what the replay charges (the hold caps it)
        meta["charged_micros"] = charged
        self._inflight.done(meta["request_id"])
        return charged

    async def async_post_call_success_hook(self, data: dict, user_api_key_dict, response):  # noqa: ANN001
        meta = self._inflight.get(data)
        if meta is None or meta["streamed"]:
            return response
        usage = getattr(response, "usage", None)
        prompt = int(getattr(usage, "prompt_tokens", 0) or 0)
        completion = int(getattr(usage, "completion_tokens", 0) or 0)
        hidden = getattr(response, "_hidden_params", None) or {}
        try:
            await self._settle(meta, prompt, completion, hidden.get("response_cost"))
        except SpoolUnavailable:  # neither the database nor the spool took the charge: withhold the response
            log.critical("settle of %s lost: database and spool both unavailable", meta["request_id"], exc_info=True)
            raise errors.billing_unavailable(meta["request_id"]) from None
        return response

    async def async_post_call_streaming_iterator_hook(
        self, user_api_key_dict, response: Any, request_data: dict  # noqa: ANN001
    ) -> AsyncGenerator[Any, None]:
        meta = self._inflight.get(request_data)
        if meta is None:
            async for chunk in response:
                yield chunk
            return
        chunks: list[Any] = []
        settled = False
        try:
            async for chunk in response:
                usage = getattr(chunk, "usage", None)
                if usage is not None and getattr(usage, "completion_tokens", None) is not None and not settled:
                    reported = getattr(usage, "cost", None)  # LiteLLM's own cost of the stream
                    charged = await self._settle_stream(
                        meta, int(usage.prompt_tokens or 0), int(usage.completion_tokens or 0),
                        reported if reported else self._stream_cost(chunks + [chunk], request_data),
                    )
                    settled = True
                    if meta["client_wants_usage"]:
                        charged = charged if charged is not None else meta.get("charged_micros")
                        usage.cost = float(Decimal(charged or 0) / MICROS_PER_USD)  # what *they* pay
                    elif _carries_nothing_but_usage(chunk):
                        continue  # the client did not ask for a usage chunk: do not send one
                    else:
                        chunk.usage = None
                chunks.append(chunk)
                yield chunk
            if not settled:
                await self._settle_from_chunks(meta, chunks, request_data)
                settled = True
        finally:
            if not settled:  # the client left or the upstream failed mid-stream
                await asyncio.shield(self._close_interrupted_stream(meta, chunks, request_data))

    async def _settle_stream(self, meta: dict, prompt_tokens: int, completion_tokens: int, reported_cost: object) -> int | None:
        """`_settle` for a stream whose content is out already: a failure is logged, never sent as a chunk."""
        try:
            return await self._settle(meta, prompt_tokens, completion_tokens, reported_cost)
        except Exception:  # noqa: BLE001 - no internal error text may reach the client
            log.critical("settle of streamed %s lost: database and spool both unavailable", meta["request_id"], exc_info=True)
            return None

    @staticmethod
    def _stream_cost(chunks: list[Any], request_data: dict) -> object:
        try:
            built = litellm.stream_chunk_builder(chunks, messages=request_data.get("messages"))
            return litellm.completion_cost(completion_response=built) if built is not None else None
        except Exception:  # noqa: BLE001 - LiteLLM could not price it; price_call falls back to the table
            return None

    async def _settle_from_chunks(self, meta: dict, chunks: list[Any], request_data: dict) -> None:
        built = litellm.stream_chunk_builder(chunks, messages=request_data.get("messages")) if chunks else None
        usage = getattr(built, "usage", None)
        await self._settle_stream(
            meta,
            int(getattr(usage, "prompt_tokens", 0) or 0),
            int(getattr(usage, "completion_tokens", 0) or 0),
            self._stream_cost(chunks, request_data) if chunks else None,
        )

    async def _close_interrupted_stream(self, meta: dict, chunks: list[Any], request_data: dict) -> None:
        try:
            produced = any(getattr(c, "choices", None) for c in chunks)
            if produced:
                await self._settle_from_chunks(meta, chunks, request_data)
            else:
                await self._release(meta)
        except Exception:  # noqa: BLE001 - the background backstop or hold expiry will report it
            log.exception("could not close interrupted stream %s", meta["request_id"])

    # ---- RELEASE ----------------------------------------------------------------------------------
    async def async_post_call_failure_hook(self, request_data: dict, original_exception, user_api_key_dict, traceback_str=None):  # noqa: ANN001
        meta = self._inflight.get(request_data)
        if meta is not None:
            try:
                await self._release(meta)
            except SpoolUnavailable:
                log.exception("release of %s lost; the hold expires on its own", meta["request_id"])
        return None

    async def _release(self, meta: dict) -> bool:
        """Void the call's hold; False if it was closed already (by the request path or the backstop)."""
        async with self._inflight.closing(meta["request_id"]) as still_open:
            if not still_open:
                return False
            rt = runtime()
            try:
                await asyncio.shield(ledger.release(rt.db, meta["request_id"]))
            except INFRASTRUCTURE_ERRORS:
                await asyncio.shield(rt.spool.put_release(meta["request_id"]))
            self._inflight.done(meta["request_id"])
            return True

    # ---- HEADERS ----------------------------------------------------------------------------------
    async def async_post_call_response_headers_hook(self, data, user_api_key_dict, response, request_headers=None, litellm_call_info=None):  # noqa: ANN001
        meta = _tag(data)  # display only: a client can at most change its own response's headers
        if meta is None:
            return None
        headers = {name: "" for name in _HIDDEN_HEADERS}
        charged = meta.get("charged_micros")
        if charged is None:
            headers["x-litellm-response-cost"] = ""
            headers["x-gateway-credits-held"] = micros_to_credits(int(meta.get("held_micros") or 0))
        else:
            headers["x-litellm-response-cost"] = _usd_text(charged)
            headers["x-gateway-credits-charged"] = micros_to_credits(charged)
        return headers

    # ---- BACKSTOP (background, best-effort) -------------------------------------------------------
    async def async_log_success_event(self, kwargs, response_obj, start_time, end_time):  # noqa: ANN001
        meta = self._inflight.get(kwargs.get("litellm_params"))
        if meta is None:  # settled or released on the request path (the normal case)
            return
        slo = kwargs.get("standard_logging_object") or {}
        usage = getattr(response_obj, "usage", None)
        prompt = int(slo.get("prompt_tokens") or getattr(usage, "prompt_tokens", 0) or 0)
        completion = int(slo.get("completion_tokens") or getattr(usage, "completion_tokens", 0) or 0)
        try:
            if not (prompt or completion):
                await self._release(meta)
                return
            if await self._settle(meta, prompt, completion, slo.get("response_cost")) is not None:
                log.warning("settled %s from the background backstop", meta["request_id"])
        except Exception:  # noqa: BLE001
            log.exception("backstop settle failed for %s", meta["request_id"])

    async def async_log_failure_event(self, kwargs, response_obj, start_time, end_time):  # noqa: ANN001
        meta = self._inflight.get(kwargs.get("litellm_params"))
        if meta is None:
            return
        try:
            await self._release(meta)
        except Exception:  # noqa: BLE001
            log.exception("backstop release failed for %s", meta["request_id"])


proxy_handler_instance = BillingCallbacks()
