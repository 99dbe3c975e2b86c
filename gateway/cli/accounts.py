"""`gateway accounts ...`: billing accounts (one per wallet)."""

from __future__ import annotations

import typer

from gateway.accounts.wallets import get_or_create_account
from gateway.cli.common import JsonOpt, WalletOpt, emit, run
from gateway.cli.output import out

app = typer.Typer(help="Billing accounts.", no_args_is_help=True)


@app.command("create")
def accounts_create(wallet: str = WalletOpt, as_json: bool = JsonOpt) -> None:
    """Create the billing account for a wallet (idempotent)."""
    acct = run(get_or_create_account, wallet)
    doc = {"account_id": acct.id, "wallet": acct.wallet_address, "created": acct.created}
    emit(
        as_json,
        doc,
        lambda: out.print(f"account {acct.id} for {acct.wallet_address}" + (" created" if acct.created else " exists")),
    )
