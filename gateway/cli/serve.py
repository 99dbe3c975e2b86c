"""Run the gateway's processes: `gateway up` (everything at once, the embedded default), and the roles a
deployment runs one per container: `gateway proxy` (a replica: only the LiteLLM proxy with the gateway's
hooks, started exactly as `gateway up` starts it, by exec, so the process a container engine signals is the
proxy itself), `gateway sidecar`, `gateway sweep` (the hold sweeper alone) and `gateway migrate`."""

from __future__ import annotations

import asyncio
import functools
import json
import os
import signal
import sys
from pathlib import Path

import typer

from gateway.cli.common import JsonOpt, emit
from gateway.cli.database import DatabaseNotReady, migrate_database, run_with_database, shown
from gateway.cli.master_key import ensure_master_key
from gateway.cli.output import err, fail, out
from gateway.cli.supervisor import check_models, child_env, proxy_argv
from gateway.config import Settings, get_settings
from gateway.jobs.sweeper import SWEEP_INTERVAL_SECONDS, sweep_forever, sweep_once
from gateway.runtime import build_runtime


def migrate(as_json: bool = JsonOpt) -> None:
    """Apply database migrations."""
    url = get_settings().effective_database_url
    try:
        migrate_database(url)
    except DatabaseNotReady as exc:
        fail(str(exc), 1)
    emit(as_json, {"migrated": True, "database": shown(url)}, lambda: out.print(f"database up to date: {shown(url)}"))


def sidecar() -> None:
    """Serve the sign-in, keys and credits API alone on HOST:SIDECAR_PORT (`up` runs it too). Run `migrate`
    first. It publishes the price list it serves from GATEWAY_LITELLM_CONFIG first (naming unpriced models)."""
    settings = get_settings()
    run_with_database(settings.effective_database_url)
    check_models(settings, refuse=False)  # the price list to serve; the proxy refuses unpriced models itself
    from gateway.sidecar.app import serve  # FastAPI and SIWE load only for this command

    serve(settings)


UpConfigOpt = typer.Option(
    None, "--config", help="The LiteLLM config to run (default: GATEWAY_LITELLM_CONFIG, else the repo's)."
)


def up(config: Path | None = UpConfigOpt) -> None:
    """Start the gateway: check the LiteLLM config (`gateway check`), migrate, then run the LiteLLM proxy (and
    sidecar) until Ctrl-C."""
    from gateway.cli.supervisor import serve

    settings = get_settings()
    if config is not None:
        settings = settings.model_copy(update={"litellm_config": config})
    try:
        raise typer.Exit(serve(settings))
    except DatabaseNotReady as exc:
        fail(str(exc), 1)


ConfigOpt = typer.Option(
    None,
    "--config",
    exists=True,
    dir_okay=False,
    readable=True,
    help="The LiteLLM config: model list, prices, and the gateway's hooks (default: GATEWAY_LITELLM_CONFIG, else "
    "the repo's).",
)
OnceOpt = typer.Option(False, "--once", help="Sweep once, print what was released, and exit.")
IntervalOpt = typer.Option(SWEEP_INTERVAL_SECONDS, "--interval", min=1, help="Seconds between sweeps.")
JsonOpt = typer.Option(False, "--json", help="With --once: print one JSON document.")


def proxy(config: Path | None = ConfigOpt) -> None:
    """Run the LiteLLM proxy with the gateway's hooks alone on HOST:PROXY_PORT (a replica). Run `migrate` first.
    A model its config cannot price is refused per call (400); `gateway check` lists such models."""
    settings = get_settings()
    if config is not None:
        settings = settings.model_copy(update={"litellm_config": config})
    run_with_database(settings.effective_database_url)  # unreachable or unmigrated: one line, status 1
    argv = proxy_argv(settings, settings.effective_litellm_config)
    env = child_env(settings, ensure_master_key(settings))
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(argv[0], argv, env)


def sweep(once: bool = OnceOpt, interval: float = IntervalOpt, as_json: bool = JsonOpt) -> None:
    """Release holds whose settle was lost (past HOLD_TTL_SECONDS + HOLD_SWEEP_GRACE_SECONDS), now and every
    --interval seconds until stopped. Several sweepers may run at once: each hold is released once."""
    settings = get_settings()
    if not once:
        run_with_database(settings.effective_database_url, lambda _db: _sweep_until_stopped(settings, interval))
        return
    expired = run_with_database(settings.effective_database_url, lambda _db: _sweep_once(settings)) or []
    if as_json:
        sys.stdout.write(json.dumps({"expired": expired}) + "\n")
    elif expired:
        out.print(f"released {len(expired)} holds whose settle was lost: {', '.join(expired)}", highlight=False)
    else:
        out.print("no hold to release")


async def _sweep_once(settings: Settings) -> list[str]:
    rt = build_runtime(settings)
    try:
        return await sweep_once(rt.ledger, settings)
    finally:
        await rt.aclose()


async def _sweep_until_stopped(settings: Settings, interval: float) -> None:
    """The sweep loop until SIGINT or SIGTERM (as PID 1 in a container, Python ignores SIGTERM by default)."""
    report = functools.partial(err.print, highlight=False, markup=False)
    rt = build_runtime(settings)
    task = asyncio.create_task(sweep_forever(rt.ledger, settings, interval, report))
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, task.cancel)
    report(f"hold sweeper: every {interval:g} s, releasing holds {settings.hold_sweep_grace_seconds} s past their TTL")
    try:
        await task
    except asyncio.CancelledError:
        err.print("hold sweeper stopped")
