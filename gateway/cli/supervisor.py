"""`gateway up`: migrate, then run the LiteLLM proxy, the sidecar and (when payments are configured) the
chain watcher as supervised child processes.

One command, Ctrl-C stops everything cleanly; if any child dies, the others are stopped too and the exit
status says so. The supervisor itself runs the hold sweeper (gateway/jobs/sweeper.py), which also records
low-balance crossings.

Signals: SIGHUP reloads the LiteLLM config in every proxy worker (`gateway reload`); SIGTERM and SIGINT drain
and stop: each child gets SIGTERM, the proxy lets calls in flight finish for SHUTDOWN_GRACE_SECONDS, and
whatever is left of a child's process group after that is killed. No child outlives the supervisor: each
runs in its own process group (so a signal to the terminal's group reaches the supervisor alone, which
decides) and gets SIGTERM from the kernel if the supervisor dies (PR_SET_PDEATHSIG).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import functools
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console

from gateway.cli import reload
from gateway.cli.database import migrate_database
from gateway.cli.master_key import ensure_master_key
from gateway.cli.payments import check_chain_config
from gateway.config import DEFAULT_HOME, REPO_ROOT, Settings
from gateway.jobs.sweeper import SWEEP_INTERVAL_SECONDS, sweep_forever
from gateway.observability.logging import configure as configure_logging
from gateway.observability.metrics import MULTIPROC_ENV, fresh_multiproc_dir
from gateway.runtime import build_runtime

console = Console(stderr=True, soft_wrap=True)


@dataclass
class Child:
    name: str
    argv: list[str]
    metrics: str | None = "sidecar"  # the PROMETHEUS_MULTIPROC_DIR group it writes to (see `child_env`)
    proc: subprocess.Popen[bytes] | None = None


def proxy_workers(settings: Settings) -> int:
    """One LiteLLM worker per core: each is single-threaded Python (its GIL caps it at one core)."""
    return settings.proxy_workers or max(1, os.cpu_count() or 1)


def child_env(settings: Settings, master_key: str, metrics: str | None = None) -> dict[str, str]:
    """The environment of a child. `metrics` names its metrics folder, $GATEWAY_HOME/metrics/<metrics>,
    emptied here (so call it before starting the children that share it): a proxy's LiteLLM workers share
    "proxy-<PROXY_PORT>" (the default; one per proxy on a host), the sidecar and the watcher share "sidecar"
    (each `/metrics` sums its folder's files)."""
    env = dict(os.environ)
    folder = settings.gateway_home.resolve() / "metrics" / (metrics or f"proxy-{settings.proxy_port}")
    env[MULTIPROC_ENV] = str(fresh_multiproc_dir(folder))
    env["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
    env["LITELLM_MASTER_KEY"] = master_key
    env["GATEWAY_DATABASE_URL"] = settings.effective_database_url
    env["GATEWAY_HOME"] = str(settings.gateway_home.resolve())
    env["PROXY_PORT"] = str(settings.proxy_port)  # what a proxy worker reports it serves (`gateway reload`)
    env["GATEWAY_LITELLM_CONFIG"] = str(settings.effective_litellm_config)  # the sidecar publishes its price list
    env["GRACEFUL_SHUTDOWN_TIMEOUT"] = str(settings.shutdown_grace_seconds)  # LiteLLM's and uvicorn's drain
    env.pop("DATABASE_URL", None)  # LiteLLM would take it for its own Prisma database
    env.pop("REDIS_URL", None)  # LiteLLM would use it itself, on every request (see Settings.redis_url)
    env.pop("GATEWAY_REDIS_URL", None)
    if settings.redis_url:
        env["GATEWAY_REDIS_URL"] = settings.redis_url
    env["FORWARDED_ALLOW_IPS"] = settings.forwarded_allow_ips  # LiteLLM's uvicorn reads it (default: 127.0.0.1)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    return env


def proxy_argv(settings: Settings, config: Path = REPO_ROOT / "litellm_config.yaml") -> list[str]:
    return [
        sys.executable,
        "-m",
        "gateway.proxy.launch",  # LiteLLM's command line, SIGHUP = reload in place
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
        Child("proxy", proxy_argv(settings, settings.effective_litellm_config), metrics=None),
        Child("sidecar", [*gateway, "sidecar"]),
    ]
    if payments_configured:
        procs.append(Child("watcher", [*gateway, "watch"]))
    return procs


def credits_page_url(settings: Settings) -> str:
    """Where users open the credits page: SIWE_DOMAIN's host (sign-in works only there)."""
    host = settings.siwe_domain.rpartition(":")[0] or settings.siwe_domain
    scheme = "http" if host.strip("[]") in {"localhost", "127.0.0.1", "::1"} else "https"
    return f"{scheme}://{settings.siwe_domain}/"


def _next_steps(settings: Settings, master_key_source: str, payments_note: str | None) -> None:
    base = f"http://{settings.host}:{settings.proxy_port}/v1"
    console.print(
        f"[bold]credit-gateway[/bold] starting: proxy on {base} ({proxy_workers(settings)} workers), "
        f"sidecar on http://{settings.host}:{settings.sidecar_port}/api/v1"
    )
    console.print(f"  credits page: {credits_page_url(settings)} (open it at this host: sign-in is for SIWE_DOMAIN)")
    console.print(
        f"  database: {'embedded SQLite in ' + str(settings.gateway_home) if settings.is_embedded else 'PostgreSQL'}"
        f"; key cache: {'Redis' if settings.redis_url else 'in-process'}; admin key: {master_key_source}"
    )
    # the commands must reach this gateway's database: its GATEWAY_HOME (or DATABASE_URL) from another terminal
    env = "" if settings.gateway_home == DEFAULT_HOME else f"GATEWAY_HOME={settings.gateway_home.resolve()} "
    also = " (with this DATABASE_URL set)" if settings.database_url else ""
    console.print(f"  next steps (in another terminal{also}):", highlight=False)
    console.print(
        f"    {env}.venv/bin/gateway credits grant --wallet 0x1111111111111111111111111111111111111111"
        " --credits 1000 --reference first-grant",
        highlight=False,
        markup=False,
    )
    console.print(
        f"    {env}.venv/bin/gateway keys create --wallet 0x1111111111111111111111111111111111111111",
        highlight=False,
        markup=False,
    )
    console.print(f"    OpenAI SDK: base_url='{base}', api_key='<the sk-cg-... key>', model='demo'")
    console.print(f"  payments: {payments_note or 'watching USDC transfers to ' + str(settings.dao_wallet_address)}")
    console.print("  Ctrl-C stops the gateway.")


def busy_port(settings: Settings) -> str | None:
    """'port 4000 busy: set PROXY_PORT' when a port `gateway up` would listen on is taken, else None."""
    for port, setting in ((settings.proxy_port, "PROXY_PORT"), (settings.sidecar_port, "SIDECAR_PORT")):
        with socket.socket(socket.AF_INET6 if ":" in settings.host else socket.AF_INET) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as servers bind: only a listener is busy
            try:
                probe.bind((settings.host, port))
            except OSError:
                return f"port {port} busy: set {setting} to a free port (something listens on {settings.host}:{port})"
    return None


async def _supervise(procs: list[Child], settings: Settings) -> int:
    report = functools.partial(console.print, highlight=False, markup=False)
    rt = build_runtime(settings)  # the sweeper's
    sweeper = asyncio.create_task(sweep_forever(rt.ledger, settings, SWEEP_INTERVAL_SECONDS, report))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    reloads: set[asyncio.Future[None]] = set()
    loop.add_signal_handler(signal.SIGHUP, lambda: _reload(loop, settings, reloads))
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
        await loop.run_in_executor(None, _terminate, procs, settings.shutdown_grace_seconds + STOP_MARGIN_SECONDS)
        await rt.aclose()
    return status


def _reload(loop: asyncio.AbstractEventLoop, settings: Settings, pending: set[asyncio.Future[None]]) -> None:
    """SIGHUP: `gateway reload`, its lines on the supervisor's output."""
    console.print("SIGHUP: reloading the LiteLLM config in every proxy worker…")

    def run() -> None:
        answered, silent = reload.ask(settings.gateway_home, timeout=30)
        reload.report(answered, silent, functools.partial(console.print, markup=False, highlight=False))

    future = loop.run_in_executor(None, run)
    pending.add(future)
    future.add_done_callback(pending.discard)


STOP_MARGIN_SECONDS = 10  # past the proxy's drain: LiteLLM's lifespan teardown and the spool's last flush
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """In the child, before exec: its own process group, and SIGTERM when the supervisor dies (Linux)."""
    os.setpgid(0, 0)
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() == 1:  # the supervisor died before prctl took effect
        os.kill(os.getpid(), signal.SIGTERM)


def start(child: Child, env: dict[str, str]) -> None:
    child.proc = subprocess.Popen(child.argv, env=env, cwd=str(REPO_ROOT), preexec_fn=_die_with_parent)


def _terminate(procs: list[Child], grace: float) -> None:
    """SIGTERM to each child, `grace` seconds for them all to drain and exit, then SIGKILL to whatever is left
    of each child's process group (a LiteLLM worker whose parent was killed would otherwise run on)."""
    for child in procs:
        if child.proc and child.proc.poll() is None:
            child.proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + grace
    for child in procs:
        if child.proc is None:
            continue
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.proc.wait(timeout=max(0.0, deadline - time.monotonic()))
    for child in procs:
        if child.proc is None:
            continue
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(child.proc.pid, signal.SIGKILL)
        child.proc.wait()


def check_models(settings: Settings, *, refuse: bool = True) -> bool:
    """`gateway check` before anything starts: each problem one line (the model and the fix), then the price
    list published for the sidecar. With `refuse`, an error means False (do not start) and nothing published;
    without, the priced models are published and the unpriced ones named (calls to them are refused anyway)."""
    from gateway.proxy.catalog import load, publish

    catalog = load(settings.effective_litellm_config, settings.user_price_markup_factor)
    stop = refuse and bool(catalog.errors)
    for problem in catalog.problems:
        console.print(
            f"{problem.line()}{'; not starting' if stop and problem.severity == 'error' else ''}", markup=False
        )
    if stop:
        return False
    publish(catalog, settings.price_list_path)
    return True


def serve(settings: Settings) -> int:
    configure_logging(settings.log_format)  # the sweeper's lines; the children configure their own
    chain = check_chain_config(settings)
    if chain.error:
        console.print(f"[red]error:[/red] {chain.error}; not starting", highlight=False)
        return 2
    busy = busy_port(settings)
    if busy:
        console.print(f"[red]error:[/red] {busy}; not starting", highlight=False)
        return 2
    if not check_models(settings):
        return 2
    master_source = "LITELLM_MASTER_KEY" if settings.litellm_master_key else f"{settings.gateway_home}/master_key"
    master_key = ensure_master_key(settings)
    migrate_database(settings.effective_database_url)  # DatabaseNotReady: `gateway up` says so in one line
    payments_configured = bool(settings.chain_rpc_url and settings.dao_wallet_address)
    _next_steps(settings, master_source, chain.note)
    procs = children(settings, payments_configured)
    envs = {group: child_env(settings, master_key, group) for group in {child.metrics for child in procs}}
    for child in procs:
        start(child, envs[child.metrics])
    return asyncio.run(_supervise(procs, settings))
