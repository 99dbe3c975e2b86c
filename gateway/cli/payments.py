"""CLI commands for USDC top-ups: `watch` (the chain watcher) and `reconcile` (prove the books), and
`check_chain_config`, which `gateway up` runs before it serves. Registered in gateway/cli/__init__.py.

`reconcile` exits 0 when the books agree, 1 on any mismatch, 2 when it could not check (bad settings,
database unreachable or not migrated, chain RPC unreachable). Uncollected amounts (operator loss) are
listed but never fail it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.accounts.wallets import InvalidWallet, normalize_wallet
from gateway.cli.database import run_with_database
from gateway.cli.output import fail, out
from gateway.config import Settings, get_settings
from gateway.failures import ChainUnavailable
from gateway.jobs import watcher
from gateway.jobs.reconcile import ReconcileReport
from gateway.jobs.reconcile import reconcile_configured as reconcile_books
from gateway.observability.logging import configure as configure_logging
from gateway.payments.chain import ChainRPC
from gateway.payments.service import NotConfigured


def watch(once: bool = typer.Option(False, "--once", help="Scan up to the confirmed head once, then exit.")) -> None:
    """Follow USDC transfers to the DAO wallet and credit them (until interrupted)."""
    settings = get_settings()

    async def scan(_db: AsyncEngine) -> watcher.ScanReport | None:
        _configure_logging()  # after the database check: alembic, imported there, logs at INFO
        return await watcher.watch(settings, once=once, progress=progress_bar if sys.stderr.isatty() else None)

    try:
        report = run_with_database(settings.effective_database_url, scan)
    except NotConfigured as exc:
        fail(f"{exc}: set CHAIN_RPC_URL and DAO_WALLET_ADDRESS")
    except ChainUnavailable as exc:
        fail(str(exc), 1)
    except KeyboardInterrupt:
        return
    if report is not None:
        counts = ", ".join(f"{n} {status}" for status, n in sorted(report.payments.items())) or "no payments"
        out.print(f"scanned to block {report.scanned_to}: {counts}", highlight=False)


@contextlib.contextmanager
def progress_bar(total_blocks: int) -> Iterator[Callable[[int], None]]:
    """A rich progress bar on stderr for a long catch-up scan; yields `advance(blocks)`."""
    columns = (TextColumn("scanning blocks"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task("scan", total=total_blocks)
        yield lambda blocks: bar.advance(task, blocks)


def _configure_logging() -> None:
    """INFO lines from the gateway on stderr (JSON or console: LOG_FORMAT), without one line per RPC request from
    httpx."""
    configure_logging(get_settings().log_format)
    logging.getLogger("httpx").setLevel(logging.WARNING)


def reconcile(json_out: bool = typer.Option(False, "--json", help="Print one JSON document.")) -> None:
    """Check balances, holds, calls and payments against the ledger (and the chain, if configured); list
    operator loss (what calls cost above their holds)."""
    settings = get_settings()
    try:
        report = run_with_database(settings.effective_database_url, lambda db: reconcile_books(db, settings), code=2)
    except ChainUnavailable as exc:
        fail(f"could not check payments on chain: {exc}")
    if json_out:
        sys.stdout.write(json.dumps(report.as_dict()) + "\n")
    else:
        _render(report)
    if not report.ok:
        raise typer.Exit(1)


def _render(report: ReconcileReport) -> None:
    scope = "ledger and chain" if report.chain_checked else "ledger only (no CHAIN_RPC_URL)"
    summary = f"{report.accounts} accounts, {report.credited_payments} credited payments, {scope}"
    if report.ok:
        out.print(f"[green]books agree[/green]: {summary}")
    else:
        table = Table("check", "account", "mismatch", title=f"{len(report.mismatches)} mismatches: {summary}")
        for m in report.mismatches:
            table.add_row(m.check, "-" if m.account_id is None else str(m.account_id), m.detail)
        out.print(table)
    if report.uncollected:
        _render_uncollected(report)


def _render_uncollected(report: ReconcileReport) -> None:
    out.print(
        f"[yellow]operator loss[/yellow]: {report.uncollected_micros} micros never collected on "
        f"{len(report.uncollected)} calls (they cost more than their holds; not a mismatch)"
    )
    accounts = Table("account", "calls", "uncollected micros", title="uncollected per account")
    for a in report.uncollected_by_account():
        accounts.add_row(str(a.account_id), str(a.calls), str(a.uncollected_micros))
    out.print(accounts)
    calls = Table(
        "request", "account", "model", "price micros", "uncollected micros", "settled", title="uncollected calls"
    )
    for c in report.uncollected:
        calls.add_row(
            c.request_id, str(c.account_id), c.model, str(c.user_price_micros), str(c.uncollected_micros), c.settled_at
        )
    out.print(calls)


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
        served = asyncio.run(_served_chain_id(settings.chain_rpc_url, settings.chain_rpc_timeout_seconds))
    except ChainUnavailable as exc:
        return ChainConfigCheck(note=f"the chain RPC does not answer yet ({exc}); top-ups answer 503 until it does")
    if served != settings.chain_id:
        return ChainConfigCheck(
            error=f"invalid setting CHAIN_RPC_URL: it serves chain id {served}, but CHAIN_ID is {settings.chain_id}"
        )
    return ChainConfigCheck()


async def _served_chain_id(rpc_url: str, timeout: float) -> int:
    async with ChainRPC(rpc_url, timeout=timeout) as rpc:
        return await rpc.chain_id()
