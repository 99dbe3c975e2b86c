"""The embedded default (SQLite in $GATEWAY_HOME, no Redis) end to end, driven as README says: the `gateway`
CLI to grant credits and create a key, the real proxy, the OpenAI SDK, then the CLI to read usage."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys

import anthropic
import openai
import pytest

from devtools.proxy_process import ProxyProcess, free_port, write_test_config
from gateway.config import Settings

pytestmark = pytest.mark.timeout(240)
WALLET = "0x1111111111111111111111111111111111111111"


def gateway(home, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "GATEWAY_DATABASE_URL", "REDIS_URL"}}
    env["GATEWAY_HOME"] = str(home)
    proc = subprocess.run(
        [sys.executable, "-m", "gateway", *args], env=env, capture_output=True, text=True, timeout=120
    )
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


def gateway_json(home, *args: str):
    return json.loads(gateway(home, *args, "--json").stdout)


@pytest.fixture(scope="module")
def embedded(tmp_path_factory, upstream):
    home = tmp_path_factory.mktemp("embedded-home")
    gateway(home, "migrate")
    settings = Settings(gateway_home=home, database_url=None, redis_url=None, proxy_port=free_port(), proxy_workers=2)
    proc = ProxyProcess(settings, write_test_config(home, upstream.base_url), home / "proxy.log").start()
    yield home, proc
    proc.stop()


def test_cli_and_proxy_on_sqlite(embedded):
    home, proxy = embedded
    grant = gateway_json(home, "credits", "grant", "--wallet", WALLET, "--credits", "100", "--reference", "welcome")
    assert grant["amount_micros"] == 100_000 and grant["credits"] == "100" and grant["replayed"] is False
    again = gateway_json(home, "credits", "grant", "--wallet", WALLET, "--credits", "100", "--reference", "welcome")
    assert again["replayed"] is True and again["balance_after_micros"] == 100_000
    key = gateway_json(home, "keys", "create", "--wallet", WALLET, "--label", "laptop")
    assert key["key"].startswith("sk-cg-") and isinstance(key["id"], int)

    client = openai.OpenAI(base_url=proxy.base_url, api_key=key["key"], max_retries=0)
    reply = client.chat.completions.create(model="demo", messages=[{"role": "user", "content": "hi"}])
    assert "credit-gateway demo" in reply.choices[0].message.content
    streamed = "".join(
        c.choices[0].delta.content or ""
        for c in client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], stream=True
        )
        if c.choices
    )
    assert len(streamed.split()) == 8

    usage = gateway_json(home, "usage", "--wallet", WALLET)
    assert len(usage) == 2 and {u["model"] for u in usage} == {"demo", "gpt-4o-mini"}
    assert all(u["user_price_micros"] >= u["provider_cost_micros"] > 0 for u in usage)
    balance = gateway_json(home, "balance", "--wallet", WALLET)
    assert balance["balance_micros"] == 100_000 - sum(u["user_price_micros"] for u in usage)
    assert balance["held_micros"] == 0 and balance["available_micros"] == balance["balance_micros"]

    listed = gateway_json(home, "keys", "list", "--wallet", WALLET)
    assert [k["id"] for k in listed] == [key["id"]] and "key" not in listed[0]
    revoked = gateway_json(home, "keys", "revoke", str(key["id"]))
    assert revoked["active"] is False


def test_cli_bad_arguments_exit_2_with_one_line(embedded):
    home, _ = embedded
    cases = [
        ("credits", "grant", "--wallet", "0xnope", "--credits", "5", "--reference", "r"),
        ("credits", "grant", "--wallet", WALLET, "--credits", "0.0001", "--reference", "r2"),
        ("credits", "grant", "--wallet", WALLET, "--credits", "-5", "--reference", "r3"),
        ("balance", "--wallet", "0x2222222222222222222222222222222222222222"),
        ("keys", "revoke", "999999"),
    ]
    for args in cases:
        proc = gateway(home, *args, check=False)
        assert proc.returncode == 2, (args, proc.stdout, proc.stderr)
        assert len(proc.stderr.strip().splitlines()) == 1 and proc.stderr.startswith("error:"), proc.stderr
    assert gateway_json(home, "balance", "--wallet", WALLET)["balance_micros"] <= 100_000


async def test_concurrent_calls_on_a_small_balance_never_overspend_on_sqlite(embedded, upstream):
    home, proxy = embedded
    wallet = "0x3333333333333333333333333333333333333333"
    gateway_json(home, "credits", "grant", "--wallet", wallet, "--credits", "5", "--reference", "small")
    key = gateway_json(home, "keys", "create", "--wallet", wallet)["key"]
    client = openai.AsyncOpenAI(base_url=proxy.base_url, api_key=key, max_retries=0, timeout=120)
    upstream.set_mode(latency=0.5)

    async def call():
        try:
            await client.chat.completions.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], max_tokens=2000
            )
            return "ok"
        except openai.APIStatusError as exc:
            return exc.status_code

    outcomes = await asyncio.gather(*[call() for _ in range(30)])
    upstream.set_mode(latency=0.0)
    assert set(outcomes) <= {"ok", 402} and "ok" in outcomes and 402 in outcomes
    usage = gateway_json(home, "usage", "--wallet", wallet)
    balance = gateway_json(home, "balance", "--wallet", wallet)
    assert len(usage) == outcomes.count("ok")
    assert balance["balance_micros"] == 5_000 - sum(u["user_price_micros"] for u in usage) >= 0
    assert balance["held_micros"] == 0


async def test_a_provider_billing_n_choices_and_more_prompt_never_takes_the_balance_below_zero_on_sqlite(
    embedded, upstream
):
    home, proxy = embedded
    wallet = "0x4444444444444444444444444444444444444444"
    gateway_json(home, "credits", "grant", "--wallet", wallet, "--credits", "2", "--reference", "n-choices")
    key = gateway_json(home, "keys", "create", "--wallet", wallet)["key"]
    client = openai.OpenAI(base_url=proxy.base_url, api_key=key, max_retries=0, timeout=120)
    upstream.set_mode(fill=True)
    try:
        with pytest.raises(openai.APIStatusError) as err:  # the reported case: 20 x 200 output tokens on 2 credits
            client.chat.completions.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], n=20, max_tokens=200
            )
        assert err.value.status_code == 402 and upstream.stats()["total"] == 0
        reply = client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], n=20)
        assert len(reply.choices) == 20
        upstream.set_mode(prompt_extra_tokens=100_000)  # then a provider that counts far more prompt than held
        list(
            client.chat.completions.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], n=4, stream=True
            )
        )
    finally:
        upstream.set_mode(fill=False, prompt_extra_tokens=0)
    balance = gateway_json(home, "balance", "--wallet", wallet)
    usage = gateway_json(home, "usage", "--wallet", wallet)
    assert len(usage) == 2 and balance["held_micros"] == 0 and balance["balance_micros"] >= 0
    report = json.loads(gateway(home, "reconcile", "--json").stdout)
    assert report["ok"] and report["uncollected"]["total_micros"] > 0


async def test_messages_and_responses_are_billed_at_the_list_price_on_sqlite(embedded, upstream):
    from tests.e2e.test_api_routes import HI, list_price_micros, provider_calls

    home, proxy = embedded
    wallet = "0x5555555555555555555555555555555555555555"
    gateway_json(home, "credits", "grant", "--wallet", wallet, "--credits", "2", "--reference", "apis")
    key = gateway_json(home, "keys", "create", "--wallet", wallet)["key"]
    claude = anthropic.Anthropic(base_url=proxy.base_url.removesuffix("/v1"), api_key=key, max_retries=0, timeout=120)
    client = openai.OpenAI(base_url=proxy.base_url, api_key=key, max_retries=0, timeout=120)
    with pytest.raises(anthropic.APIStatusError) as refused:  # far more than 2 credits cover
        claude.messages.create(model="claude-haiku-4-5", max_tokens=100_000, messages=HI)
    assert refused.value.status_code == 402 and provider_calls(upstream) == 0
    assert claude.messages.create(model="claude-haiku-4-5", max_tokens=50, messages=HI).usage.output_tokens == 8
    upstream.set_mode(fill=True)
    try:
        events = list(client.responses.create(model="gpt-4o-mini", input="hi", stream=True))  # no output bound
    finally:
        upstream.set_mode(fill=False)
    assert events[-1].type == "response.incomplete"  # it spent all the budget the gateway gave it
    usage = gateway_json(home, "usage", "--wallet", wallet)
    balance = gateway_json(home, "balance", "--wallet", wallet)
    assert len(usage) == 2 and balance["held_micros"] == 0
    for u in usage:
        assert u["user_price_micros"] == list_price_micros(u["model"], u["prompt_tokens"], u["completion_tokens"])
    assert balance["balance_micros"] == 2_000 - sum(u["user_price_micros"] for u in usage) >= 0
