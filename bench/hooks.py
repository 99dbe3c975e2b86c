"""Hook micro-benchmark: the gateway's own CPU per billed call, measured in-process, step by step.

The hooks are called exactly as LiteLLM calls them, in its order, with its types: `custom_auth` with a Starlette
request the guard has admitted, `async_pre_call_hook` with LiteLLM's `UserAPIKeyAuth` and `DualCache`, then (plain)
`async_post_call_success_hook` with a `ModelResponse` carrying usage and `_hidden_params["response_cost"]`, or
(streamed) `async_post_call_streaming_iterator_hook` over `ModelResponseStream` chunks ending in a usage chunk;
then the cost headers the guard adds to the response (`gateway.proxy.exposure.cost_headers`) and the background
`async_log_success_event`. Prices come from a real LiteLLM `Router`; the ledger is real: PostgreSQL + Redis, and
the embedded default (SQLite, no Redis), each in a child process of its own (a process builds one runtime).

CPU is `time.process_time` (every thread of the process: the SQLite writer's too; the database server's own CPU
is not ours and not counted). Each step is wrapped where the hooks call it, and reported exclusive of the steps
it calls; "hooks' own Python" is what is left of a call. Calls run one at a time, so nothing else shares the loop.

`python -m bench.hooks` (BENCH_QUICK=1: 2,000 calls per variant instead of 10,000); `make bench` runs it too.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

CALLS = 10_000
QUICK_CALLS = 2_000
WARMUP = 200
MODEL = "gpt-4o-mini"
MESSAGES = [
    {"role": "system", "content": "You are a helpful assistant."},
    {"role": "user", "content": "Write one sentence about the sea."},
]
WORDS = 8
STEPS = (
    "key lookup",
    "planning and token counting",
    "hold",
    "in-flight bookkeeping",
    "settle",
    "metrics",
    "log line",
    "headers",
    "backstop",
)
BACKENDS = ("postgres", "sqlite")
MODES = ("plain", "stream")


class Meter:
    """Exclusive CPU per step: a step's time minus that of the steps it calls (calls run one at a time)."""

    def __init__(self) -> None:
        self.totals: dict[str, int] = defaultdict(int)
        self._stack: list[int] = []  # CPU of the children of each open step
        self.on = False

    @contextlib.contextmanager
    def step(self, name: str) -> Iterator[None]:
        if not self.on:
            yield
            return
        started = time.process_time_ns()
        self._stack.append(0)
        try:
            yield
        finally:
            elapsed = time.process_time_ns() - started
            children = self._stack.pop()
            self.totals[name] += elapsed - children
            if self._stack:
                self._stack[-1] += elapsed

    def wrap(self, name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        if asyncio.iscoroutinefunction(fn):

            @functools.wraps(fn)
            async def timed_async(*args: Any, **kwargs: Any) -> Any:
                with self.step(name):
                    return await fn(*args, **kwargs)

            return timed_async

        @functools.wraps(fn)
        def timed(*args: Any, **kwargs: Any) -> Any:
            with self.step(name):
                return fn(*args, **kwargs)

        return timed


def _instrument(meter: Meter) -> None:
    """Wrap each step where the hooks look it up (module attributes, read at call time)."""
    from gateway import ledger
    from gateway.proxy import bearer, call_metrics, callbacks, exposure
    from gateway.proxy.inflight import Inflight

    bearer.resolve_key = meter.wrap("key lookup", bearer.resolve_key)
    callbacks.plan_request = meter.wrap("planning and token counting", callbacks.plan_request)
    ledger.Ledger.hold = meter.wrap("hold", ledger.Ledger.hold)
    ledger.Ledger.settle = meter.wrap("settle", ledger.Ledger.settle)
    for name in ("add", "get", "done"):
        setattr(Inflight, name, meter.wrap("in-flight bookkeeping", getattr(Inflight, name)))
    call_metrics.held = meter.wrap("metrics", call_metrics.held)
    call_metrics.settled = meter.wrap("metrics", call_metrics.settled)
    call_metrics._log = meter.wrap("log line", call_metrics._log)
    exposure.cost_headers = meter.wrap("headers", exposure.cost_headers)
    hooks = callbacks.BillingCallbacks
    hooks.async_log_success_event = meter.wrap("backstop", hooks.async_log_success_event)


def _environment(backend: str, home: Path) -> None:
    """The proxy's environment: what `gateway up` gives a LiteLLM worker (gateway.cli.supervisor.child_env)."""
    os.environ.update(
        LITELLM_LOCAL_MODEL_COST_MAP="True",
        HF_HUB_OFFLINE="1",
        GATEWAY_HOME=str(home),
        LITELLM_MASTER_KEY="sk-admin-bench-hooks",
        LOG_FORMAT="json",
        PROMETHEUS_MULTIPROC_DIR=str(home / "metrics"),
    )
    (home / "metrics").mkdir()
    os.environ.pop("GATEWAY_REDIS_URL", None)
    if backend == "postgres":
        os.environ["GATEWAY_REDIS_URL"] = "redis://127.0.0.1:6379/0"


async def _customer(db: Any) -> str:
    from gateway import ledger
    from gateway.accounts.keys import create_key
    from gateway.accounts.wallets import get_or_create_account

    account = await get_or_create_account(db, "0x" + uuid.uuid4().hex + uuid.uuid4().hex[:8])
    await ledger.post_entry(db, account.id, 10**12, "admin_grant", f"bench-hooks-{account.id}")
    return (await create_key(db, account.id, "bench")).raw_key


def _router() -> None:
    from litellm import Router
    from litellm.proxy import proxy_server

    deployment = {"model": f"openai/{MODEL}", "api_key": "x", "api_base": "http://127.0.0.1:9/v1"}
    proxy_server.llm_router = Router(model_list=[{"model_name": MODEL, "litellm_params": deployment}])


def _request(raw_key: str) -> Any:
    from starlette.requests import Request

    from gateway.proxy import guard

    scope = {
        "type": "http",
        "method": "POST",
        "path": "/v1/chat/completions",
        "raw_path": b"/v1/chat/completions",
        "query_string": b"",
        "headers": [(b"authorization", f"Bearer {raw_key}".encode()), (b"content-type", b"application/json")],
        guard.ADMITTED: True,
        guard.REQUEST_ID: uuid.uuid4().hex,
    }
    return Request(scope)


def _response() -> Any:
    import litellm

    response = litellm.ModelResponse(
        model=MODEL,
        choices=[{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "w " * WORDS}}],
        usage=litellm.Usage(prompt_tokens=26, completion_tokens=WORDS, total_tokens=26 + WORDS),
    )
    response._hidden_params["response_cost"] = 26 * 0.15e-6 + WORDS * 0.6e-6
    return response


