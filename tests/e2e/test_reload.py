"""Config changes without a restart, and a draining stop (issue 24), on one real two-worker proxy under load.

- `gateway reload` while 16 clients call (plain and streamed): a price changed, a model added, a model
  removed. Nothing fails but the removed model's calls admitted after the reload (404 naming it); every
  call is charged exactly at the prices of the config it was admitted under; the published price list and
  /metrics follow. Broken edits (unknown provider, missing price, YAML error) are refused with one line
  naming the model and the fix, and change nothing.
- SIGTERM while slow streams run and plain calls hang at the provider: each stream that had started
  completes and is billed, the hung calls are cut when the grace runs out and their holds released (no
  hold is left), and the proxy exits soon after its grace period.

The tests share one proxy and run in file order: the second one stops it.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import signal
import subprocess
import sys
import time
from decimal import Decimal

import httpx
import pytest
import sqlalchemy as sa
import yaml

from devtools.fake_upstream import FakeUpstream
from devtools.proxy_process import ProxyProcess, write_test_config
from gateway import ledger
from gateway.accounts.keys import create_key, hash_key
from gateway.accounts.wallets import get_or_create_account
from gateway.db.schema import credit_holds, llm_usage, virtual_keys
from gateway.proxy import loaded
from tests.conftest import random_wallet
from tests.e2e.conftest import proxy_settings

pytestmark = pytest.mark.timeout(300)

MARKUP = Decimal("2.0")
OLD = {"kept": ("0.000001", "0.000002"), "gone": ("0.000004", "0.000004")}
NEW = {"kept": ("0.000003", "0.000005"), "added": ("0.000002", "0.000007")}
CONCURRENCY = 16
METRICS = "reload-metrics-token"
GRACE = 12  # SHUTDOWN_GRACE_SECONDS of the tests' proxy: longer than a slow stream, shorter than a hung call


def _models(upstream: FakeUpstream, prices: dict[str, tuple[str, str]]) -> list[dict]:
    return [
        {
            "model_name": name,
            "litellm_params": {
                "model": f"openai/{name}",
                "api_base": upstream.base_url,
                "api_key": "fake-provider-key",
                "input_cost_per_token": float(rates[0]),
                "output_cost_per_token": float(rates[1]),
            },
            # a fixed id: LiteLLM registers the new price under the same id, so its own cost of a call in flight
            # across the swap would follow the new price (the gateway settles such a call at its held prices)
            "model_info": {"max_output_tokens": 64, "id": f"deployment-{name}"},
        }
        for name, rates in prices.items()
    ]


def _write(proxy: ProxyProcess, upstream: FakeUpstream, prices: dict[str, tuple[str, str]]) -> None:
    config = yaml.safe_load(proxy.config.read_text())
    config["model_list"] = [m for m in config["model_list"] if m["model_name"] == "demo"] + _models(upstream, prices)
    proxy.config.write_text(yaml.safe_dump(config))


@pytest.fixture(scope="module")
def reload_proxy(pg_url: str, upstream: FakeUpstream, tmp_path_factory) -> ProxyProcess:
    """The tests' one proxy (2 workers) on a model list of their own, in a GATEWAY_HOME of its own."""
    home = tmp_path_factory.mktemp("reload-home")
    settings = proxy_settings(pg_url, home).model_copy(update={"shutdown_grace_seconds": GRACE})
    proxy = ProxyProcess(
        settings, write_test_config(home, upstream.base_url), home / "proxy.log", {"METRICS_BEARER_TOKEN": METRICS}
    )
    _write(proxy, upstream, OLD)
    proxy.start()
    deadline = time.monotonic() + 120
    while len(loaded.read_all(home)) < 2:  # the proxy answers once one worker is up; the other may still start
        assert time.monotonic() < deadline, "the second worker did not start"
        time.sleep(0.5)
    yield proxy
    proxy.stop()


def _gateway(proxy: ProxyProcess, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "GATEWAY_HOME": str(proxy.settings.gateway_home)}
    return subprocess.run(
        [sys.executable, "-m", "gateway", *args], env=env, capture_output=True, text=True, timeout=60, check=False
    )


def _hashes(proxy: ProxyProcess) -> set[str]:
    return {s.hash for s in loaded.read_all(proxy.settings.gateway_home) if s.port == proxy.settings.proxy_port}


