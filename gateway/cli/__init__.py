"""The `gateway` command line (typer + rich): run the gateway, and administer accounts, keys and credits.

One module per command group (accounts, keys, credits, payments, serve, catalog, reload, audit); this module
registers them on `app`. Commands that print data take `--json` and then print exactly one JSON document.
Bad arguments print one clear line and exit with status 2; a database that cannot be reached or is not
migrated, one line and status 1 (gateway/cli/database.py). Amounts in JSON are integers of micros; credits are
decimal strings.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from importlib.metadata import version
from typing import Any

import typer
from typer.core import TyperGroup

from gateway.cli import accounts, audit, catalog, credits, keys, payments, reload, serve
from gateway.cli.output import err, out
from gateway.config import SettingsError


class _Listed(TyperGroup):
    """Lists the commands in COMMANDS' order (typer's own puts every command before every group)."""

    def list_commands(self, ctx: Any) -> list[str]:  # typer's vendored click.Context
        return sorted(super().list_commands(ctx), key=lambda name: ORDER.index(name) if name in ORDER else len(ORDER))


app = typer.Typer(
    help="credit-gateway: a credit-metered LLM gateway on LiteLLM.",
    no_args_is_help=True,
    add_completion=False,
    cls=_Listed,
)


def _version(value: bool) -> None:
    if value:
        out.print(f"gateway {version('credit-gateway')}", highlight=False)
        raise typer.Exit()


@app.callback()
def _options(
    show_version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """credit-gateway: a credit-metered LLM gateway on LiteLLM."""


# Grouped as a newcomer needs them (typer's help panels, in this order): run it, give
# out access, the money, then what an operator runs beside it.
RUN, ACCESS, MONEY, OPERATIONS = "Run the gateway", "Accounts and keys", "Money", "Operations"
COMMANDS: list[tuple[Callable[..., object] | typer.Typer, str]] = [
    (serve.up, RUN),
    (catalog.check, RUN),
    (catalog.models, RUN),
    (serve.proxy, RUN),
    (serve.sidecar, RUN),
    (accounts.app, ACCESS),
    (keys.app, ACCESS),
    (credits.credits_app, MONEY),
    (credits.balance, MONEY),
    (credits.usage, MONEY),
    (payments.reconcile, MONEY),
    (accounts.revenue, MONEY),
    (serve.migrate, OPERATIONS),
    (serve.sweep, OPERATIONS),
    (reload.reload, OPERATIONS),
    (payments.watch, OPERATIONS),
    (audit.audit, OPERATIONS),
]
GROUPS = {accounts.app: "accounts", keys.app: "keys", credits.credits_app: "credits"}
ORDER = [GROUPS[c] if isinstance(c, typer.Typer) else c.__name__.replace("_", "-") for c, _ in COMMANDS]
for command, panel in COMMANDS:
    if isinstance(command, typer.Typer):
        app.add_typer(command, name=GROUPS[command], rich_help_panel=panel)
    else:
        app.command(rich_help_panel=panel)(command)


def main() -> None:
    """Console entry: like `app()`, but a usage error or an invalid setting is one line on stderr and exit 2."""
    try:
        code = app(standalone_mode=False)
    except typer.TyperException as exc:  # typer's own click: usage errors (status 2) and the like
        if type(exc).__name__ != "NoArgsIsHelpError":  # that one has printed the help already (as typer checks it)
            err.print(f"error: {exc.format_message()}", markup=False, highlight=False)
        sys.exit(exc.exit_code)
    except SettingsError as exc:  # from get_settings(), in any command
        err.print(f"error: {exc}", markup=False, highlight=False)
        sys.exit(2)
    except typer.Abort:
        sys.exit(130)
    sys.exit(code if isinstance(code, int) else 0)