def _chunks() -> list[Any]:
    import litellm

    chunks = [
        litellm.ModelResponseStream(model=MODEL, choices=[{"index": 0, "delta": {"content": "w "}}])
        for _ in range(WORDS)
    ]
    chunks.append(
        litellm.ModelResponseStream(model=MODEL, choices=[{"index": 0, "delta": {}, "finish_reason": "stop"}])
    )
    last = litellm.ModelResponseStream(model=MODEL, choices=[])
    last.usage = litellm.Usage(prompt_tokens=26, completion_tokens=WORDS, total_tokens=26 + WORDS)
    last.usage.cost = 26 * 0.15e-6 + WORDS * 0.6e-6  # LiteLLM's proxy puts the stream's cost here
    chunks.append(last)
    return chunks


async def _stream(chunks: list[Any]) -> AsyncIterator[Any]:
    for chunk in chunks:
        yield chunk


async def _one_call(raw_key: str, streamed: bool) -> int:
    """One billed call through every hook, as LiteLLM's proxy makes it: the CPU (ns) of the hooks alone (what
    stands in for LiteLLM's own work, the request, response and chunk objects, is built before the clock starts)."""
    from litellm.caching.dual_cache import DualCache

    from gateway.proxy import exposure
    from gateway.proxy.auth import user_api_key_auth
    from gateway.proxy.callbacks import proxy_handler_instance as hooks
    from gateway.proxy.inflight import tagged

    request, cache, source = _request(raw_key), DualCache(), _stream(_chunks()) if streamed else _response()
    data: dict[str, Any] = {"model": MODEL, "messages": MESSAGES, "max_tokens": 64, "metadata": {}}
    if streamed:
        data["stream"] = True
    slo = {"prompt_tokens": 26, "completion_tokens": WORDS, "response_cost": 1e-5}
    started = time.process_time_ns()
    user = await user_api_key_auth(request, raw_key)
    data = await hooks.async_pre_call_hook(user, cache, data, "acompletion")
    response: Any = None
    if streamed:
        async for _ in hooks.async_post_call_streaming_iterator_hook(user, source, data):
            pass
    else:
        response = await hooks.async_post_call_success_hook(data, user, source)
    exposure.cost_headers(tagged(data))  # what the guard adds to the response's headers
    kwargs = {"litellm_params": {"metadata": data["metadata"]}, "standard_logging_object": slo}
    await hooks.async_log_success_event(kwargs, response, None, None)
    return time.process_time_ns() - started