def _price_list(proxy: ProxyProcess) -> dict[str, dict]:
    document = json.loads(proxy.settings.price_list_path.read_text())
    return {m["id"]: m["pricing"] for m in document["data"]}


def _price(rates: tuple[str, str], prompt: int, completion: int) -> int:
    cost = prompt * Decimal(rates[0]) + completion * Decimal(rates[1])
    return math.ceil(cost * MARKUP * 1_000_000)


def _broken_edits(good: str) -> list[tuple[str, str]]:
    """(a broken config, what its refusal must say): an unknown provider, a model with no price, bad YAML."""
    unknown = yaml.safe_load(good)
    unknown["model_list"][-1]["litellm_params"]["model"] = "nosuchprovider/gone"
    unpriced = yaml.safe_load(good)
    params = {k: v for k, v in unpriced["model_list"][-1]["litellm_params"].items() if "cost" not in k}
    unpriced["model_list"].append({"model_name": "unpriced", "litellm_params": {**params, "model": "openai/private"}})
    return [
        (yaml.safe_dump(unknown), "model 'gone': LiteLLM knows no provider"),
        (yaml.safe_dump(unpriced), "model 'unpriced': no price"),
        (good + "\n  - this: [is not yaml\n", "is not valid YAML"),
    ]


async def _customer(db) -> str:
    account = await get_or_create_account(db, random_wallet())
    await ledger.post_entry(db, account.id, 100_000_000, "admin_grant", f"reload-{account.id}")
    return (await create_key(db, account.id, "reload")).raw_key


async def _call(http: httpx.AsyncClient, proxy: ProxyProcess, key: str, model: str, streamed: bool) -> dict:
    """One call: when it started and ended, its status, our request id, and (for a refusal) the error."""
    body = {"model": model, "messages": [{"role": "user", "content": "hello"}], "max_tokens": 16, "stream": streamed}
    headers = {"authorization": f"Bearer {key}"}
    started = time.monotonic()
    try:
        async with http.stream("POST", f"{proxy.base_url}/chat/completions", json=body, headers=headers) as response:
            text = (await response.aread()).decode()
    except httpx.HTTPError as exc:  # a failed request: counted, never raised
        return {"model": model, "streamed": streamed, "started": started, "ended": time.monotonic(), "status": 0,
                "request_id": None, "error": repr(exc)}  # fmt: skip
    if response.status_code == 200:
        assert ("[DONE]" in text) if streamed else ('"choices"' in text), text[-300:]
    return {
        "model": model,
        "streamed": streamed,
        "started": started,
        "ended": time.monotonic(),
        "status": response.status_code,
        "request_id": response.headers.get("x-gateway-request-id"),
        "error": text if response.status_code != 200 else None,
    }


async def _load(http, proxy, key, models: list[str], stop: asyncio.Event, results: list[dict], lane: int) -> None:
    i = lane
    while not stop.is_set():
        results.append(await _call(http, proxy, key, models[i % len(models)], streamed=i % 2 == 0))
        i += 1


async def _usage(db, request_ids: list[str]) -> dict[str, tuple[int, int, int, int]]:
    """Per call: its prompt and completion tokens, what it was charged and what it held."""
    async with db.connect() as conn:
        rows = await conn.execute(
            sa.select(
                llm_usage.c.request_id,
                llm_usage.c.prompt_tokens,
                llm_usage.c.completion_tokens,
                llm_usage.c.user_price_micros,
                credit_holds.c.amount_micros,
            )
            .join(credit_holds, credit_holds.c.request_id == llm_usage.c.request_id)
            .where(llm_usage.c.request_id.in_(request_ids))
        )
        return {
            r.request_id: (r.prompt_tokens, r.completion_tokens, r.user_price_micros, r.amount_micros) for r in rows
        }


