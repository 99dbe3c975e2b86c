"""Money-path micro-benchmark: gateway.ledger.Ledger.hold + .settle pairs per second on PostgreSQL.

Two fresh databases, migrated like production:
  empty   1,000 funded accounts, nothing else;
  loaded  100,000 funded accounts and 1,000,000 ledger rows (100,000 grants + 900,000 settled calls, with
          their llm_usage rows and posted holds), bulk-loaded with generate_series, then VACUUM ANALYZE.
Every account has one virtual key, and every hold and settle names it (it counts in the key's period, as
a call through the proxy does). Scenarios, each with TASKS concurrent asyncio tasks in this one process
(as in one proxy worker):
  hot     every task holds and settles on the same account (one row everybody waits for);
  spread  each pair picks one of 1,000 accounts at random.
Rounds alternate empty/loaded; medians are reported with CPU per pair (this process + PostgreSQL).

`python -m bench.money_path` runs it alone (BENCH_QUICK=1: short and with a 10x smaller load).
"""

from __future__ import annotations

import asyncio
import os
import random
import statistics
import time
import uuid

import asyncpg
from rich.console import Console
from rich.table import Table

from bench import procstat

os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"

PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
TASKS = 16
HOLD_MICROS = 1_000  # a realistic worst case for a small call
PRICE_MICROS = 400
GRANT_MICROS = 10**15


def _url(name: str) -> str:
    return f"postgresql+asyncpg://postgres@127.0.0.1:5432/{name}"


async def _admin(sql: str) -> None:
    conn = await asyncpg.connect(PG_ADMIN)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


async def _fresh_database(name: str) -> str:
    from gateway.db.migrate import upgrade

    await _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    await _admin(f'CREATE DATABASE "{name}"')
    upgrade(_url(name))
    return name


async def _load(name: str, accounts: int, ledger_rows: int) -> float:
    """Bulk-load `accounts` funded accounts and `ledger_rows` ledger rows (grants + past settled calls)."""
    started = time.monotonic()
    calls = max(ledger_rows - accounts, 0)
    conn = await asyncpg.connect(f"postgresql://postgres@127.0.0.1:5432/{name}")
    try:
        async with conn.transaction():
            await conn.execute(f"""
                INSERT INTO users (id, wallet_address)
                SELECT i, '0x' || lpad(to_hex(i), 40, '0') FROM generate_series(1, {accounts}) AS i;
                INSERT INTO billing_accounts (id, user_id, balance_micros)
                SELECT i, i, {GRANT_MICROS} - {PRICE_MICROS}::bigint * (
                    {calls} / {accounts} + CASE WHEN i <= {calls} % {accounts} THEN 1 ELSE 0 END)
                FROM generate_series(1, {accounts}) AS i;
                INSERT INTO credit_ledger (account_id, amount_micros, balance_after_micros, reason, reference)
                SELECT i, {GRANT_MICROS}, {GRANT_MICROS}, 'admin_grant', 'bench-grant-' || i
                FROM generate_series(1, {accounts}) AS i;
                INSERT INTO virtual_keys (id, account_id, key_hash, key_prefix, label)
                SELECT i, i, md5(i::text) || md5(i::text), 'sk-cg-bench', 'bench'
                FROM generate_series(1, {accounts}) AS i;
                INSERT INTO credit_holds (account_id, request_id, model, amount_micros, status, expires_at, closed_at)
                SELECT 1 + (c % {accounts}), 'bench-past-' || c, 'gpt-4o-mini', {HOLD_MICROS}, 'posted', now(), now()
                FROM generate_series(1, {calls}) AS c;
                INSERT INTO llm_usage (request_id, account_id, model, prompt_tokens, completion_tokens, total_tokens,
                                       provider_cost_micros, user_price_micros, markup, streamed)
                SELECT 'bench-past-' || c, 1 + (c % {accounts}), 'gpt-4o-mini', 30, 8, 38,
                       {PRICE_MICROS // 2}, {PRICE_MICROS}, '2.0', false
                FROM generate_series(1, {calls}) AS c;
                INSERT INTO credit_ledger (account_id, amount_micros, balance_after_micros, reason, reference)
                SELECT 1 + (c % {accounts}), -{PRICE_MICROS},
                       {GRANT_MICROS} - {PRICE_MICROS}::bigint * (1 + (c - 1) / {accounts}),
                       'llm_usage', 'bench-past-' || c
                FROM generate_series(1, {calls}) AS c;
            """)
            for table in ("users", "billing_accounts", "virtual_keys", "credit_ledger", "credit_holds", "llm_usage"):
                await conn.execute(
                    f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))"
                )
        await conn.execute("VACUUM ANALYZE")
    finally:
        await conn.close()
    return time.monotonic() - started


