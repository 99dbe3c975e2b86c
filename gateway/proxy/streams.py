"""The end of a billed stream: settled when the chunk carrying its final usage comes by, before that chunk
goes out; a stream that ends without it, or that the client leaves, is charged for what it produced (its
text counted), or released if it produced nothing. A provider failure mid-stream is logged and re-raised in
our words.

Chat streams carry LiteLLM's `ModelResponseStream` chunks (usage in the last one, which the hold asked for);
Responses, Messages and completions streams carry each API's own events (gateway.proxy.usage reads them).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from decimal import Decimal
from typing import Any

import litellm

from gateway.core.billing import ReportedCost
from gateway.core.money import MICROS_PER_USD
from gateway.proxy import admission, errors
from gateway.proxy.billing import USAGE_ON_REQUEST, Billing
from gateway.proxy.inflight import Call
from gateway.proxy.pricing import count_text
from gateway.proxy.usage import StreamUsage, litellm_cost

log = logging.getLogger("gateway.proxy.billing")


def settled_stream(
    billing: Billing, call: Call, response: AsyncIterator[Any], request_data: dict[str, Any]
) -> AsyncGenerator[Any, None]:
    """The stream `response` of `call`, settled on its way out."""
    if call.route == admission.CHAT:
        return _chat_stream(billing, call, response, request_data)
    return _api_stream(billing, call, response, request_data)


def _upstream_failed(exc: Exception, request_id: str) -> Exception:
    """A provider failure mid-stream, logged, as our error: LiteLLM sends its words as the stream's last event
    (the provider's text names the operator's account). Our own errors pass as they are."""
    if isinstance(exc, errors.GatewayError):
        return exc
    log.warning("upstream failed mid-stream for %s: %s", request_id, str(exc)[:2_000])
    status = getattr(exc, "status_code", 502)
    return errors.upstream_error(status if isinstance(status, int) and status >= 400 else 502, request_id)


_END = object()  # the provider's stream ended


async def _read(next_chunk: Callable[[], Awaitable[Any]], request_id: str) -> Any:
    """The provider's next chunk, or `_END`; a provider failure is raised in our words (`_upstream_failed`)."""
    try:
        return await next_chunk()
    except StopAsyncIteration:
        return _END
    except Exception as exc:
        raise _upstream_failed(exc, request_id) from exc


def _carries_nothing_but_usage(chunk: Any) -> bool:
    return all(
        not getattr(c.delta, "content", None) and not getattr(c.delta, "tool_calls", None) and not c.finish_reason
        for c in getattr(chunk, "choices", None) or []
    )


async def _chat_stream(
    billing: Billing, call: Call, response: AsyncIterator[Any], request_data: dict[str, Any]
) -> AsyncGenerator[Any, None]:
    chunks: list[Any] = []
    settled = False
    next_chunk = response.__aiter__().__anext__  # read here, not through a generator of ours: a hop per chunk
    try:
        while (chunk := await _read(next_chunk, call.request_id)) is not _END:
            usage = getattr(chunk, "usage", None)
            if usage is not None and getattr(usage, "completion_tokens", None) is not None and not settled:
                reported = getattr(usage, "cost", None)  # LiteLLM's own cost of the stream
                charged = await billing.settle_stream(
                    call,
                    int(usage.prompt_tokens or 0),
                    int(usage.completion_tokens or 0),
                    reported if reported else _stream_cost([*chunks, chunk], request_data),
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
            await _settle_from_chunks(billing, call, chunks, request_data)
            settled = True
    finally:
        if not settled:  # the client left or the upstream failed mid-stream
            await asyncio.shield(_close_interrupted_chat(billing, call, chunks, request_data))


async def _api_stream(
    billing: Billing, call: Call, response: AsyncIterator[Any], request_data: dict[str, Any]
) -> AsyncGenerator[Any, None]:
    """A Responses, Messages or completions stream: settled when the chunk carrying its final usage comes
    by, before that chunk goes out (`gateway.proxy.usage` finds it in each API's events)."""
    seen = StreamUsage()
    text: list[str] = []
    settled = False
    next_chunk = response.__aiter__().__anext__
    try:
        while (chunk := await _read(next_chunk, call.request_id)) is not _END:
            if seen.feed(chunk, text) and not settled:
                settled = True
                await billing.settle_stream(
                    call, seen.prompt, seen.completion, seen.cost or litellm_cost(request_data, seen.priced)
                )
                if call.route in USAGE_ON_REQUEST and not call.client_wants_usage:
                    chunk.usage = None  # we asked for it, the client did not
            yield chunk
    finally:
        if not settled:  # cut by the client, or the upstream ended without its usage
            await asyncio.shield(_close_unreported(billing, call, seen, text))


async def _close_unreported(billing: Billing, call: Call, seen: StreamUsage, text: list[str]) -> None:
    """Charge what an API stream produced (its text counted, the prompt as the hold bounded it unless the
    provider reported it), or release the hold if it produced nothing."""
    try:
        if not seen.produced:
            await billing.release(call)
            return
        prompt = seen.prompt or call.prompt_tokens
        completion = max(seen.completion, count_text(call.model, "".join(text)))
        await billing.settle_stream(call, prompt, completion, None)
    except Exception:
        log.exception("could not close interrupted stream %s", call.request_id)


def _stream_cost(chunks: list[Any], request_data: dict[str, Any]) -> ReportedCost:
    try:
        built = litellm.stream_chunk_builder(chunks, messages=request_data.get("messages"))
        return litellm.completion_cost(completion_response=built) if built is not None else None
    except Exception:  # noqa: BLE001 - LiteLLM could not price it; price_call falls back to the table
        return None


async def _settle_from_chunks(billing: Billing, call: Call, chunks: list[Any], request_data: dict[str, Any]) -> None:
    built = litellm.stream_chunk_builder(chunks, messages=request_data.get("messages")) if chunks else None
    usage = getattr(built, "usage", None)
    await billing.settle_stream(
        call,
        int(getattr(usage, "prompt_tokens", 0) or 0),
        int(getattr(usage, "completion_tokens", 0) or 0),
        _stream_cost(chunks, request_data) if chunks else None,
    )


async def _close_interrupted_chat(
    billing: Billing, call: Call, chunks: list[Any], request_data: dict[str, Any]
) -> None:
    try:
        if any(getattr(c, "choices", None) for c in chunks):
            await _settle_from_chunks(billing, call, chunks, request_data)
        else:
            await billing.release(call)
    except Exception:
        log.exception("could not close interrupted stream %s", call.request_id)
