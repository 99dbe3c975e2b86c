"""CLI commands for USDC top-ups: `watch` (the chain watcher) and `reconcile` (prove the books), and
`check_chain_config`, which `gateway up` runs before it serves. Registered in gateway/cli.py.

`reconcile` exits 0 when the books agree, 1 on any mismatch, 2 when it could not check (bad settings,
chain RPC unreachable).
"""

from __future__ import annotations

import asyncio
import json
import sys
from dataclasses import dataclass

import typer
from rich.table import Table

from gateway import watcher
from gateway.accounts import InvalidWallet, normalize_wallet
from gateway.chain import ChainRPC, ChainUnavailable
from gateway.commands.output import fail, out
from gateway.config import Settings, get_settings
from gateway.db.engine import dispose_all, get_engine
from gateway.payments import NotConfigured
from gateway.reconcile import ReconcileReport
from gateway.reconcile import reconcile as reconcile_books



def watch(once: bool = typer.Option(False, "--once", help="Scan up to the confirmed head once, then exit.")) -> None:
    """Follow USDC transfers to the DAO wallet and credit them (until interrupted)."""
    watcher.configure_logging()
    try:
        report = asyncio.run(watcher.watch(get_settings(), once=once))
    except (NotConfigured, ChainUnavailable) as exc:
        fail(str(exc))
    except KeyboardInterrupt:
        return
    if report is not None:
        counts = ", ".join(f"{n} {status}" for status, n in sorted(report.payments.items())) or "no payments"
        out.print(f"scanned to block {report.scanned_to}: {counts}", highlight=False)


def reconcile(json_out: bool = typer.Option(False, "--json", help="Print one JSON document.")) -> None:
    """Check balances, holds and payments against the ledger (and the chain, if configured)."""
    try:
        report = asyncio.run(_reconcile(get_settings()))
    except ChainUnavailable as exc:
        fail(f"could not check payments on chain: {exc}")
    if json_out:
        sys.stdout.write(json.dumps(report.as_dict()) + "\n")
    else:
        _render(report)
    if not report.ok:
        raise typer.Exit(1)


async def _reconcile(settings: Settings) -> ReconcileReport:
    db = get_engine(settings.effective_database_url)
    try:
        if not settings.chain_rpc_url:
            return await reconcile_books(db, settings)
        async with ChainRPC(settings.chain_rpc_url, timeout=settings.chain_rpc_timeout_seconds) as rpc:
            return await reconcile_books(db, settings, rpc)
    finally:
        await dispose_all()


def _render(report: ReconcileReport) -> None:
    scope = "ledger and chain" if report.chain_checked else "ledger only (no CHAIN_RPC_URL)"
    summary = f"{report.accounts} accounts, {report.credited_payments} credited payments, {scope}"
    if report.ok:
        out.print(f"[green]books agree[/green]: {summary}")
        return
    table = Table("check", "account", "mismatch", title=f"{len(report.mismatches)} mismatches: {summary}")
    for m in report.mismatches:
        table.add_row(m.check, "-" if m.account_id is None else str(m.account_id), m.detail)
    out.print(table)


@dataclass(frozen=True)
class ChainConfigCheck:
    error: str | None = None  # refuse to start, with this line
    note: str | None = None  # start, and tell the operator this


def check_chain_config(settings: Settings) -> ChainConfigCheck:
    """Start-up check of the payment settings: when configured, the RPC must serve CHAIN_ID. Runs its own
    event loop (call it before serving). An unreachable RPC is a note: top-ups answer 503 until it is up."""
    if not settings.chain_rpc_url or not settings.dao_wallet_address:
        return ChainConfigCheck(note="payments are not configured (set CHAIN_RPC_URL and DAO_WALLET_ADDRESS)")
    for name in ("usdc_address", "dao_wallet_address"):
        try:
            normalize_wallet(getattr(settings, name))
        except InvalidWallet as exc:
            return ChainConfigCheck(error=f"invalid setting {name.upper()}: {exc}")
    try:
        served = asyncio.run(_served_chain_id(settings))
    except ChainUnavailable as exc:
        return ChainConfigCheck(note=f"the chain RPC does not answer yet ({exc}); top-ups answer 503 until it does")
    if served != settings.chain_id:
        return ChainConfigCheck(
            error=f"invalid setting CHAIN_RPC_URL: it serves chain id {served}, but CHAIN_ID is {settings.chain_id}"
        )
    return ChainConfigCheck()


async def _served_chain_id(settings: Settings) -> int:
    async with ChainRPC(settings.chain_rpc_url, timeout=settings.chain_rpc_timeout_seconds) as rpc:
        return await rpc.chain_id()
