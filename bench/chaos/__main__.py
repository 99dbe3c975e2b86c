"""`python -m bench.chaos [--seed N] [--seconds S]`: one chaos run and its report; exit 1 on a violation."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path

from bench.chaos import chain, checker, faults, load
from bench.chaos.stack import HOLD_SWEEP_GRACE_SECONDS, HOLD_TTL_SECONDS, Stack, running
from gateway.db.engine import dispose_all, get_engine

ACCOUNTS = 16
SETTLE_SECONDS = HOLD_TTL_SECONDS + HOLD_SWEEP_GRACE_SECONDS + 40  # a lost hold's expiry, with sweeper passes


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.chaos", description=__doc__)
    p.add_argument(
        "--seed", type=int, default=int(os.environ.get("CHAOS_SEED") or random.SystemRandom().randrange(10**9))
    )
    p.add_argument("--seconds", type=float, default=float(os.environ.get("CHAOS_SECONDS") or 300))
    p.add_argument("--report", type=Path, default=None, help="also write the report here (JSON)")
    args = p.parse_args(argv)
    print(
        f"chaos: seed {args.seed}, {args.seconds:g} s of load and faults (replay: CHAOS_SEED={args.seed})", flush=True
    )
    home = Path(tempfile.mkdtemp(prefix=f"chaos-{args.seed}-"))
    with running(home, args.seed) as stack:
        report = asyncio.run(_run(stack, args.seed, args.seconds))
    report["home"] = str(home)
    print(render(report), flush=True)
    if args.report:
        args.report.write_text(json.dumps(report, indent=2))
    return 0 if report["ok"] else 1


async def _run(stack: Stack, seed: int, seconds: float) -> dict:
    db = get_engine(stack.db_url)
    try:
        customers = await load.make_customers(db, random.Random(f"{seed}-customers"), ACCOUNTS)
        schedule = faults.schedule(random.Random(f"{seed}-faults"), seconds, len(stack.proxies), ACCOUNTS)
        work = load.Load(customers)
        t0 = time.monotonic()
        injector = faults.Injector(stack, t0)
        payers = [c.wallet for c in customers[: ACCOUNTS // 2]]
        for wallet in payers:
            await asyncio.to_thread(stack.chain.fund, wallet)
        stack.chain.payers = payers
        await asyncio.gather(
            load.run_load(stack.base_urls, work, random.Random(f"{seed}-load"), t0 + seconds),
            chain.pay_and_mine(
                stack.chain, payers, random.Random(f"{seed}-payments"), t0 + seconds, stack.page.confirm
            ),
            injector.run(schedule),
        )
        injector.restore_all()
        if stack.sweeper is None or stack.sweeper.poll() is not None:
            stack.start_sweeper()
        if stack.chain.watcher is None or stack.chain.watcher.poll() is not None:
            stack.chain.start_watcher(stack.env())
        if stack.page.process is None or stack.page.process.poll() is not None:
            await asyncio.to_thread(stack.page.start, stack.env())
        settled = await _settle(db, stack)
        watcher_caught_up = await chain.settle(stack.chain, db, SETTLE_SECONDS)
        found = await checker.check(db, stack, work, watcher_caught_up)
    finally:
        await dispose_all()
    return {
        "seed": seed,
        "seconds": seconds,
        "ok": found.ok,
        "calls": work.calls,
        "outcomes": dict(sorted(work.outcomes.items())),
        "provider": dict(found.served),
        "top_ups_sent": len(stack.chain.sent),
        "blocks_reorged": stack.chain.reorged,
        "top_ups_reorged_out": len(stack.chain.removed),
        "page": dict(sorted(stack.page.outcomes.items())),
        "settled_after_seconds": settled,
        "faults": [
            {
                "kind": i.fault.kind,
                "planned_at": round(i.fault.at, 1),
                "started": round(i.started, 1),
                "ended": round(i.ended, 1),
                "size": round(i.fault.seconds, 1),
                "detail": i.detail,
            }
            for i in sorted(injector.log, key=lambda i: i.started)
        ],
        "invariants": [{"name": v.name, "ok": v.ok, "figure": v.figure} for v in found.verdicts],
    }


async def _settle(db, stack: Stack) -> float:
    """Wait (bounded) until no hold is pending and the spool holds nothing to replay; how long it took."""
    started = time.monotonic()
    while time.monotonic() - started < SETTLE_SECONDS:
        if await checker.pending_holds(db) == 0 and checker.spool_counts(stack)[0] == 0:
            break
        await asyncio.sleep(1)
    return round(time.monotonic() - started, 1)


def render(report: dict) -> str:
    lines = [
        f"chaos report: seed {report['seed']}, {report['seconds']:g} s, {report['calls']} calls "
        f"(settled after {report['settled_after_seconds']} s; logs in {report['home']})",
        "calls by outcome: " + ", ".join(f"{k} {n}" for k, n in report["outcomes"].items()),
        "provider: " + ", ".join(f"{k} {n}" for k, n in sorted(report["provider"].items())),
        f"chain: {report['top_ups_sent']} top-ups sent, {report['blocks_reorged']} blocks reorged "
        f"({report['top_ups_reorged_out']} top-ups with them)",
        "page (sign-ins, confirms): " + ", ".join(f"{k} {n}" for k, n in report["page"].items()),
        "faults:",
        *(
            f"  {f['started']:7.1f}-{f['ended']:7.1f} s  {f['kind']:<12} size {f['size']:g}  {f['detail']}"
            for f in report["faults"]
        ),
        "invariants:",
        *(f"  [{'ok' if v['ok'] else 'VIOLATED'}] {v['name']}: {v['figure']}" for v in report["invariants"]),
        f"verdict: {'every invariant holds' if report['ok'] else 'VIOLATIONS'} (seed {report['seed']})",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
