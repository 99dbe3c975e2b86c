"""Fail closed on money: with the billing database unreachable, auth and hold deny with 503, nothing is served."""

from __future__ import annotations

from decimal import Decimal

import pytest
from litellm.proxy._types import UserAPIKeyAuth
from starlette.requests import Request

from gateway.cache.ttl import TTLCache
from gateway.config import Settings
from gateway.core.billing import plan_hold
from gateway.core.money import TokenPrices
from gateway.db.engine import get_engine
from gateway.ledger import open_ledger
from gateway.ledger.spool import Spool
from gateway.proxy import auth, callbacks, planning
from gateway.proxy.errors import GatewayError
from gateway.proxy.guard import ADMITTED
from gateway.proxy.planning import Plan
from gateway.proxy.runtime import replace_runtime
from gateway.runtime import Runtime

DEAD_DB = "postgresql+asyncpg://postgres@127.0.0.1:1/unreachable"


@pytest.fixture
def dead_runtime(tmp_path):
    db = get_engine(DEAD_DB)
    rt = Runtime(Settings(database_url=DEAD_DB), db, open_ledger(db), None, TTLCache(2), Spool(tmp_path))
    previous = replace_runtime(rt)
    yield rt
    replace_runtime(previous)
    rt.ledger.close()


def _request(path: str = "/v1/chat/completions") -> Request:
    return Request({"type": "http", "method": "POST", "path": path, "headers": [], "query_string": b"", ADMITTED: True})


async def test_key_lookup_with_database_down_is_503(dead_runtime):
    with pytest.raises(GatewayError) as err:
        await auth.user_api_key_auth(_request(), "sk-cg-" + "a" * 43)
    assert err.value.code == "503" and err.value.openai_code == "billing_unavailable"


async def test_hold_with_database_down_is_503_and_the_call_is_not_made(dead_runtime, monkeypatch):
    monkeypatch.setattr(planning, "prices_for", lambda model: TokenPrices(Decimal("1e-7"), Decimal("1e-6"), 1000))
    data = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 10}
    who = UserAPIKeyAuth(token="t", metadata={"gateway_account_id": 1, "gateway_key_id": 1})
    with pytest.raises(GatewayError) as err:
        await callbacks.BillingCallbacks().async_pre_call_hook(who, None, data, "acompletion")
    assert err.value.code == "503"
    assert "gateway" not in data.get("metadata", {})
    assert "127.0.0.1" not in err.value.message and "Error" not in err.value.message  # our words, not the driver's


async def test_a_billed_call_the_guard_did_not_admit_is_refused(dead_runtime):
    request = Request(
        {"type": "http", "method": "POST", "path": "/v1/chat/completions", "headers": [], "query_string": b""}
    )
    with pytest.raises(GatewayError) as err:
        await auth.user_api_key_auth(request, "sk-cg-" + "a" * 43)
    assert err.value.code == "503" and err.value.openai_code == "gateway_misconfigured"


async def test_malformed_keys_never_reach_the_database(dead_runtime):
    with pytest.raises(GatewayError) as err:
        await auth.user_api_key_auth(_request(), "sk-not-ours")
    assert err.value.code == "401"


def _paid_plan(model: str) -> Plan:
    prices = TokenPrices(Decimal("1e-7"), Decimal("1e-6"), 1000)
    return Plan(model, "chat", prices, Decimal("1.5"), plan_hold(prices, 5, 10, Decimal("1.5")))


@pytest.mark.parametrize(("paid_model", "planned_again"), [("gpt-4o-mini", 0), ("another-model", 1)])
async def test_an_x402_call_is_held_at_the_plan_it_paid_for(dead_runtime, monkeypatch, paid_model, planned_again):
    """The gate planned (and was paid for) this hold: the hook holds it without counting the prompt again,
    unless the plan is for another model than the request's (then it plans the request itself)."""
    planned = []

    def plan_request(model, data, kind):
        planned.append(model)
        return _paid_plan(model)

    monkeypatch.setattr(callbacks, "plan_request", plan_request)
    data = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 10}
    meta = {"gateway_account_id": 1, "gateway_key_id": None, "gateway_plan": _paid_plan(paid_model)}
    with pytest.raises(GatewayError) as err:  # the hold is reached, and the dead database refuses it
        await callbacks.BillingCallbacks().async_pre_call_hook(
            UserAPIKeyAuth(token="t", metadata=meta), None, data, "acompletion"
        )
    assert err.value.code == "503" and len(planned) == planned_again