async def test_reload_under_load(reload_proxy: ProxyProcess, upstream: FakeUpstream, db) -> None:
    proxy = reload_proxy
    upstream.set_mode(latency=0.05, chunk_delay=0.02)  # calls last long enough to straddle the swap
    old_hashes = _hashes(proxy)
    assert len(old_hashes) == 1
    key = await _customer(db)
    results: list[dict] = []
    stop = asyncio.Event()
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    async with httpx.AsyncClient(timeout=60, limits=limits) as http:
        lanes = [
            asyncio.create_task(_load(http, proxy, key, ["kept", "gone"], stop, results, lane))
            for lane in range(CONCURRENCY)
        ]
        await asyncio.sleep(3)

        # broken edits: each refused with one line naming the model and the fix; nothing changes
        price_list = proxy.settings.price_list_path
        published = price_list.read_bytes() if price_list.exists() else None  # `gateway up` publishes it at start
        good = proxy.config.read_text()
        for text, expected in _broken_edits(good):
            proxy.config.write_text(text)
            refused = await asyncio.to_thread(_gateway, proxy, "reload")
            assert refused.returncode == 1, refused.stdout + refused.stderr
            assert expected in refused.stdout and "nothing changed" in refused.stdout, refused.stdout
            assert _hashes(proxy) == old_hashes
            assert (price_list.read_bytes() if price_list.exists() else None) == published
        proxy.config.write_text(good)

        # the real edit: a price changed, a model added, a model removed
        _write(proxy, upstream, NEW)
        began_wall, began = time.time(), time.monotonic()
        done = await asyncio.to_thread(_gateway, proxy, "reload", "--json")
        reloaded = time.monotonic()
        assert done.returncode == 0, done.stdout + done.stderr
        workers = json.loads(done.stdout)["workers"]
        assert len(workers) == 2 and len({w["hash"] for w in workers} | old_hashes) == 2
        converged = max(w["loaded_at"] for w in workers) - began_wall
        signalled = (
            max(w["loaded_at"] for w in workers)
            - (loaded.folder(proxy.settings.gateway_home) / "request").stat().st_mtime
        )
        lanes += [
            asyncio.create_task(_load(http, proxy, key, ["added", "kept", "gone"], stop, results, lane))
            for lane in range(4)
        ]
        await asyncio.sleep(3)
        stop.set()
        await asyncio.gather(*lanes)
    upstream.reset()

    print(f"\nreload: last worker serving the new config {converged * 1000:.0f} ms after `gateway reload` started, "
          f"{signalled * 1000:.0f} ms after it signalled the workers; the command took {(reloaded - began) * 1000:.0f} "
          f"ms; {len(results)} calls")  # fmt: skip
    assert _price_list(proxy)["kept"]["prompt_usd_per_token"] == "0.000006" and "gone" not in _price_list(proxy)
    metrics_url = f"http://127.0.0.1:{proxy.settings.proxy_port}/metrics"
    scrape = {"authorization": f"Bearer {METRICS}"}
    metrics_text = (await asyncio.to_thread(httpx.get, metrics_url, headers=scrape, timeout=10)).text
    new_hash = workers[0]["hash"]
    assert len([ln for ln in metrics_text.splitlines() if ln.startswith("gateway_config_loaded{") and
                f'hash="{new_hash}"' in ln and not ln.endswith(" 0.0")]) == 2, metrics_text  # fmt: skip

    failed = [r for r in results if r["status"] != 200]
    for r in failed:  # only the removed model, only after the reload began, and named
        assert r["model"] == "gone" and r["ended"] > began, r
        # our hold: OpenAI's 404 model_not_found naming it; or, held just before the swap and routed just after,
        # LiteLLM's router refusal (400, in our words: nothing charged, the hold released)
        assert (r["status"] == 404 and "'gone'" in r["error"]) or r["status"] == 400, r
    assert [r for r in results if r["model"] == "gone" and r["started"] > reloaded and r["status"] == 200] == []
    served = [r for r in results if r["status"] == 200]
    usage = await _usage(db, [r["request_id"] for r in served])
    assert len(usage) == len(served)
    # which config admitted a call shows in its hold (the same prompt and max_tokens: one hold per price);
    # the calls of one model that surely ran on one side of the swap show both holds
    holds: dict[tuple[str, str], set[int]] = {}
    for r in served:
        side = "old" if r["ended"] < began else "new" if r["started"] > reloaded else None
        if side:
            holds.setdefault((r["model"], side), set()).add(usage[r["request_id"]][3])
    assert all(len(h) == 1 for h in holds.values()) and holds[("kept", "old")] != holds[("kept", "new")], holds
    for r in served:
        prompt, completion, charged, held = usage[r["request_id"]]
        side = "old" if held in holds.get((r["model"], "old"), ()) else "new"
        assert held in holds[(r["model"], side)], r
        assert charged == _price((OLD if side == "old" else NEW)[r["model"]], prompt, completion), (r, side)
    swapped = began + max(w["loaded_at"] for w in workers) - began_wall  # every worker serves the new config
    straddled = [
        r for r in served if r["ended"] > swapped and usage[r["request_id"]][3] in holds.get((r["model"], "old"), ())
    ]
    print(f"calls held at the old prices and settled after the swap: {len(straddled)}; failed: {len(failed)} "
          f"(all refusals of 'gone')")  # fmt: skip
    assert straddled, "no call was in flight across the swap: the test proved nothing about it"