async def _measure(calls: int, backend: str) -> dict[str, Any]:
    meter = Meter()
    _router()
    _instrument(meter)
    from gateway.proxy.runtime import runtime

    raw_key = await _customer(runtime().db)
    results: dict[str, Any] = {}
    for mode in MODES:
        streamed = mode == "stream"
        for _ in range(WARMUP):
            await _one_call(raw_key, streamed)
        meter.totals.clear()
        meter.on = True
        wall = time.perf_counter()
        total = 0
        for _ in range(calls):
            total += await _one_call(raw_key, streamed)
        wall_s = time.perf_counter() - wall
        meter.on = False
        steps = {name: meter.totals.get(name, 0) / calls / 1000 for name in STEPS}
        steps["hooks' own Python"] = total / calls / 1000 - sum(steps.values())
        results[mode] = {"total_us": total / calls / 1000, "wall_us": wall_s * 1e6 / calls, "steps": steps}
    await _check_books(runtime().db, backend)
    return results


async def _check_books(db: Any, backend: str) -> None:
    """Every measured call billed once, no hold left, the books balanced (else the figures mean nothing)."""
    import sqlalchemy as sa

    from gateway.db.schema import billing_accounts, credit_holds, credit_ledger

    async with db.connect() as conn:
        open_holds = (
            await conn.execute(
                sa.select(sa.func.count()).select_from(credit_holds).where(credit_holds.c.status == "pending")
            )
        ).scalar_one()
        balance = (await conn.execute(sa.select(sa.func.sum(billing_accounts.c.balance_micros)))).scalar_one()
        ledger = (await conn.execute(sa.select(sa.func.sum(credit_ledger.c.amount_micros)))).scalar_one()
    if open_holds or balance != ledger:
        raise SystemExit(f"{backend}: {open_holds} holds left pending, balances {balance} vs ledger {ledger}")


def _child(backend: str, calls: int) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-hooks-") as folder:
        home = Path(folder)
        _environment(backend, home)
        with contextlib.ExitStack() as stack:
            if backend == "postgres":
                from devtools.pg import migrated_database

                url = stack.enter_context(migrated_database("gw_bench_hooks"))
            else:
                from gateway.db.migrate import upgrade

                url = f"sqlite+aiosqlite:///{home / 'gateway.db'}"
                upgrade(url)
            os.environ["GATEWAY_DATABASE_URL"] = url
            print(json.dumps(asyncio.run(_measure(calls, backend))))


def run(calls: int, console: Console) -> dict[str, Any]:
    results = {}
    for backend in BACKENDS:
        console.print(f"[bold]hooks[/]: {calls:,} plain and {calls:,} streamed calls on {backend} ...")
        done = subprocess.run(
            [sys.executable, "-m", "bench.hooks", "--child", backend, str(calls)],
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            raise SystemExit(f"bench.hooks on {backend} failed:\n{done.stderr[-4000:]}")
        results[backend] = json.loads(done.stdout.strip().splitlines()[-1])
    return results


COLUMNS = [f"{backend} {mode}" for backend in BACKENDS for mode in MODES]


def _rows(results: dict[str, Any]) -> list[list[str]]:
    """One row per step, then the total CPU and the wall time, µs per call, one column per backend and mode."""
    cells = [results[backend][mode] for backend in BACKENDS for mode in MODES]
    rows = [[name, *(f"{cell['steps'][name]:.0f}" for cell in cells)] for name in (*STEPS, "hooks' own Python")]
    rows.append(["total CPU", *(f"{cell['total_us']:.0f}" for cell in cells)])
    rows.append(["wall time per call (with the benchmark's own work)", *(f"{cell['wall_us']:.0f}" for cell in cells)])
    return rows


def markdown(results: dict[str, Any], calls: int) -> str:
    lines = [["step (µs per call)", *COLUMNS], ["---"] * (len(COLUMNS) + 1), *_rows(results)]
    targets = "targets: total CPU <= 500 µs on PostgreSQL, <= 800 µs on the embedded default"
    return f"### Hook micro-benchmark ({calls:,} calls per column; {targets})\n\n" + "\n".join(
        f"| {' | '.join(line)} |" for line in lines
    )


def main(quick: bool = False, console: Console | None = None) -> str:
    console = console or Console()
    calls = QUICK_CALLS if quick else CALLS
    results = run(calls, console)
    table = Table(title="hooks: µs per call")
    for column in ("step", *COLUMNS):
        table.add_column(column, justify="left" if column == "step" else "right")
    for row in _rows(results):
        table.add_row(*row)
    console.print(table)
    return markdown(results, calls)


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--child":
        _child(sys.argv[2], int(sys.argv[3]))
    else:
        main(quick=os.environ.get("BENCH_QUICK") == "1")
