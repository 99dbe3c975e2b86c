"""`gateway up`: migrate, then run the LiteLLM proxy, the sidecar and (when payments are configured) the
chain watcher as supervised child processes.

One command, Ctrl-C stops everything cleanly; if any child dies, the others are stopped too and the exit
status says so. The supervisor itself sweeps holds whose settle was lost (past their TTL) and records
low-balance crossings.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console

from gateway import ledger
from gateway.accounts.low_balance import record_crossings
from gateway.cli.database import migrate_database
from gateway.cli.master_key import ensure_master_key
from gateway.cli.payments import check_chain_config
from gateway.config import REPO_ROOT, Settings
from gateway.db.engine import dispose_all, get_engine

SWEEP_INTERVAL_SECONDS = 30
console = Console(stderr=True, soft_wrap=True)


@dataclass
class Child:
    name: str
    argv: list[str]
    proc: subprocess.Popen | None = None


def proxy_workers(settings: Settings) -> int:
    """One LiteLLM worker per core: each is single-threaded Python (its GIL caps it at one core)."""
    return settings.proxy_workers or max(1, os.cpu_count() or 1)


def child_env(settings: Settings, master_key: str) -> dict[str, str]:
    env = dict(os.environ)
    env["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
    env["LITELLM_MASTER_KEY"] = master_key
    env["GATEWAY_DATABASE_URL"] = settings.effective_database_url
    env["GATEWAY_HOME"] = str(settings.gateway_home.resolve())
    env.pop("DATABASE_URL", None)  # LiteLLM would take it for its own Prisma database
    env.pop("REDIS_URL", None)  # LiteLLM would use it itself, on every request (see Settings.redis_url)
    env.pop("GATEWAY_REDIS_URL", None)
    if settings.redis_url:
        env["GATEWAY_REDIS_URL"] = settings.redis_url
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    return env


def proxy_argv(settings: Settings, config: Path = REPO_ROOT / "litellm_config.yaml") -> list[str]:
    litellm = Path(sys.executable).with_name("litellm")
    return [
        str(litellm),
        "--config",
        str(config),
        "--host",
        settings.host,
        "--port",
        str(settings.proxy_port),
        "--num_workers",
        str(proxy_workers(settings)),
        # uvicorn kills a worker that does not answer its health ping within 5 s, and a new LiteLLM worker
        # spends ~10 s of CPU importing before it can: on a busy 2-core machine, a kill-and-respawn loop.
        "--timeout_worker_healthcheck",
        "120",
    ]


def children(settings: Settings, payments_configured: bool) -> list[Child]:
    gateway = [sys.executable, "-m", "gateway"]
    procs = [
        Child("proxy", proxy_argv(settings, settings.effective_litellm_config)),
        Child("sidecar", [*gateway, "sidecar"]),
    ]
    if payments_configured:
        procs.append(Child("watcher", [*gateway, "watch"]))
    return procs


def _next_steps(settings: Settings, master_key_source: str, payments_note: str | None) -> None:
    base = f"http://{settings.host}:{settings.proxy_port}/v1"
    console.print(
        f"[bold]credit-gateway[/bold] starting: proxy on {base} ({proxy_workers(settings)} workers), "
        f"sidecar on http://{settings.host}:{settings.sidecar_port}/api/v1"
    )
    console.print(
        f"  database: {'embedded SQLite in ' + str(settings.gateway_home) if settings.is_embedded else 'PostgreSQL'}"
        f"; key cache: {'Redis' if settings.redis_url else 'in-process'}; admin key: {master_key_source}"
    )
    console.print("  next steps (in another terminal):")
    console.print(
        "    .venv/bin/gateway credits grant --wallet 0x1111111111111111111111111111111111111111 --credits 1000 --reference first-grant"
    )
    console.print("    .venv/bin/gateway keys create --wallet 0x1111111111111111111111111111111111111111")
    console.print(f"    OpenAI SDK: base_url='{base}', api_key='<the sk-cg-... key>', model='demo'")
    console.print(f"  payments: {payments_note or 'watching USDC transfers to ' + str(settings.dao_wallet_address)}")
    console.print("  Ctrl-C stops the gateway.")


async def _sweep_holds(settings: Settings) -> None:
    db = get_engine(settings.effective_database_url)
    while True:
        await asyncio.sleep(SWEEP_INTERVAL_SECONDS)
        for attempt in (1, 2):  # a second try takes a fresh connection after the database came back
            try:
                await ledger.expire_stale_holds(db, grace_seconds=settings.hold_sweep_grace_seconds)
                await record_crossings(db)  # the low-balance signal, off the request path
                break
            except Exception as exc:  # noqa: BLE001 - keep sweeping; the database may come back
                if attempt == 2:
                    console.print(f"hold sweeper: {type(exc).__name__}; retrying in {SWEEP_INTERVAL_SECONDS} s")


async def _supervise(procs: list[Child], settings: Settings) -> int:
    sweeper = asyncio.create_task(_sweep_holds(settings))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    status = 0
    try:
        while not stop.is_set():
            for child in procs:
                code = child.proc.poll() if child.proc else None
                if code is not None:
                    console.print(f"[red]{child.name} exited with status {code}; stopping the gateway[/red]")
                    return code or 1
            try:
                await asyncio.wait_for(stop.wait(), timeout=0.5)
            except TimeoutError:
                pass
        console.print("stopping…")
    finally:
        sweeper.cancel()
        _terminate(procs)
        await dispose_all()
    return status


def _terminate(procs: list[Child]) -> None:
    for child in procs:
        if child.proc and child.proc.poll() is None:
            child.proc.send_signal(signal.SIGTERM)
    for child in procs:
        if child.proc is None:
            continue
        try:
            child.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            child.proc.kill()
            child.proc.wait()


def _check_models(settings: Settings) -> bool:
    """`gateway check` before anything starts: each error one line (the model and the fix); the price list
    published for the sidecar when there is none."""
    from gateway.proxy.catalog import load, publish

    catalog = load(settings.effective_litellm_config, settings.user_price_markup_factor)
    for problem in catalog.problems:
        console.print(f"{problem.line()}{'; not starting' if problem.severity == 'error' else ''}", markup=False)
    if catalog.errors:
        return False
    publish(catalog, settings.price_list_path)
    return True


def serve(settings: Settings) -> int:
    chain = check_chain_config(settings)
    if chain.error:
        console.print(f"[red]error:[/red] {chain.error}; not starting", highlight=False)
        return 2
    if not _check_models(settings):
        return 2
    master_source = "LITELLM_MASTER_KEY" if settings.litellm_master_key else f"{settings.gateway_home}/master_key"
    master_key = ensure_master_key(settings)
    migrate_database(settings.effective_database_url)  # DatabaseNotReady: `gateway up` says so in one line
    payments_configured = bool(settings.chain_rpc_url and settings.dao_wallet_address)
    _next_steps(settings, master_source, chain.note)
    env = child_env(settings, master_key)
    procs = children(settings, payments_configured)
    for child in procs:
        child.proc = subprocess.Popen(child.argv, env=env, cwd=str(REPO_ROOT))
    return asyncio.run(_supervise(procs, settings))
