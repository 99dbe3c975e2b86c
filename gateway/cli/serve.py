"""`gateway up`, `gateway sidecar` and `gateway migrate`: run the gateway's processes."""

from __future__ import annotations

from pathlib import Path

import typer

from gateway.cli.common import JsonOpt, emit
from gateway.cli.database import DatabaseNotReady, migrate_database, run_with_database, shown
from gateway.cli.output import fail, out
from gateway.config import get_settings


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
    first."""
    run_with_database(get_settings().effective_database_url)
    from gateway.sidecar.app import serve  # FastAPI and SIWE load only for this command

    serve(get_settings())


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
