"""The billing callback LiteLLM runs around every call: hold before, settle (or release) on the request path.

- `async_pre_call_hook`: price the worst case, set max_tokens if the client did not, HOLD it (402 if the
  account cannot cover it, 503 if the database is unreachable, 400 for a model with no price).
- `async_post_call_success_hook` (plain responses) and the stream wrapper (streams): SETTLE before the
  client receives the end of the response.
- `async_post_call_failure_hook`: RELEASE. A client that leaves mid-stream pays for what was produced.
  A call the server cancels (a shutdown's grace ran out) is released by `release_cut` (from the guard).
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
from gateway.proxy import admission, apis, call_metrics, errors
from gateway.proxy.inflight import Call, Inflight, note_held, tag, tagged
from gateway.proxy.pricing import (
    count_billable,
    count_prompt_tokens,
    count_text,
    embedding_input_tokens,
    prices_for,
    routes_for,
)
from gateway.proxy.runtime import runtime
from gateway.proxy.usage import StreamUsage, reported_usage

if TYPE_CHECKING:
    from litellm.caching.dual_cache import DualCache

log = logging.getLogger("gateway.proxy.billing")

# LiteLLM's call type -> the billed route it serves
CALL_KINDS = {
    "completion": admission.CHAT,
    "acompletion": admission.CHAT,
    "embeddings": admission.EMBEDDINGS,
    "aembedding": admission.EMBEDDINGS,
    "responses": admission.RESPONSES,
    "aresponses": admission.RESPONSES,
    "anthropic_messages": admission.MESSAGES,
    "text_completion": admission.COMPLETIONS,
    "atext_completion": admission.COMPLETIONS,
}
# routes whose streams report usage only when asked (stream_options.include_usage)
USAGE_ON_REQUEST = frozenset({admission.CHAT, admission.COMPLETIONS})
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


def plan_request(model: str, data: dict[str, Any], kind: str) -> tuple[TokenPrices, HoldPlan]:
    """The model's hold rates and what to hold for this request on route `kind` (400 for a model with no price
    or one that does not serve the route). An x402 call pays exactly this hold (gateway.proxy.x402_gate)."""
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
    if prices.max_input_tokens and longest > prices.max_input_tokens:  # refused before the provider is called
        raise errors.prompt_too_long(model, longest, prices.max_input_tokens)
    if kind in (admission.CHAT, admission.EMBEDDINGS):
        embedding = kind == admission.EMBEDDINGS
        requested = None if embedding else _requested_max_tokens(data)
        choices = 1 if embedding else int(data.get("n") or 1)
        return prices, plan_hold(prices, prompt_tokens, requested, markup, choices=choices, embedding=embedding)
    plan = plan_hold(
        prices, prompt_tokens, wanted.output, markup, choices=wanted.answers, min_output_tokens=wanted.min_output
    )
    return prices, plan


async def _upstream_errors_hidden(stream: Any, request_id: str) -> AsyncGenerator[Any, None]:
    """The provider's chunks; a provider failure mid-stream is logged and re-raised as our error, whose words
    LiteLLM sends as the stream's last event (the provider's text names the operator's account)."""
    try:
        async for chunk in stream:
            yield chunk
    except errors.GatewayError:
        raise
    except Exception as exc:
        log.warning("upstream failed mid-stream for %s: %s", request_id, str(exc)[:2_000])
        status = getattr(exc, "status_code", 502)
        raise errors.upstream_error(status if isinstance(status, int) and status >= 400 else 502, request_id) from exc


