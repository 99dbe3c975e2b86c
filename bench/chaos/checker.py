"""The chaos run's independent checker: after the faults stop and the stack settles, it reads the database
directly (not through the gateway), the fake provider's own log of what it served, the settle spool, and
runs `gateway reconcile` as an operator would, then judges each invariant with its figure.

Per account (the provider's log names calls by their tag, which names the account):
- `served` calls (the provider sent the whole answer) must each be billed once, or be a loss the books name
  (a hold the sweeper expired without a settle: a proxy killed mid-call, or the database and the spool both
  down when the call ended); `aborted` / `gone` calls (the answer was cut by the provider, or the caller left
  after part of it was out) may be billed (for what was produced) or not; a call gone before any byte of
  its answer was sent is not served;
- every call a client got a complete 200 answer for is billed: its `x-gateway-request-id` has its usage row
  (exact, per call, where the per-account counts above could let a lost call and a cut one cancel out);
- no call billed that the provider did not serve: billed <= served + aborted + gone;
- `llm_usage.request_id` is the primary key, so no call is billed twice.
Books: no balance below zero, balance == sum(ledger) and held == sum(pending holds) per account, no key over
its limit, no hold pending past its TTL + grace, the spool empty but for set-aside entries, each named by
reconcile, and reconcile's mismatches only the losses counted here.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from bench.chaos import chain
from bench.chaos.load import Load
from bench.chaos.stack import HOLD_SWEEP_GRACE_SECONDS, Stack

LOSS_CHECKS = ("expired_hold",)  # reconcile's names for a served call whose settle was lost


@dataclass
class Verdict:
    name: str
    ok: bool
    figure: str


@dataclass
class Findings:
    verdicts: list[Verdict] = field(default_factory=list)
    served: Counter[str] = field(default_factory=Counter)  # provider outcomes
    losses: int = 0

    def check(self, name: str, ok: bool, figure: str) -> None:
        self.verdicts.append(Verdict(name, ok, figure))

    @property
    def ok(self) -> bool:
        return all(v.ok for v in self.verdicts)


def provider_calls(log: Path) -> list[dict]:
    return [json.loads(line) for line in log.read_text().splitlines() if line.strip()] if log.exists() else []


async def pending_holds(db: AsyncEngine) -> int:
    async with db.connect() as conn:
        return (await conn.execute(sa.text("SELECT count(*) FROM credit_holds WHERE status = 'pending'"))).scalar_one()


def spool_counts(stack: Stack) -> tuple[int, int]:
    """(pending, set aside) entries in the shared spool."""
    path = stack.settings().effective_spool_dir / "settles.sqlite3"
    if not path.exists():
        return 0, 0
    with sqlite3.connect(path, timeout=30) as conn:
        pending, aside = conn.execute(
            "SELECT count(*) FILTER (WHERE failed = 0), count(*) FILTER (WHERE failed = 1) FROM spooled"
        ).fetchone()
    return pending or 0, aside or 0


async def check(db: AsyncEngine, stack: Stack, load: Load, watcher_caught_up: bool) -> Findings:
    found = Findings()
    account_of = {c.index: c.account_id for c in load.customers}
    served: Counter[int] = Counter()
    maybe: Counter[int] = Counter()
    for call in provider_calls(stack.provider_log):
        found.served[call["outcome"]] += 1
        tag = call.get("tag") or ""
        account = account_of.get(int(tag.split(".")[0])) if tag.split(".")[0].isdigit() else None
        if account is None:
            continue
        if call["outcome"] == "served":
            served[account] += 1
        elif call["outcome"] == "aborted" or (call["outcome"] == "gone" and call.get("parts_sent")):
            maybe[account] += 1

    async with db.connect() as conn:
        billed = Counter(
            dict((await conn.execute(sa.text("SELECT account_id, count(*) FROM llm_usage GROUP BY account_id"))).all())
        )
        lost = Counter(
            dict(
                (
                    await conn.execute(
                        sa.text(
                            "SELECT h.account_id, count(*) FROM credit_holds h WHERE h.status = 'expired' AND NOT "
                            "EXISTS (SELECT 1 FROM llm_usage u WHERE u.request_id = h.request_id) GROUP BY 1"
                        )
                    )
                ).all()
            )
        )
        books = (
            await conn.execute(
                sa.text(
                    "SELECT a.id, a.balance_micros, a.held_micros, "
                    "COALESCE((SELECT SUM(amount_micros) FROM credit_ledger l WHERE l.account_id = a.id), 0), "
                    "COALESCE((SELECT SUM(amount_micros) FROM credit_holds h WHERE h.account_id = a.id "
                    "AND h.status = 'pending'), 0) FROM billing_accounts a"
                )
            )
        ).all()
        over_limit = (
            await conn.execute(
                sa.text(
                    "SELECT id, limit_micros, period_used_micros FROM virtual_keys "
                    "WHERE limit_micros IS NOT NULL AND period_used_micros > limit_micros"
                )
            )
        ).all()
        cutoff = datetime.now(UTC) - timedelta(seconds=HOLD_SWEEP_GRACE_SECONDS)
        stale = (
            await conn.execute(
                sa.text("SELECT count(*) FROM credit_holds WHERE status = 'pending' AND expires_at < :cutoff"),
                {"cutoff": cutoff},
            )
        ).scalar_one()
    found.losses = sum(lost.values())

    accounts = sorted(set(served) | set(billed) | set(maybe))
    unbilled = {a: served[a] - billed[a] - lost[a] for a in accounts if served[a] > billed[a] + lost[a]}
    phantom = {a: billed[a] - served[a] - maybe[a] for a in accounts if billed[a] > served[a] + maybe[a]}
    found.check(
        "every served call billed once (or a named loss)",
        not unbilled,
        f"served {sum(served.values())}, cut or left {sum(maybe.values())}, billed {sum(billed.values())}, "
        f"named losses {found.losses}; unbilled by account: {unbilled or 'none'}",
    )
    found.check("no call billed that the provider did not serve", not phantom, f"by account: {phantom or 'none'}")
    async with db.connect() as conn:
        billed_ids = set((await conn.execute(sa.text("SELECT request_id FROM llm_usage"))).scalars())
        lost_ids = set(
            (await conn.execute(sa.text("SELECT request_id FROM credit_holds WHERE status = 'expired'"))).scalars()
        )
    unbilled_answers = sorted(rid for rid in load.answered if rid not in billed_ids and rid not in lost_ids)
    found.check(
        "every call answered 200 is billed or a named loss (by its x-gateway-request-id)",
        not unbilled_answers,
        f"{len(load.answered)} answered, {len((set(load.answered) & lost_ids) - billed_ids)} named losses, "
        f"unbilled: {unbilled_answers[:5] or 'none'}",
    )
    negative = [r[0] for r in books if r[1] < 0]
    found.check("no balance below zero", not negative, f"{len(books)} accounts; below zero: {negative or 'none'}")
    unbalanced = [r[0] for r in books if r[1] != r[3] or r[2] != r[4]]
    found.check(
        "balance == sum(ledger), held == sum(pending holds)",
        not unbalanced,
        f"{len(books)} accounts; off: {unbalanced or 'none'}",
    )
    found.check("no key over its limit", not over_limit, f"over: {[tuple(r) for r in over_limit] or 'none'}")
    found.check("no hold pending past TTL + grace", stale == 0, f"{stale} stale pending holds")
    pending, aside = spool_counts(stack)
    found.check("spool empty but for set-aside entries", pending == 0, f"{pending} pending, {aside} set aside")
    found.check("no internal text in an answer", not load.leaks, f"{len(load.leaks)} leaks {load.leaks[:3]}")
    page_500 = {k: n for k, n in stack.page.outcomes.items() if k.endswith(":500")}
    found.check("the page's API answers no 500 (an outage is a 503)", not page_500, f"{page_500 or 'none'}")
    await _check_chain(found, db, stack, watcher_caught_up)
    _check_reconcile(found, stack, aside)
    return found


async def _check_chain(found: Findings, db: AsyncEngine, stack: Stack, caught_up: bool) -> None:
    """Every confirmed canonical top-up credited once, with its amount; none credited that is not on chain
    (a reorg removed it); the watcher reached the confirmed head in the settle time."""
    on_chain = chain.confirmed_transfers(stack.chain)
    credited = await chain.credited(db, stack.chain.dao)
    missing = sorted(set(on_chain) - set(credited))
    phantom = sorted(set(credited) - set(on_chain))
    wrong = sorted(tx for tx in set(on_chain) & set(credited) if on_chain[tx] != credited[tx])
    gone = len(set(stack.chain.sent) - set(on_chain))
    back = len(set(stack.chain.removed) & set(on_chain))  # anvil mined a reorged-out transfer again, as chains do
    found.check(
        "every confirmed on-chain top-up credited exactly once, none that a reorg removed",
        caught_up and not missing and not phantom and not wrong,
        f"{len(stack.chain.sent)} sent, {len(on_chain)} confirmed on chain, {len(credited)} credited, "
        f"{gone} not on chain ({len(stack.chain.removed)} taken out by reorgs, {back} of them mined again "
        f"later); watcher caught up: {caught_up}; "
        f"uncredited {missing[:3] or 'none'}, credited off chain {phantom[:3] or 'none'}, wrong amount "
        f"{wrong[:3] or 'none'}",
    )


def _check_reconcile(found: Findings, stack: Stack, aside: int) -> None:
    """`gateway reconcile --json` (the real CLI, on the database directly): exit 0, or its mismatches are
    exactly the losses counted above and the set-aside spool entries."""
    env = {**stack.env(), "GATEWAY_DATABASE_URL": stack.db_url, "CHAIN_RPC_URL": stack.chain.anvil.url}
    proc = subprocess.run(
        [sys.executable, "-m", "gateway", "reconcile", "--json"], env=env, capture_output=True, text=True, timeout=180
    )
    try:
        report = json.loads(proc.stdout)
    except json.JSONDecodeError:
        found.check("gateway reconcile", False, f"exit {proc.returncode}: {proc.stderr.strip()[-300:]}")
        return
    kinds = Counter(m["check"] for m in report["mismatches"])
    expected = Counter({"expired_hold": found.losses} if found.losses else {})
    refused = sum(n for k, n in kinds.items() if k.startswith("refused_"))
    other = {k: n for k, n in kinds.items() if k not in LOSS_CHECKS and not k.startswith("refused_")}
    ok = (
        proc.returncode == (0 if not kinds else 1)
        and not other
        and kinds["expired_hold"] == expected["expired_hold"]
        and refused == aside
    )
    found.check(
        "gateway reconcile names exactly the expected losses",
        ok,
        f"exit {proc.returncode}, mismatches {dict(kinds) or 'none'}, expected {dict(expected) or 'none'} "
        f"+ {aside} set aside; uncollected {report['uncollected']['total_micros']} micros",
    )