async def _count(name: str, table: str) -> int:
    conn = await asyncpg.connect(f"postgresql://postgres@127.0.0.1:5432/{name}")
    try:
        return await conn.fetchval(f"SELECT count(*) FROM {table}")
    finally:
        await conn.close()


async def _pairs(db_name: str, account_ids: list[int], seconds: float) -> dict:
    """TASKS tasks, each hold+settle in a loop on a random account of `account_ids`, for `seconds`."""
    from gateway import ledger
    from gateway.db.engine import dispose_all, get_engine

    db = get_engine(_url(db_name))
    book = ledger.open_ledger(db)  # closed when dispose_all disposes its engine
    latencies: list[float] = []

    async def worker(stop_at: float) -> None:
        while time.monotonic() < stop_at:
            account = random.choice(account_ids)
            rid = uuid.uuid4().hex
            t0 = time.perf_counter()
            await book.hold(account, rid, HOLD_MICROS, key_id=account, model="gpt-4o-mini")
            await book.settle(
                ledger.Usage(
                    request_id=rid,
                    account_id=account,
                    key_id=account,
                    model="gpt-4o-mini",
                    prompt_tokens=30,
                    completion_tokens=8,
                    provider_cost_micros=PRICE_MICROS // 2,
                    user_price_micros=PRICE_MICROS,
                    markup="2.0",
                ),
            )
            latencies.append(time.perf_counter() - t0)

    try:
        await asyncio.gather(*[worker(time.monotonic() + 1.0) for _ in range(TASKS)])  # warm: pool, statements
        latencies.clear()
        pg0 = procstat.cpu_by_pid(await procstat.postgres_pids(PG_ADMIN, db_name))
        cpu0 = procstat.tree_cpu(os.getpid())
        t0 = time.monotonic()
        await asyncio.gather(*[worker(t0 + seconds) for _ in range(TASKS)])
        elapsed = time.monotonic() - t0
        cpu1 = procstat.tree_cpu(os.getpid())
        pg1 = procstat.cpu_by_pid(list(set(pg0) | set(await procstat.postgres_pids(PG_ADMIN, db_name))))
    finally:
        await dispose_all()
    n = len(latencies)
    latencies.sort()
    return {
        "pairs_per_s": n / elapsed,
        "p50_ms": latencies[n // 2] * 1000,
        "p99_ms": latencies[min(n - 1, int(n * 0.99))] * 1000,
        "client_cpu_ms": (cpu1 - cpu0) * 1000 / max(n, 1),
        "pg_cpu_ms": procstat.cpu_delta(pg0, pg1) * 1000 / max(n, 1),
    }


async def _run(quick: bool, console: Console) -> dict:
    accounts_loaded, rows_loaded = (10_000, 100_000) if quick else (100_000, 1_000_000)
    seconds = 3.0 if quick else 5.0
    rounds = 1 if quick else 5  # this machine is shared: more, shorter rounds give steadier medians
    console.print(
        f"money path: preparing databases (empty: 1,000 accounts; loaded: {accounts_loaded:,} accounts, "
        f"{rows_loaded:,} ledger rows)…"
    )
    empty = await _fresh_database("gw_bench_money_empty")
    await _load(empty, 1_000, 1_000)
    loaded = await _fresh_database("gw_bench_money_loaded")
    load_s = await _load(loaded, accounts_loaded, rows_loaded)
    rows = {"empty": await _count(empty, "credit_ledger"), "loaded": await _count(loaded, "credit_ledger")}
    console.print(f"money path: loaded {rows['loaded']:,} ledger rows in {load_s:.0f} s")
    rng = random.Random(5)
    spread = {"empty": list(range(1, 1_001)), "loaded": rng.sample(range(1, accounts_loaded + 1), 1_000)}
    hot = {"empty": [1], "loaded": [accounts_loaded // 2]}
    results: dict[tuple[str, str], list[dict]] = {}
    for rnd in range(1, rounds + 1):
        for scenario, ids in (("hot", hot), ("spread", spread)):
            for which, name in (("empty", empty), ("loaded", loaded)):
                r = await _pairs(name, ids[which], seconds)
                results.setdefault((scenario, which), []).append(r)
                console.print(
                    f"money path round {rnd}/{rounds}: {scenario:6} {which:6} {r['pairs_per_s']:7.0f} pairs/s "
                    f"p50 {r['p50_ms']:.2f} ms, CPU/pair {r['client_cpu_ms']:.2f} ms client "
                    f"+ {r['pg_cpu_ms']:.2f} ms PostgreSQL"
                )
    for name in (empty, loaded):
        await _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    med = {k: {m: statistics.median(r[m] for r in v) for m in v[0]} for k, v in results.items()}
    return {
        "median": med,
        "rows": rows,
        "accounts_loaded": accounts_loaded,
        "seconds": seconds,
        "rounds": rounds,
        "load_s": load_s,
    }


def markdown(res: dict) -> str:
    med = res["median"]
    lines = [
        "## Money path alone (bench/money_path.py)",
        "",
        f"`gateway.ledger.Ledger.hold` + `.settle` pairs per second against PostgreSQL from one process "
        f"(as one proxy worker), {TASKS} concurrent tasks, {res['seconds']:g} s per run, {res['rounds']} round(s) "
        "alternating empty/loaded, medians. *hot*: every pair on one account; *spread*: a random one of "
        f"1,000 accounts. *empty*: 1,000 accounts; *loaded*: {res['accounts_loaded']:,} accounts and "
        f"{res['rows']['loaded']:,} ledger rows (with as many usage rows and closed holds), bulk-loaded. "
        "CPU per pair: this process (SQLAlchemy + asyncpg) and PostgreSQL (the database's backends, WAL "
        "writer, checkpointer, background writer).",
        "",
        "| scenario | database | pairs/s | p50 ms | p99 ms | client CPU ms/pair | PostgreSQL CPU ms/pair |",
        "|---|---|---|---|---|---|---|",
    ]
    for (scenario, which), m in med.items():
        lines.append(
            f"| {scenario} | {which} | {m['pairs_per_s']:.0f} | {m['p50_ms']:.2f} | {m['p99_ms']:.2f} | "
            f"{m['client_cpu_ms']:.2f} | {m['pg_cpu_ms']:.2f} |"
        )
    lines += ["", *verdicts(res)]
    return "\n".join(lines)


def verdicts(res: dict) -> list[str]:
    med = res["median"]
    out = []
    for scenario, target in (("hot", 1_000), ("spread", 2_000)):  # issue 14's targets
        got = min(med[(scenario, "empty")]["pairs_per_s"], med[(scenario, "loaded")]["pairs_per_s"])
        out.append(f"- {scenario}: >= {target} pairs/s: **{'met' if got >= target else 'MISSED'}** (lowest {got:.0f}).")
    for scenario in ("hot", "spread"):
        ratio = med[(scenario, "loaded")]["pairs_per_s"] / med[(scenario, "empty")]["pairs_per_s"]
        cpu = {w: med[(scenario, w)]["client_cpu_ms"] + med[(scenario, w)]["pg_cpu_ms"] for w in ("empty", "loaded")}
        out.append(
            f"- {scenario}: loaded within 10% of empty: **{'met' if ratio >= 0.9 else 'MISSED'}** "
            f"(pairs/s loaded/empty = {ratio:.3f}; CPU per pair {cpu['empty']:.2f} ms empty, "
            f"{cpu['loaded']:.2f} ms loaded)."
        )
    return out


def table(res: dict) -> Table:
    t = Table(title="money path: hold+settle pairs (medians)", title_justify="left")
    for col in ("scenario", "database", "pairs/s", "p50 ms", "p99 ms", "client CPU ms/pair", "PG CPU ms/pair"):
        t.add_column(col, justify="left" if col in ("scenario", "database") else "right")
    for (scenario, which), m in res["median"].items():
        t.add_row(
            scenario,
            which,
            f"{m['pairs_per_s']:.0f}",
            f"{m['p50_ms']:.2f}",
            f"{m['p99_ms']:.2f}",
            f"{m['client_cpu_ms']:.2f}",
            f"{m['pg_cpu_ms']:.2f}",
        )
    return t


def main(quick: bool = False, console: Console | None = None) -> str:
    """Run the benchmark, print its table, return its RESULTS.md section."""
    import uvloop  # the event loop LiteLLM's proxy workers run on

    console = console or Console()
    res = uvloop.run(_run(quick, console))
    console.print(table(res))
    for line in verdicts(res):
        console.print(line.replace("**", ""))
    return markdown(res)


if __name__ == "__main__":
    main(quick=os.environ.get("BENCH_QUICK") == "1")
