"""Soak: does a proxy worker's memory stay flat over many calls? (`python -m bench.soak [CALLS] [--streams]`)

One gateway proxy with ONE LiteLLM worker (PostgreSQL + Redis, as variant B of `make bench`) takes CALLS
chat completions (default 20,000; a quarter streamed) from wrk at concurrency 8, against the fast fake
upstream. The worker's RSS is read every few seconds; the verdict compares the RSS after the warm-up
(the first 10% of the calls) with the RSS at the end: growth must stay under 10%. Every call must be
billed (usage rows == calls answered 200). Prints a table and one machine-readable line, SOAK_JSON {...}.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from rich.console import Console

from bench.run import (
    BENCH_DIR,
    MASTER_KEY,
    MODEL,
    REDIS_URL,
    Proxy,
    _configs,
    _free_port,
    _fund_account,
    _recreate_bench_db,
    billed,
    ensure_tools_and_services,
)

console = Console()
CONCURRENCY = 8
WARMUP_SHARE = 0.1


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def wrk(proxy: Proxy, calls: int, stream: bool) -> int:
    """Run wrk until about `calls` requests were made (it is time-boxed: rounds of 10 s); 200s returned."""
    done = 0
    while done < calls:
        out = subprocess.run(
            [
                "wrk",
                "-t1",
                f"-c{CONCURRENCY}",
                "-d10s",
                "--timeout",
                "15s",
                "-s",
                str(BENCH_DIR / "chat.lua"),
                proxy.url,
                "--",
                proxy.bearer,
                "1" if stream else "0",
                MODEL,
                "64",
            ],
            capture_output=True,
            text=True,
        )
        line = next((ln for ln in out.stdout.splitlines() if ln.startswith("BENCH_JSON ")), None)
        if line is None:
            raise SystemExit(f"wrk failed (exit {out.returncode}): {out.stdout}\n{out.stderr}")
        result = json.loads(line.removeprefix("BENCH_JSON "))
        done += result["requests"] - result["err_status"]
    return done


def main(argv: list[str]) -> int:
    calls = int(argv[0]) if argv else 20_000
    streams_only = "--streams" in argv
    ensure_tools_and_services()
    from devtools.fake_upstream import FakeUpstream
    from gateway.cli.supervisor import child_env
    from gateway.config import Settings

    work = Path(tempfile.mkdtemp(prefix="gw-soak-"))
    with FakeUpstream() as upstream:
        gateway_cfg, _ = _configs(work, upstream.base_url)
        db_url = asyncio.run(_recreate_bench_db())
        settings = Settings(gateway_home=work, database_url=db_url, redis_url=REDIS_URL, litellm_master_key=MASTER_KEY)
        proxy = Proxy(
            "B",
            _free_port(),
            asyncio.run(_fund_account(db_url)),
            child_env(settings, MASTER_KEY),
            gateway_cfg,
            work / "proxy.log",
            db_url,
        )
        proxy.start(workers=1)
        samples: list[tuple[float, int, int]] = []  # (seconds, calls so far, worker RSS KiB)
        sent = 0
        try:
            proxy.wait_ready()
            [worker] = proxy.worker_pids() or [proxy.proc.pid]
            stop = threading.Event()
            started = time.monotonic()

            def sample() -> None:
                while not stop.wait(3):
                    samples.append((time.monotonic() - started, sent, rss_kib(worker)))

            sampler = threading.Thread(target=sample, daemon=True)
            sampler.start()
            console.print(f"soak: {calls} calls through one worker (pid {worker}), concurrency {CONCURRENCY}…")
            warm = int(calls * WARMUP_SHARE)
            sent += wrk(proxy, warm, stream=False)
            warm_rss = rss_kib(worker)
            while sent < calls:
                batch = min(2_000, calls - sent)
                sent += wrk(proxy, batch, stream=streams_only or (sent // 2_000) % 4 == 3)
                console.print(f"  {sent} calls, worker RSS {rss_kib(worker) / 1024:.0f} MiB")
            time.sleep(2)
            end_rss = rss_kib(worker)
            stop.set()
            checks = asyncio.run(billed(db_url))
        finally:
            proxy.stop()
    growth = (end_rss - warm_rss) / warm_rss
    report = {
        "calls": sent,
        "warm_rss_mib": round(warm_rss / 1024, 1),
        "end_rss_mib": round(end_rss / 1024, 1),
        "growth_pct": round(growth * 100, 2),
        "billed": checks,
        "samples": samples[-10:],
    }
    console.print(
        f"worker RSS after warm-up {warm_rss / 1024:.0f} MiB, after {sent} calls {end_rss / 1024:.0f} MiB: "
        f"{growth * 100:+.1f}% ({'OK' if growth < 0.10 else 'OVER 10%'})"
    )
    console.print(f"billing: {checks}")
    print("SOAK_JSON " + json.dumps(report))
    return 0 if growth < 0.10 else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
