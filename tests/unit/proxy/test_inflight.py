"""The callbacks' per-call state (gateway.proxy.inflight): a call in client-writable metadata is trusted
only through this process's registry, and each call is closed once."""

from __future__ import annotations

import asyncio
import copy
from decimal import Decimal

from gateway.core.money import TokenPrices
from gateway.proxy.inflight import METADATA_KEY, Call, Inflight, tag, tagged


def a_call(request_id: str = "r1", account_id: int = 7) -> Call:
    prices = TokenPrices(Decimal("0.000001"), Decimal("0.000002"))
    return Call(request_id, account_id, 3, "m", 1000, False, False, prices, Decimal(2))


def test_tag_replaces_whatever_a_client_put_under_our_key():
    call = a_call()
    data = {"metadata": {METADATA_KEY: "forged", "other": 1}, "litellm_metadata": {METADATA_KEY: a_call("x")}}
    tag(data, call)
    assert data["metadata"] == {METADATA_KEY: call, "other": 1}
    assert METADATA_KEY not in data["litellm_metadata"]
    assert tagged(data) is call


def test_tag_creates_the_metadata_bucket():
    data: dict = {}
    tag(data, call := a_call())
    assert data == {"metadata": {METADATA_KEY: call}}


def test_tagged_reads_either_bucket_and_only_a_call():
    call = a_call()
    assert tagged({"litellm_metadata": {METADATA_KEY: call}}) is call
    assert tagged({"metadata": {METADATA_KEY: {"request_id": "r1"}}}) is None  # a client's dict is no call
    assert tagged({"metadata": "x"}) is None
    assert tagged(None) is None and tagged({}) is None


def test_a_call_the_registry_does_not_hold_is_not_trusted():
    inflight = Inflight()
    assert inflight.get({"metadata": {METADATA_KEY: a_call()}}) is None


def test_a_forged_call_naming_a_held_request_yields_the_held_one():
    inflight = Inflight()
    inflight.add(held := a_call(account_id=7))
    forged = a_call(account_id=999)  # same request id, someone else's account
    assert inflight.get({"metadata": {METADATA_KEY: forged}}) is held


def test_done_forgets_the_call():
    inflight = Inflight()
    inflight.add(call := a_call())
    inflight.done(call.request_id)
    inflight.done(call.request_id)  # twice is harmless
    assert inflight.get({"metadata": {METADATA_KEY: call}}) is None


def test_the_registry_is_bounded_and_forgets_the_oldest():
    inflight = Inflight(size=2)
    calls = [a_call(f"r{i}") for i in range(3)]
    for call in calls:
        inflight.add(call)
    assert [inflight.get({"metadata": {METADATA_KEY: c}}) for c in calls] == [None, calls[1], calls[2]]


def test_a_deep_copy_of_a_call_is_the_call():
    call = a_call()
    data = copy.deepcopy({"metadata": {METADATA_KEY: call}})
    assert data["metadata"][METADATA_KEY] is call


async def test_closing_an_unknown_call_yields_none():
    async with Inflight().closing("nope") as call:
        assert call is None


async def test_two_closers_of_one_call_take_turns_and_the_second_sees_it_closed():
    inflight = Inflight()
    inflight.add(a_call())
    order: list[str] = []
    first_inside = asyncio.Event()

    async def first() -> None:
        async with inflight.closing("r1") as call:
            assert call is not None
            order.append("first in")
            first_inside.set()
            await asyncio.sleep(0.01)
            inflight.done("r1")
            order.append("first out")

    async def second() -> None:
        await first_inside.wait()
        async with inflight.closing("r1") as call:
            order.append(f"second sees {call}")

    await asyncio.gather(first(), second())
    assert order == ["first in", "first out", "second sees None"]
