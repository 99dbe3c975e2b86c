"""The `gateway` command line (typer + rich): run the gateway, and administer accounts, keys and credits.

One module per command group (accounts, keys, credits, payments, serve, catalog, audit); this module registers them on
`app`. Commands that print data take `--json` and then print exactly one JSON document. Bad arguments print
one clear line and exit with status 2; a database that cannot be reached or is not migrated, one line and
status 1 (gateway/cli/database.py). Amounts in JSON are integers of micros; credits are decimal strings.
"""

from __future__ import annotations

import sys

import typer

from gateway.cli import accounts, audit, catalog, credits, keys, payments, serve
from gateway.cli.output import err
from gateway.config import SettingsError

app = typer.Typer(
    help="credit-gateway: a credit-metered LLM gateway on LiteLLM.", no_args_is_help=True, add_completion=False
)
app.add_typer(accounts.app, name="accounts")
app.add_typer(keys.app, name="keys")
app.add_typer(credits.credits_app, name="credits")
for command in (
    payments.watch,
    payments.reconcile,
    audit.audit,
    serve.proxy,
    serve.sweep,
    serve.migrate,
    credits.balance,
    credits.usage,
    serve.sidecar,
    serve.up,
    catalog.models,
    catalog.check,
):
    app.command()(command)


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
