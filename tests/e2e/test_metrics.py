"""`/metrics` of a real proxy with two LiteLLM workers, and its per-call JSON log lines.

The counters are summed over both workers' files (PROMETHEUS_MULTIPROC_DIR), move as calls happen (200,
401, 402, 403, 4xx each counted), carry no key, wallet or account id, and need METRICS_BEARER_TOKEN.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections import Counter

import httpx
import pytest
import sqlalchemy as sa
from prometheus_client.parser import text_string_to_metric_families

from devtools.proxy_process import ProxyProcess
from gateway.db.schema import llm_usage
from tests.e2e.conftest import start_proxy

pytestmark = pytest.mark.timeout(300)
TOKEN = "e2e-metrics-token-0123456789"
CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 10}
# hash and pid: gateway_config_loaded, one series per worker and config it served (bounded by restarts/reloads)
OUR_LABELS = {"model", "outcome", "event", "route", "method", "status", "le", "hash", "pid", "kind", "op"}
BOUNDED_MODELS = {"gpt-4o-mini", "text-embedding-3-small", "unpriced", "demo", "other", "none"}


@pytest.fixture(scope="module")
def metered_proxy(pg_url, upstream, tmp_path_factory):
    os.environ["METRICS_BEARER_TOKEN"] = TOKEN  # child_env copies the environment at start
    try:
        proc = start_proxy(pg_url, upstream, tmp_path_factory.mktemp("metrics-home"))
    finally:
        del os.environ["METRICS_BEARER_TOKEN"]
    yield proc
    proc.stop()


def root(proxy: ProxyProcess) -> str:
    return f"http://127.0.0.1:{proxy.settings.proxy_port}"


def scrape(proxy: ProxyProcess) -> dict[tuple[str, frozenset], float]:
    answer = httpx.get(f"{root(proxy)}/metrics", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30)
    assert answer.status_code == 200, answer.text
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(answer.text)
        for s in family.samples
    }


def value(scraped: dict, name: str, **labels: str) -> float:
    return scraped.get((name, frozenset(labels.items())), 0.0)


def call_lines(proxy: ProxyProcess) -> list[dict]:
    lines = []
    for line in proxy.log_path.read_text().splitlines():
        if line.startswith("{"):
            event = json.loads(line)
            if event.get("event") == "call":
                lines.append(event)
    return lines


async def post_chat(key: str, proxy: ProxyProcess, body: dict | None = None, path: str = "/v1/chat/completions"):
    async with httpx.AsyncClient(timeout=60) as client:  # a new connection each: calls spread over the workers
        return await client.post(f"{root(proxy)}{path}", json=body or CHAT, headers={"Authorization": f"Bearer {key}"})


def test_token_rule(metered_proxy, make_customer):
    url = f"{root(metered_proxy)}/metrics"
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}):
        assert httpx.get(url, headers=headers).status_code == 401
    assert httpx.get(url, headers={"Authorization": f"Bearer {metered_proxy.master_key}"}).status_code == 401
    assert httpx.post(url, headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 405
    assert httpx.get(url, headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200


async def test_counts_of_both_workers_are_summed_and_outcomes_move(metered_proxy, make_customer, db):
    customer = await make_customer(50_000_000)
    key = customer.key.raw_key
    before = scrape(metered_proxy)
    ok = 0
    pids: set[int] = set()
    for _ in range(12):  # bounded: the kernel spreads new connections over the two workers' accept queue
        answers = await asyncio.gather(*(post_chat(key, metered_proxy) for _ in range(6)))
        assert all(a.status_code == 200 for a in answers), [a.text for a in answers]
        ok += len(answers)
        pids = {line["pid"] for line in call_lines(metered_proxy) if line["account_id"] == customer.account.id}
        if len(pids) == 2:
            break
    assert len(pids) == 2, "every call went to one worker"
    per_pid_files = {
        p.name
        for p in (metered_proxy.settings.gateway_home / "metrics" / f"proxy-{metered_proxy.settings.proxy_port}").glob(
            "counter_*.db"
        )
    }
    assert {f"counter_{pid}.db" for pid in pids} <= per_pid_files

    broke = await make_customer(0)
    refused = await post_chat(broke.key.raw_key, metered_proxy)
    unknown_key = await post_chat("sk-cg-not-a-key", metered_proxy)
    admin_route = await post_chat(key, metered_proxy, {}, path="/key/generate")
    unknown_model = await post_chat(key, metered_proxy, {**CHAT, "model": f"client-invented-{key}"})
    assert (refused.status_code, unknown_key.status_code, admin_route.status_code) == (402, 401, 403)
    assert 400 <= unknown_model.status_code < 500

    after = scrape(metered_proxy)
    calls = "gateway_proxy_calls_total"
    assert (
        value(after, calls, model="gpt-4o-mini", outcome="200")
        - value(before, calls, model="gpt-4o-mini", outcome="200")
        == ok
    )
    assert (
        value(after, calls, model="gpt-4o-mini", outcome="402")
        - value(before, calls, model="gpt-4o-mini", outcome="402")
        == 1
    )
    assert (
        value(after, calls, model="gpt-4o-mini", outcome="401")
        - value(before, calls, model="gpt-4o-mini", outcome="401")
        == 1
    )
    assert value(after, calls, model="none", outcome="403") - value(before, calls, model="none", outcome="403") == 1
    assert value(after, calls, model="other", outcome="4xx") - value(before, calls, model="other", outcome="4xx") == 1
    events = "gateway_hold_events_total"
    for event in ("opened", "settled"):
        assert value(after, events, event=event) - value(before, events, event=event) == ok
    async with db.connect() as conn:
        charged, cost = (
            await conn.execute(
                sa.select(
                    sa.func.sum(llm_usage.c.user_price_micros - llm_usage.c.uncollected_micros),
                    sa.func.sum(llm_usage.c.provider_cost_micros),
                ).where(llm_usage.c.account_id == customer.account.id)
            )
        ).one()
    revenue = "gateway_revenue_micros_total"
    assert value(after, revenue, model="gpt-4o-mini") - value(before, revenue, model="gpt-4o-mini") == charged
    provider = "gateway_provider_cost_micros_total"
    assert value(after, provider, model="gpt-4o-mini") - value(before, provider, model="gpt-4o-mini") == cost
    settle = "gateway_settle_seconds_count"
    assert value(after, settle) - value(before, settle) == ok
    assert value(after, "gateway_metrics_database_up") == 1
    assert value(after, "gateway_holds_open") >= 0 and ("gateway_holds_expired_total", frozenset()) in after

    secrets_ = {
        key,
        broke.key.raw_key,
        customer.account.wallet_address,
        str(customer.account.id),
        str(broke.account.id),
    }
    for name, labels in after:
        if not name.startswith("gateway_"):
            continue
        assert {label for label, _ in labels} <= OUR_LABELS, name
        for label, val in labels:
            assert val not in secrets_ and not any(s in val for s in (key, customer.account.wallet_address)), (
                name,
                label,
            )
            if label == "model":
                assert val in BOUNDED_MODELS, val


async def test_one_json_line_per_billed_call_without_the_key(metered_proxy, make_customer, db):
    customer = await make_customer(5_000_000)
    answers = await asyncio.gather(*(post_chat(customer.key.raw_key, metered_proxy) for _ in range(4)))
    assert all(a.status_code == 200 for a in answers)
    broke = await make_customer(0)
    assert (await post_chat(broke.key.raw_key, metered_proxy)).status_code == 402
    async with db.connect() as conn:
        request_ids = set(
            (await conn.execute(sa.select(llm_usage.c.request_id).where(llm_usage.c.account_id == customer.account.id)))
            .scalars()
            .all()
        )
    assert len(request_ids) == 4
    mine = [line for line in call_lines(metered_proxy) if line["account_id"] == customer.account.id]
    assert Counter(line["request_id"] for line in mine) == Counter(request_ids)  # one line per call, no more
    for line in mine:
        assert line["level"] == "info" and line["outcome"] == "settled" and line["model"] == "gpt-4o-mini"
        assert line["key_id"] == customer.key.info.id and line["charged_micros"] > 0
    [refusal] = [line for line in call_lines(metered_proxy) if line["account_id"] == broke.account.id]
    assert refusal["outcome"] == "insufficient_credits" and refusal["key_id"] == broke.key.info.id
    text = metered_proxy.log_path.read_text()
    assert customer.key.raw_key not in text and broke.key.raw_key not in text
