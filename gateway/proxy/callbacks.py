"""The billing callback LiteLLM runs around every call: hold before, settle (or release) on the request path.

- `async_pre_call_hook`: price the worst case, set max_tokens if the client did not, HOLD it (402 if the
  account cannot cover it, 503 if the database is unreachable, 400 for a model with no price).
- `async_post_call_success_hook` (plain responses) and the stream wrapper (streams): SETTLE before the
  client receives the end of the response.
- `async_post_call_failure_hook`: RELEASE. A client that leaves mid-stream pays for what was produced.
- `async_log_success_event`: LiteLLM's best-effort background callback, kept as an idempotent backstop
  (same request id) for a settle that did not happen on the request path. LiteLLM starts it while the
  request path is still settling, so the two take turns per call (`Inflight.closing`): whichever comes
  second finds the call closed and does nothing (no second database write per call). There is no failure
  backstop: LiteLLM logs a failure for each failed attempt, and its router retries the same request (a
  release there voided the hold of a call its retry then served: served, never billed; bench.chaos).
- Each hold, settle and release is counted, and each billed call logs one line (`gateway.proxy.call_metrics`).
- `async_post_call_response_headers_hook`: clients see what *they* pay, never provider cost or upstream URLs.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
import uuid
from collections.abc import AsyncGenerator
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import litellm
from litellm.integrations.custom_logger import CustomLogger
from litellm.proxy._types import UserAPIKeyAuth
from litellm.types.utils import CallTypesLiteral, LLMResponseTypes

from gateway import ledger
from gateway.core.billing import (
    HoldPlan,
    ReportedCost,
    insufficient_message,
    max_tokens_for_hold,
    plan_hold,
    price_call,
)
from gateway.core.money import MICROS_PER_USD, TokenPrices, micros_to_credits
from gateway.failures import is_transient
from gateway.ledger.spool import RELEASE, SETTLE, SpoolUnavailable
from gateway.proxy import call_metrics, errors
from gateway.proxy.inflight import Call, Inflight, tag, tagged
from gateway.proxy.pricing import count_prompt_tokens, prices_for
from gateway.proxy.runtime import runtime

if TYPE_CHECKING:
    from litellm.caching.dual_cache import DualCache

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


def _requested_max_tokens(data: dict[str, Any]) -> int | None:
    """The output budget per choice the client asked for (the larger, if it sent both names; the guard
    checked that each is a positive integer)."""
    values = [data[name] for name in ("max_tokens", "max_completion_tokens") if data.get(name) is not None]
    return max(values) if values else None


def plan_request(model: str, data: dict[str, Any], embedding: bool) -> tuple[TokenPrices, HoldPlan]:
    """The model's hold rates and what to hold for this request (400 for a model with no price). An x402
    call pays exactly this hold (gateway.proxy.x402_gate)."""
    prices = prices_for(model)
    if prices is None:
        raise errors.unpriced_model(model)
    settings = runtime().settings
    requested = None if embedding else _requested_max_tokens(data)
    prompt_tokens = count_prompt_tokens(model, data, embedding, settings.hold_tokens_per_image)
    choices = 1 if embedding else int(data.get("n") or 1)
    plan = plan_hold(
        prices, prompt_tokens, requested, settings.user_price_markup_factor, choices=choices, embedding=embedding
    )
    return prices, plan


def _carries_nothing_but_usage(chunk: Any) -> bool:
    return all(
        not getattr(c.delta, "content", None) and not getattr(c.delta, "tool_calls", None) and not c.finish_reason
        for c in getattr(chunk, "choices", None) or []
    )


def _usd_text(micros: int) -> str:
    return format(Decimal(micros) / MICROS_PER_USD, "f")


class BillingCallbacks(CustomLogger):
    def __init__(self) -> None:
        super().__init__()
        self._inflight = Inflight()

    # ---- HOLD -------------------------------------------------------------------------------------
    async def async_pre_call_hook(
        self, user_api_key_dict: UserAPIKeyAuth, cache: DualCache, data: dict[str, Any], call_type: CallTypesLiteral
    ) -> dict[str, Any]:
        request_id = uuid.uuid4().hex  # ours, never the client's x-litellm-call-id (replaying one must not be free)
        try:
            return await self._hold(user_api_key_dict, data, str(call_type), request_id)
        except errors.GatewayError:
            raise
        except Exception:
            log.exception("pre-call hook failed for %s", request_id)
            raise errors.internal_error(request_id) from None

    async def _hold(
        self, user_api_key_dict: UserAPIKeyAuth, data: dict[str, Any], call_type: str, request_id: str
    ) -> dict[str, Any]:
        account_id = (user_api_key_dict.metadata or {}).get("gateway_account_id")
        if account_id is None:
            raise errors.admin_key_refused()
        kind = str(getattr(call_type, "value", call_type))
        embedding = kind in EMBEDDING_CALLS
        if not embedding and kind not in CHAT_CALLS:
            raise errors.unsupported_call(kind)
        model = str(data.get("model") or "")
        prices, plan = plan_request(model, data, embedding)
        rt = runtime()
        markup = rt.settings.user_price_markup_factor
        key_id = user_api_key_dict.metadata.get("gateway_key_id")
        try:
            held = await asyncio.shield(
                ledger.hold(  # a client leaving cannot cut a money write in half
                    rt.db,
                    account_id,
                    request_id,
                    plan.amount_micros,
                    min_micros=plan.min_micros,
                    ttl_seconds=rt.settings.hold_ttl_seconds,
                    key_id=key_id,
                    model=model,
                )
            )
        except ledger.InsufficientCredit as exc:
            call_metrics.refused(request_id, account_id, key_id, model, "insufficient_credits")
            raise errors.insufficient_credits(insufficient_message(model, plan, exc, prices, markup)) from None
        except ledger.KeyLimitExceeded as exc:
            raise errors.key_limit_exceeded(str(exc)) from None
        except Exception as exc:  # noqa: BLE001 - sorted by is_transient
            if not is_transient(exc):  # refused permanently: nothing was held, our 500 names the request id
                call_metrics.refused_by_ledger(request_id, "hold", exc)
                raise errors.internal_error(request_id) from None
            # one line, no traceback: an outage would flood the log
            log.warning("hold of %s refused: billing database unreachable (%s)", request_id, type(exc).__name__)
            await self._void_unacknowledged_hold(request_id)
            call_metrics.refused(request_id, account_id, key_id, model, "billing_unavailable")
            raise errors.billing_unavailable(request_id) from None
        if plan.min_micros is not None:
            data["max_tokens"] = max_tokens_for_hold(prices, plan, held.amount_micros, markup)
        streamed = bool(data.get("stream"))
        client_wants_usage = bool((data.get("stream_options") or {}).get("include_usage"))
        if streamed:
            data["stream_options"] = {**(data.get("stream_options") or {}), "include_usage": True}
        call = Call(request_id, account_id, key_id, model, held.amount_micros, streamed, client_wants_usage)
        tag(data, call)
        self._inflight.add(call)
        call_metrics.held()
        return data

    @staticmethod
    async def _void_unacknowledged_hold(request_id: str) -> None:
        """A hold whose statement met a dead connection may have committed all the same (the answer was lost,
        not the write). The call is refused either way, so a release is spooled: it voids the hold if it
        exists and does nothing if it does not. Without it the credit would stay held until the sweeper."""
        try:
            await asyncio.shield(runtime().spool.put_release(request_id))
        except SpoolUnavailable:
            log.error("hold of %s may be left pending until it expires: the spool is unavailable", request_id)

    # ---- SETTLE -----------------------------------------------------------------------------------
    async def _settle(
        self, call: Call, prompt_tokens: int, completion_tokens: int, reported_cost: ReportedCost
    ) -> int | None:
        """Price and settle the call: what the account was charged, or None if it was closed already (by the
        request path or the backstop)."""
        async with self._inflight.closing(call.request_id) as still_open:
            if still_open is None:
                return None
            return await self._settle_open(call, prompt_tokens, completion_tokens, reported_cost)

    async def _settle_open(
        self, call: Call, prompt_tokens: int, completion_tokens: int, reported_cost: ReportedCost
    ) -> int:
        rt = runtime()
        markup = rt.settings.user_price_markup_factor
        prices = prices_for(call.model) or TokenPrices(Decimal(0), Decimal(0))
        charge = price_call(reported_cost, prices, prompt_tokens, completion_tokens, markup)
        if charge.cost_source != "litellm":
            log.warning("LiteLLM reported no cost for %s (%s); priced from the table", call.request_id, call.model)
        usage = ledger.Usage(
            request_id=call.request_id,
            account_id=call.account_id,
            key_id=call.key_id,
            model=call.model,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            provider_cost_micros=charge.provider_cost_micros,
            user_price_micros=charge.user_price_micros,
            markup=str(markup),
            streamed=call.streamed,
            cost_source=charge.cost_source,
        )
        started = time.perf_counter()
        spooled = False
        try:
            settlement = await asyncio.shield(ledger.settle(rt.db, usage))  # completes even if the client leaves
            charged = settlement.charged_micros
        except Exception as exc:  # noqa: BLE001 - sorted by is_transient
            if not is_transient(exc):  # never spooled: set aside, and the client gets our 500
                await self._refused(SETTLE, call, dataclasses.asdict(usage), exc)
                raise errors.internal_error(call.request_id) from None
            await asyncio.shield(rt.spool.put_settle(usage))  # on disk before the response completes
            charged = min(usage.user_price_micros, call.held_micros)  # what the replay charges (the hold caps it)
            spooled = True
        call.charged_micros = charged
        self._inflight.done(call.request_id)
        call_metrics.settled(
            call, usage.provider_cost_micros, usage.user_price_micros, time.perf_counter() - started, spooled
        )
        return charged

    async def async_post_call_success_hook(
        self, data: dict[str, Any], user_api_key_dict: UserAPIKeyAuth, response: LLMResponseTypes
    ) -> Any:
        call = self._inflight.get(data)
        if call is None or call.streamed:
            return response
        usage = getattr(response, "usage", None)
        prompt = int(getattr(usage, "prompt_tokens", 0) or 0)
        completion = int(getattr(usage, "completion_tokens", 0) or 0)
        hidden = getattr(response, "_hidden_params", None) or {}
        try:
            await self._settle(call, prompt, completion, hidden.get("response_cost"))
        except SpoolUnavailable:  # neither the database nor the spool took the charge: withhold the response
            log.critical("settle of %s lost: database and spool both unavailable", call.request_id, exc_info=True)
            raise errors.billing_unavailable(call.request_id) from None
        return response

    async def async_post_call_streaming_iterator_hook(
        self, user_api_key_dict: UserAPIKeyAuth, response: Any, request_data: dict[str, Any]
    ) -> AsyncGenerator[Any, None]:
        call = self._inflight.get(request_data)
        if call is None:
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
                        call,
                        int(usage.prompt_tokens or 0),
                        int(usage.completion_tokens or 0),
                        reported if reported else self._stream_cost([*chunks, chunk], request_data),
                    )
                    settled = True
                    if call.client_wants_usage:
                        charged = charged if charged is not None else call.charged_micros
                        usage.cost = float(Decimal(charged or 0) / MICROS_PER_USD)  # what *they* pay
                    elif _carries_nothing_but_usage(chunk):
                        continue  # the client did not ask for a usage chunk: do not send one
                    else:
                        chunk.usage = None
                chunks.append(chunk)
                yield chunk
            if not settled:
                await self._settle_from_chunks(call, chunks, request_data)
                settled = True
        finally:
            if not settled:  # the client left or the upstream failed mid-stream
                await asyncio.shield(self._close_interrupted_stream(call, chunks, request_data))

    async def _settle_stream(
        self, call: Call, prompt_tokens: int, completion_tokens: int, reported_cost: ReportedCost
    ) -> int | None:
        """`_settle` for a stream whose content is out already: a failure is logged, never sent as a chunk."""
        try:
            return await self._settle(call, prompt_tokens, completion_tokens, reported_cost)
        except errors.GatewayError:  # refused permanently by the ledger: logged, counted and set aside already
            return None
        except Exception:
            log.critical(
                "settle of streamed %s lost: database and spool both unavailable", call.request_id, exc_info=True
            )
            return None

    @staticmethod
    def _stream_cost(chunks: list[Any], request_data: dict[str, Any]) -> ReportedCost:
        try:
            built = litellm.stream_chunk_builder(chunks, messages=request_data.get("messages"))
            return litellm.completion_cost(completion_response=built) if built is not None else None
        except Exception:  # noqa: BLE001 - LiteLLM could not price it; price_call falls back to the table
            return None

    async def _settle_from_chunks(self, call: Call, chunks: list[Any], request_data: dict[str, Any]) -> None:
        built = litellm.stream_chunk_builder(chunks, messages=request_data.get("messages")) if chunks else None
        usage = getattr(built, "usage", None)
        await self._settle_stream(
            call,
            int(getattr(usage, "prompt_tokens", 0) or 0),
            int(getattr(usage, "completion_tokens", 0) or 0),
            self._stream_cost(chunks, request_data) if chunks else None,
        )

    async def _close_interrupted_stream(self, call: Call, chunks: list[Any], request_data: dict[str, Any]) -> None:
        try:
            produced = any(getattr(c, "choices", None) for c in chunks)
            if produced:
                await self._settle_from_chunks(call, chunks, request_data)
            else:
                await self._release(call)
        except Exception:
            log.exception("could not close interrupted stream %s", call.request_id)

    # ---- RELEASE ----------------------------------------------------------------------------------
    async def async_post_call_failure_hook(
        self,
        request_data: dict[str, Any],
        original_exception: Exception,
        user_api_key_dict: UserAPIKeyAuth,
        traceback_str: str | None = None,
    ) -> None:
        call = self._inflight.get(request_data)
        if call is not None:
            try:
                await self._release(call)
            except SpoolUnavailable:
                log.exception("release of %s lost; the hold expires on its own", call.request_id)
        return None

    async def _release(self, call: Call) -> bool:
        """Void the call's hold; False if it was closed already (by the request path or the backstop)."""
        async with self._inflight.closing(call.request_id) as still_open:
            if still_open is None:
                return False
            rt = runtime()
            spooled = False
            try:
                await asyncio.shield(ledger.release(rt.db, call.request_id))
            except Exception as exc:  # noqa: BLE001 - sorted by is_transient
                if not is_transient(exc):  # never spooled: set aside; the sweeper expires the hold
                    await self._refused(RELEASE, call, {"account_id": call.account_id}, exc)
                    return True
                await asyncio.shield(rt.spool.put_release(call.request_id))
                spooled = True
            self._inflight.done(call.request_id)
            call_metrics.released(call, spooled)
            return True

    async def _refused(self, op: str, call: Call, payload: dict[str, Any], exc: Exception) -> None:
        """A settle or release the ledger refused permanently (an integrity, data or programming error):
        never spooled, never retried. Logged with the request id and counted, then set aside in the spool
        for `gateway reconcile`; the call is closed here, its hold left for the sweeper."""
        call_metrics.refused_by_ledger(call.request_id, op, exc, call)
        self._inflight.done(call.request_id)
        try:
            await asyncio.shield(runtime().spool.put_refused(op, call.request_id, payload, exc))
        except SpoolUnavailable:
            log.error("%s of %s refused by the ledger; the spool could not record it", op, call.request_id)

    # ---- HEADERS ----------------------------------------------------------------------------------
    async def async_post_call_response_headers_hook(
        self,
        data: dict[str, Any],
        user_api_key_dict: UserAPIKeyAuth,
        response: object,
        request_headers: dict[str, str] | None = None,
        litellm_call_info: dict[str, object] | None = None,
    ) -> dict[str, str] | None:
        call = tagged(data)  # display only: a client can at most change its own response's headers
        if call is None:
            return None
        headers = {name: "" for name in _HIDDEN_HEADERS}
        headers["x-gateway-request-id"] = call.request_id  # look the call up: GET /api/v1/generation?id=
        charged = call.charged_micros
        if charged is None:
            headers["x-litellm-response-cost"] = ""
            headers["x-gateway-credits-held"] = micros_to_credits(call.held_micros)
        else:
            headers["x-litellm-response-cost"] = _usd_text(charged)
            headers["x-gateway-credits-charged"] = micros_to_credits(charged)
        return headers

    # ---- BACKSTOP (background, best-effort) -------------------------------------------------------
    async def async_log_success_event(
        self, kwargs: dict[str, Any], response_obj: Any, start_time: datetime, end_time: datetime
    ) -> None:
        call = self._inflight.get(kwargs.get("litellm_params"))
        if call is None:  # settled or released on the request path (the normal case)
            return
        slo = kwargs.get("standard_logging_object") or {}
        usage = getattr(response_obj, "usage", None)
        prompt = int(slo.get("prompt_tokens") or getattr(usage, "prompt_tokens", 0) or 0)
        completion = int(slo.get("completion_tokens") or getattr(usage, "completion_tokens", 0) or 0)
        try:
            if not (prompt or completion):
                await self._release(call)
                return
            if await self._settle(call, prompt, completion, slo.get("response_cost")) is not None:
                log.warning("settled %s from the background backstop", call.request_id)
        except Exception:
            log.exception("backstop settle failed for %s", call.request_id)


proxy_handler_instance = BillingCallbacks()
