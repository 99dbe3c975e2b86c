"""One billed call's money on the request path: HOLD before the provider is called, then SETTLE what it
used or RELEASE the hold, each through the ledger, with its failure classes decided here.

- A hold the account cannot cover is 402; one the database refused permanently is our 500 (nothing held);
  one that met an unreachable database is 503, and a release is spooled in case its answer was lost after
  the write committed.
- A settle the database cannot take now (transient) is spooled on disk before the response completes; one it
  refused permanently is set aside in the spool's journal for `gateway reconcile`, never retried, and the
  client gets our 500. A release likewise (its hold is then left for the sweeper).
- Each call is settled or released once per process: `Inflight.closing` makes the request path and LiteLLM's
  background callback take turns, and whichever comes second finds the call closed.

The LiteLLM hook surface that calls this is gateway.proxy.callbacks; the streams' end is gateway.proxy.streams.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from typing import Any

from gateway import ledger
from gateway.core.billing import ReportedCost, insufficient_message, max_tokens_for_hold, price_call
from gateway.failures import is_transient
from gateway.ledger.spool import RELEASE, SETTLE, SpoolUnavailable
from gateway.proxy import admission, apis, call_metrics, errors
from gateway.proxy.inflight import Call, Inflight, note_held, tag
from gateway.proxy.planning import Plan
from gateway.proxy.pricing import prices_for
from gateway.proxy.runtime import runtime

log = logging.getLogger("gateway.proxy.billing")

# routes whose streams report usage only when asked (stream_options.include_usage)
USAGE_ON_REQUEST = frozenset({admission.CHAT, admission.COMPLETIONS})


class Billing:
    """The holds this process opened and has not closed yet, and the operations that open and close them."""

    def __init__(self) -> None:
        self.inflight = Inflight()

    # ---- HOLD -------------------------------------------------------------------------------------
    async def hold(
        self, plan: Plan, data: dict[str, Any], account_id: int, key_id: int | None, request_id: str
    ) -> Call:
        """Hold `plan` for the call, then set the output budget the provider is asked for (what the hold
        covers, when the client set none) and ask a stream for its usage."""
        rt = runtime()
        model, kind, hold = plan.model, plan.kind, plan.hold
        try:
            held = await asyncio.shield(
                rt.ledger.hold(  # a client leaving cannot cut a money write in half
                    account_id,
                    request_id,
                    hold.amount_micros,
                    min_micros=hold.min_micros,
                    ttl_seconds=rt.settings.hold_ttl_seconds,
                    key_id=key_id,
                    model=model,
                )
            )
        except ledger.InsufficientCredit as exc:
            call_metrics.refused(request_id, account_id, key_id, model, "insufficient_credits")
            message = insufficient_message(model, hold, exc, plan.prices, plan.markup)
            raise errors.insufficient_credits(message) from None
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
        if hold.min_micros is not None:
            data[apis.OUTPUT_PARAM[kind]] = max_tokens_for_hold(plan.prices, hold, held.amount_micros, plan.markup)
        elif kind == admission.COMPLETIONS:
            data["max_tokens"] = hold.max_output_tokens  # the API's default, sent: a chat model has none
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
            plan.prices,
            plan.markup,
            kind,
            hold.prompt_tokens,
        )
        tag(data, call)
        self.inflight.add(call)
        note_held(call)
        call_metrics.held()
        return call

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
    async def settle(
        self, call: Call, prompt_tokens: int, completion_tokens: int, reported_cost: ReportedCost
    ) -> int | None:
        """Price and settle the call: what the account was charged, or None if it was closed already (by the
        request path or the backstop). Raises SpoolUnavailable when neither the database nor the spool took
        the charge, and our 500 when the ledger refused it permanently."""
        async with self.inflight.closing(call.request_id) as still_open:
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
        self.inflight.done(call.request_id)
        call_metrics.settled(
            call, usage.provider_cost_micros, usage.user_price_micros, time.perf_counter() - started, spooled
        )
        return charged

    async def settle_stream(
        self, call: Call, prompt_tokens: int, completion_tokens: int, reported_cost: ReportedCost
    ) -> int | None:
        """`settle` for a stream whose content is out already: a failure is logged, never sent as a chunk."""
        try:
            return await self.settle(call, prompt_tokens, completion_tokens, reported_cost)
        except errors.GatewayError:  # refused permanently by the ledger: logged, counted and set aside already
            return None
        except Exception:
            log.critical(
                "settle of streamed %s lost: database and spool both unavailable", call.request_id, exc_info=True
            )
            return None

    # ---- RELEASE ----------------------------------------------------------------------------------
    async def release(self, call: Call) -> bool:
        """Void the call's hold; False if it was closed already (by the request path or the backstop)."""
        async with self.inflight.closing(call.request_id) as still_open:
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
            self.inflight.done(call.request_id)
            call_metrics.released(call, spooled)
            return True

    async def release_cut(self, calls: list[Call]) -> None:
        """Release the calls of a request the server cancelled (a shutdown's grace ran out) that nothing
        settled: a stream that produced output was settled by its own wrapper; the others charge nothing."""
        for call in calls:
            try:
                if await self.release(call):
                    log.warning("released %s: the proxy stopped before it finished", call.request_id)
            except Exception:
                log.exception("release of cut call %s failed; its hold expires on its own", call.request_id)

    async def _refused(self, op: str, call: Call, payload: dict[str, Any], exc: Exception) -> None:
        """A settle or release the ledger refused permanently (an integrity, data or programming error):
        never spooled, never retried. Logged with the request id and counted, then set aside in the spool
        for `gateway reconcile`; the call is closed here, its hold left for the sweeper."""
        call_metrics.refused_by_ledger(call.request_id, op, exc, call)
        self.inflight.done(call.request_id)
        try:
            await asyncio.shield(runtime().spool.put_refused(op, call.request_id, payload, exc))
        except SpoolUnavailable:
            log.error("%s of %s refused by the ledger; the spool could not record it", op, call.request_id)