async def test_sigterm_drains_streams_and_releases_what_is_left(
    reload_proxy: ProxyProcess, upstream: FakeUpstream, db
) -> None:
    """SIGTERM while 8 slow streams run and 4 plain calls hang at the provider: the streams complete and are
    billed; the hung calls are cut when the grace runs out and their holds released; the proxy exits."""
    proxy = reload_proxy
    upstream.set_mode(words=12, chunk_delay=0.4)  # ~5 s per stream
    key = await _customer(db)
    call = {"model": "kept", "messages": [{"role": "user", "content": "hello"}], "max_tokens": 16}
    headers = {"authorization": f"Bearer {key}"}
    started = asyncio.Event()
    first_chunks = 0

    async def stream(http: httpx.AsyncClient) -> tuple[str, str]:
        nonlocal first_chunks
        body = {**call, "stream": True}
        async with http.stream("POST", f"{proxy.base_url}/chat/completions", json=body, headers=headers) as response:
            assert response.status_code == 200
            text = ""
            async for part in response.aiter_text():
                if not text:
                    first_chunks += 1
                    if first_chunks == 8:
                        started.set()
                text += part
            return response.headers["x-gateway-request-id"], text

    async def hung(http: httpx.AsyncClient) -> int:
        try:
            return (await http.post(f"{proxy.base_url}/chat/completions", json=call, headers=headers)).status_code
        except httpx.HTTPError:
            return 0  # the connection closed without an answer

    async with httpx.AsyncClient(timeout=90) as http:
        streams = [asyncio.create_task(stream(http)) for _ in range(8)]
        await asyncio.wait_for(started.wait(), 60)
        upstream.set_mode(latency=90)  # the calls from now on hang past the grace
        plain = [asyncio.create_task(hung(http)) for _ in range(4)]
        for _ in range(600):  # until every call is held
            if await _holds(db, key, "pending") == 12:
                break
            await asyncio.sleep(0.1)
        stopped_at = time.monotonic()
        assert proxy.proc is not None
        proxy.proc.send_signal(signal.SIGTERM)
        outcomes = await asyncio.gather(*streams)
        cut = await asyncio.gather(*plain)
        code = await asyncio.to_thread(proxy.proc.wait, GRACE + 20)
    exited = time.monotonic() - stopped_at
    upstream.reset()
    print(f"\nSIGTERM: 8 streams completed, {len(cut)} hung calls cut ({cut}), exit {exited:.1f} s after it ({code})")
    assert exited < GRACE + 10 and code == 0
    for _, text in outcomes:
        assert "[DONE]" in text and text.count('"content"') >= 12, text[-500:]
    usage = await _usage(db, [request_id for request_id, _ in outcomes])
    assert len(usage) == 8 and all(completion == 12 for _, completion, _, _ in usage.values()), usage
    assert all(status != 200 for status in cut)
    assert await _holds(db, key, "posted") == 8 and await _holds(db, key, "voided") == 4
    assert await _holds(db, key, "pending") == 0
    assert loaded.read_all(proxy.settings.gateway_home) == []


async def _holds(db, key: str, status: str) -> int:
    """How many holds of the account behind `key` have `status`."""
    async with db.connect() as conn:
        account = (
            await conn.execute(sa.select(virtual_keys.c.account_id).where(virtual_keys.c.key_hash == hash_key(key)))
        ).scalar_one()
        return (
            await conn.execute(
                sa.select(sa.func.count())
                .select_from(credit_holds)
                .where(credit_holds.c.account_id == account, credit_holds.c.status == status)
            )
        ).scalar_one()