def _litellm_cost(request_data: dict[str, Any], result: Any) -> ReportedCost:
    """LiteLLM's cost of a result that does not carry one (an Anthropic Messages dict, a Responses event),
    from the call's own logging object (the deployment's prices); None if it cannot price it."""
    logging_obj = request_data.get("litellm_logging_obj")
    if logging_obj is None or result is None:
        return None
    try:
        cost: ReportedCost = logging_obj.response_cost_calculator(result=result)
        return cost
    except Exception:  # noqa: BLE001 - price_call falls back to the price table
        return None


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
        # ours (the guard's, also sent as x-gateway-request-id), never the client's x-litellm-call-id: replaying
        # one must not be free
        request_id = (user_api_key_dict.metadata or {}).get("gateway_request_id") or uuid.uuid4().hex
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
        call_kind = str(getattr(call_type, "value", call_type))
        kind = CALL_KINDS.get(call_kind)
        if kind is None:
            raise errors.unsupported_call(call_kind)
        model = str(data.get("model") or "")
        prices, plan = plan_request(model, data, kind)
        rt = runtime()
        markup = rt.settings.user_price_markup_factor
        key_id = user_api_key_dict.metadata.get("gateway_key_id")
        try:
            held = await asyncio.shield(
                rt.ledger.hold(  # a client leaving cannot cut a money write in half
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
            data[apis.OUTPUT_PARAM[kind]] = max_tokens_for_hold(prices, plan, held.amount_micros, markup)
        elif kind == admission.COMPLETIONS:
            data["max_tokens"] = plan.max_output_tokens  # the API's default, sent: a chat model has none
        streamed = bool(data.get("stream"))
        client_wants_usage = bool((data.get("stream_options") or {}).get("include_usage"))
        if streamed and kind in USAGE_ON_REQUEST:
            data["stream_options"] = {**(data.get("stream_options") or {}), "include_usage": True}
        call = Call(
            request_id,
            account_id,
            key_id,
            model,
            held.amount_micros,
            streamed,
            client_wants_usage,
            prices,
            markup,
            kind,
            plan.prompt_tokens,
        )
        tag(data, call)
        self._inflight.add(call)
        note_held(call)
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
        markup = call.markup
        if prices_for(call.model) not in (None, call.prices):
            # a reload changed this model's prices while the call ran: LiteLLM may price it at the new ones
            # (a deployment with a fixed model_info.id keeps its id), so it is priced at the rates it was held at
            reported_cost = None
        charge = price_call(reported_cost, call.prices, prompt_tokens, completion_tokens, markup)
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
            route=call.route,
        )
        started = time.perf_counter()
        spooled = False
        try:
            settlement = await asyncio.shield(rt.ledger.settle(usage))  # completes even if the client leaves
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
        if call is None:
            return response
        prompt, completion = reported_usage(response)
        if call.streamed and not (prompt or completion):  # a stream: settled by the iterator hook
            return response  # (a "stream" answered whole, as LiteLLM's mock answers /v1/messages, is settled here)
        hidden = getattr(response, "_hidden_params", None) or {}
        cost = hidden.get("response_cost")
        try:
            await self._settle(call, prompt, completion, cost if cost is not None else _litellm_cost(data, response))
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
        if call.route != admission.CHAT:
            async for chunk in self._api_stream(call, response, request_data):
                yield chunk
            return
        chunks: list[Any] = []
        settled = False
        try:
            async for chunk in _upstream_errors_hidden(response, call.request_id):
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

    async def _api_stream(self, call: Call, response: Any, request_data: dict[str, Any]) -> AsyncGenerator[Any, None]:
        """A Responses, Messages or completions stream: settled when the chunk carrying its final usage comes
        by, before that chunk goes out (`gateway.proxy.usage` finds it in each API's events). A stream that
        ends without it, or that the client leaves, is charged for what it produced, or released."""
        seen = StreamUsage()
        text: list[str] = []
        settled = False
        try:
            async for chunk in _upstream_errors_hidden(response, call.request_id):
                if seen.feed(chunk, text) and not settled:
                    settled = True
                    await self._settle_stream(
                        call, seen.prompt, seen.completion, seen.cost or _litellm_cost(request_data, seen.priced)
                    )
                    if call.route in USAGE_ON_REQUEST and not call.client_wants_usage:
                        chunk.usage = None  # we asked for it, the client did not
                yield chunk
        finally:
            if not settled:  # cut by the client, or the upstream ended without its usage
                await asyncio.shield(self._close_unreported_stream(call, seen, text))

    async def _close_unreported_stream(self, call: Call, seen: StreamUsage, text: list[str]) -> None:
        """Charge what the stream produced (its text counted, the prompt as the hold bounded it unless the
        provider reported it), or release the hold if it produced nothing."""
        try:
            if not seen.produced:
                await self._release(call)
                return
            prompt = seen.prompt or call.prompt_tokens
            completion = max(seen.completion, count_text(call.model, "".join(text)))
            await self._settle_stream(call, prompt, completion, None)
        except Exception:
            log.exception("could not close interrupted stream %s", call.request_id)

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
                await asyncio.shield(rt.ledger.release(call.request_id))
            except Exception as exc:  # noqa: BLE001 - sorted by is_transient
                if not is_transient(exc):  # never spooled: set aside; the sweeper expires the hold
                    await self._refused(RELEASE, call, {"account_id": call.account_id}, exc)
                    return True
                await asyncio.shield(rt.spool.put_release(call.request_id))
                spooled = True
            self._inflight.done(call.request_id)
            call_metrics.released(call, spooled)
            return True

    async def release_cut(self, calls: list[Call]) -> None:
        """Release the calls of a request the server cancelled (a shutdown's grace ran out) that nothing
        settled: a stream that produced output was settled by its own wrapper; the others charge nothing."""
        for call in calls:
            try:
                if await self._release(call):
                    log.warning("released %s: the proxy stopped before it finished", call.request_id)
            except Exception:
                log.exception("release of cut call %s failed; its hold expires on its own", call.request_id)

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
