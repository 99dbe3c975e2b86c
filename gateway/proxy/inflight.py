"""Per-call state of the billing callbacks: what a call held, for whom, and whether it is closed yet.

The pre-call hook creates one `Call` per billed request and puts it in the request's metadata, where LiteLLM
carries it to the later hooks and the logging callbacks. Metadata is client-writable, so a `Call` found there
is trusted only through `Inflight`, this process's registry of calls held and not yet settled or released
(keyed by our own request id); the headers hook alone reads the metadata copy, for display.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import OrderedDict
from collections.abc import AsyncIterator, Iterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from gateway.core.money import TokenPrices

METADATA_KEY = "gateway"
_METADATA_BUCKETS = ("metadata", "litellm_metadata")


@dataclass
class Call:
    """One billed call between its hold and its settle (or release)."""

    request_id: str
    account_id: int
    key_id: int | None
    model: str
    held_micros: int
    streamed: bool
    client_wants_usage: bool  # the client asked for the streamed usage chunk itself
    prices: TokenPrices  # the rates it was held at: it is settled at them, whatever a reload changed since
    markup: Decimal
    route: str = "chat"  # the billed route (gateway.proxy.admission kinds)
    prompt_tokens: int = 0  # the hold's bound of the prompt (what a cut stream that never reported it is charged)
    charged_micros: int | None = None  # set by the settle

    def __deepcopy__(self, memo: dict[int, Any]) -> Call:
        """Itself: LiteLLM deep-copies request metadata along the way, and every copy must be this call (the
        settle sets `charged_micros` on it for the headers hook); copying it would also cost time per call."""
        return self


_held_here: ContextVar[list[Call] | None] = ContextVar("gateway_held_here", default=None)


@contextlib.contextmanager
def held_in_request() -> Iterator[list[Call]]:
    """The calls held while serving one request (the guard opens it around LiteLLM; `note_held` fills it):
    what to release if the server cancels the request, as at the end of a shutdown's grace period."""
    calls: list[Call] = []
    token = _held_here.set(calls)
    try:
        yield calls
    finally:
        _held_here.reset(token)


def note_held(call: Call) -> None:
    calls = _held_here.get()
    if calls is not None:
        calls.append(call)


def tagged(data: Mapping[str, Any] | None) -> Call | None:
    """The `Call` our pre-call hook put in a request's metadata (untrusted: see `Inflight.get`)."""
    if not data:
        return None
    for bucket in _METADATA_BUCKETS:
        meta = data.get(bucket)
        call = meta.get(METADATA_KEY) if isinstance(meta, dict) else None
        if isinstance(call, Call):
            return call
    return None


def tag(data: dict[str, Any], call: Call) -> None:
    """Put `call` in the request's metadata, after removing whatever a client put under our key."""
    for bucket in _METADATA_BUCKETS:
        if isinstance(data.get(bucket), dict):
            data[bucket].pop(METADATA_KEY, None)
    data.setdefault("metadata", {})[METADATA_KEY] = call


class Inflight:
    """Calls this process has held and not yet settled or released, by request id (bounded)."""

    def __init__(self, size: int = 100_000) -> None:
        self.size = size
        self._calls: OrderedDict[str, tuple[Call, asyncio.Lock]] = OrderedDict()

    def add(self, call: Call) -> None:
        self._calls[call.request_id] = (call, asyncio.Lock())
        if len(self._calls) > self.size:
            self._calls.popitem(last=False)  # its hold expires and is reported by the sweeper

    def get(self, data: Mapping[str, Any] | None) -> Call | None:
        """The open call of this request, if the metadata names one this process holds."""
        claimed = tagged(data)
        entry = self._calls.get(claimed.request_id) if claimed is not None else None
        return entry[0] if entry is not None else None

    def done(self, request_id: str) -> None:
        self._calls.pop(request_id, None)

    @contextlib.asynccontextmanager
    async def closing(self, request_id: str) -> AsyncIterator[Call | None]:
        """One settle/release attempt per call at a time; yields None if the call is closed already."""
        entry = self._calls.get(request_id)
        if entry is None:
            yield None
            return
        async with entry[1]:
            yield entry[0] if request_id in self._calls else None
