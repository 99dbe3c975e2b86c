"""The billing callback LiteLLM runs around every call: its hook surface, each hook a few lines that hand the
call to gateway.proxy.billing (hold, settle, release) and gateway.proxy.streams (a stream's end).

- `async_pre_call_hook`: plan the worst case (gateway.proxy.planning; an x402 call brings the plan it paid),
  HOLD it (402 if the account cannot cover it, 503 if the database is unreachable, 400 for a model with no
  price), and set max_tokens if the client did not.
- `async_post_call_success_hook` (plain responses) and the stream wrapper (streams): SETTLE before the
  client receives the end of the response.
- `async_post_call_failure_hook`: RELEASE. A client that leaves mid-stream pays for what was produced.
  A call the server cancels (a shutdown's grace ran out) is released by the guard (`Billing.release_cut`).
- `async_log_success_event`: LiteLLM's best-effort background callback, kept as an idempotent backstop
  (same request id) for a settle that did not happen on the request path. LiteLLM starts it while the
  request path is still settling, so the two take turns per call (`Inflight.closing`): whichever comes
  second finds the call closed and does nothing (no second database write per call). There is no failure
  backstop: LiteLLM logs a failure for each failed attempt, and its router retries the same request (a
  release there voided the hold of a call its retry then served: served, never billed; bench.chaos).
What a client is shown of the call's cost (response headers) is set by the guard (gateway.proxy.exposure).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncGenerator
from datetime import datetime
from typing import TYPE_CHECKING, Any

from litellm.integrations.custom_logger import CustomLogger
from litellm.proxy._types import UserAPIKeyAuth
from litellm.types.utils import CallTypesLiteral, LLMResponseTypes

from gateway.ledger.spool import SpoolUnavailable
from gateway.proxy import admission, errors
from gateway.proxy.billing import Billing
from gateway.proxy.planning import Plan, plan_request
from gateway.proxy.streams import settled_stream
from gateway.proxy.usage import litellm_cost, reported_usage

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


class BillingCallbacks(CustomLogger):
    def __init__(self) -> None:
        super().__init__()
        self.billing = Billing()

    # ---- HOLD -------------------------------------------------------------------------------------
    async def async_pre_call_hook(
        self, user_api_key_dict: UserAPIKeyAuth, cache: DualCache, data: dict[str, Any], call_type: CallTypesLiteral
    ) -> dict[str, Any]:
        meta = user_api_key_dict.metadata or {}
        # ours (the guard's, also sent as x-gateway-request-id), never the client's x-litellm-call-id: replaying
        # one must not be free
        request_id = meta.get("gateway_request_id") or uuid.uuid4().hex
        try:
            account_id = meta.get("gateway_account_id")
            if account_id is None:
                raise errors.admin_key_refused()
            call_kind = str(getattr(call_type, "value", call_type))
            kind = CALL_KINDS.get(call_kind)
            if kind is None:
                raise errors.unsupported_call(call_kind)
            model = str(data.get("model") or "")
            paid_for = meta.get("gateway_plan")  # an x402 call's: set by our custom_auth, never by a client
            if isinstance(paid_for, Plan) and paid_for.model == model and paid_for.kind == kind:
                plan = paid_for
            else:
                plan = plan_request(model, data, kind)
            await self.billing.hold(plan, data, account_id, meta.get("gateway_key_id"), request_id)
        except errors.GatewayError:
            raise
        except Exception:
            log.exception("pre-call hook failed for %s", request_id)
            raise errors.internal_error(request_id) from None
        return data

    # ---- SETTLE -----------------------------------------------------------------------------------
    async def async_post_call_success_hook(
        self, data: dict[str, Any], user_api_key_dict: UserAPIKeyAuth, response: LLMResponseTypes
    ) -> Any:
        call = self.billing.inflight.get(data)
        if call is None:
            return response
        prompt, completion = reported_usage(response)
        if call.streamed and not (prompt or completion):  # a stream: settled by the iterator hook
            return response  # (a "stream" answered whole, as LiteLLM's mock answers /v1/messages, is settled here)
        hidden = getattr(response, "_hidden_params", None) or {}
        cost = hidden.get("response_cost")
        try:
            await self.billing.settle(
                call, prompt, completion, cost if cost is not None else litellm_cost(data, response)
            )
        except SpoolUnavailable:  # neither the database nor the spool took the charge: withhold the response
            log.critical("settle of %s lost: database and spool both unavailable", call.request_id, exc_info=True)
            raise errors.billing_unavailable(call.request_id) from None
        return response

    def async_post_call_streaming_iterator_hook(
        self, user_api_key_dict: UserAPIKeyAuth, response: Any, request_data: dict[str, Any]
    ) -> AsyncGenerator[Any, None]:
        """The stream settled on its way out: LiteLLM iterates what this returns, so it returns the stream
        itself, not a generator of its own around it (every layer costs every chunk a hop)."""
        call = self.billing.inflight.get(request_data)
        return response if call is None else settled_stream(self.billing, call, response, request_data)

    # ---- RELEASE ----------------------------------------------------------------------------------
    async def async_post_call_failure_hook(
        self,
        request_data: dict[str, Any],
        original_exception: Exception,
        user_api_key_dict: UserAPIKeyAuth,
        traceback_str: str | None = None,
    ) -> None:
        call = self.billing.inflight.get(request_data)
        if call is not None:
            try:
                await self.billing.release(call)
            except SpoolUnavailable:
                log.exception("release of %s lost; the hold expires on its own", call.request_id)
        return None

    # ---- BACKSTOP (background, best-effort) -------------------------------------------------------
    async def async_log_success_event(
        self, kwargs: dict[str, Any], response_obj: Any, start_time: datetime, end_time: datetime
    ) -> None:
        call = self.billing.inflight.get(kwargs.get("litellm_params"))
        if call is None:  # settled or released on the request path (the normal case)
            return
        slo = kwargs.get("standard_logging_object") or {}
        usage = getattr(response_obj, "usage", None)
        prompt = int(slo.get("prompt_tokens") or getattr(usage, "prompt_tokens", 0) or 0)
        completion = int(slo.get("completion_tokens") or getattr(usage, "completion_tokens", 0) or 0)
        try:
            if not (prompt or completion):
                await self.billing.release(call)
                return
            if await self.billing.settle(call, prompt, completion, slo.get("response_cost")) is not None:
                log.warning("settled %s from the background backstop", call.request_id)
        except Exception:
            log.exception("backstop settle failed for %s", call.request_id)


proxy_handler_instance = BillingCallbacks()
