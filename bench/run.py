"""`make bench`: is billing ever what limits the gateway?

Starts a fast fake OpenAI upstream (devtools/fake_upstream.py), PostgreSQL and Redis if they are down, and
four proxies side by side, all with the same LiteLLM version, worker count and model list:

  A  plain LiteLLM: master key only, no hooks;
  T  LiteLLM with do-nothing hooks (bench/noop_hooks): a custom_auth that accepts any key and a pre-call hook
     that returns the request unchanged, i.e. LiteLLM's own per-key and per-callback work, no billing;
  B  the gateway: our auth + billing hooks, PostgreSQL (a bench database of its own) + Redis;
  C  the gateway on its embedded defaults: SQLite in a temporary GATEWAY_HOME, no Redis.

Then wrk (a separate process, bench/chat.lua) posts chat completions with a bearer key at concurrency
1, 16 and 64, plain and streamed, each point in alternating rounds A,T,B,C,A,T,B,C,... and reports medians:
req/s, p50, p99 and CPU-ms per request (the proxy's processes; for B also PostgreSQL + Redis, from /proc).
Finally the money-path micro-benchmark (bench/money_path.py) and the hook micro-benchmark (bench/hooks.py: our
hooks' CPU per call, step by step). Everything goes to bench/RESULTS.md.

Knobs (environment): BENCH_QUICK=1 (a ~3-minute smoke run), BENCH_ROUNDS, BENCH_DURATION (seconds per
point), BENCH_VARIANTS (default "ATBC"), BENCH_SKIP_MONEY=1 (skips both micro-benchmarks). `python -m bench
--serve` only starts everything and prints the URLs and keys (for profiling by hand), until Ctrl-C.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import platform
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

import httpx
import yaml
from rich.console import Console, Group
from rich.live import Live
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from bench import procstat

os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
for _name in ("DATABASE_URL", "GATEWAY_DATABASE_URL", "REDIS_URL", "GATEWAY_HOME"):
    os.environ.pop(_name, None)  # every setting of the proxies under test is explicit below

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

QUICK = os.environ.get("BENCH_QUICK") == "1"
ROUNDS = int(os.environ.get("BENCH_ROUNDS") or (1 if QUICK else 3))
DURATION = float(os.environ.get("BENCH_DURATION") or (4 if QUICK else 8))
VARIANTS = tuple(os.environ.get("BENCH_VARIANTS") or "ATBC")
CONCURRENCY = (1, 16, 64)
MODES = (False, True)  # streamed?
MODEL = "gpt-4o-mini"
MAX_TOKENS = 256  # every call holds its worst case: prompt + 256 output tokens at gpt-4o-mini prices x markup
TAIL_SECONDS = 0.5  # CPU is counted until this long after wrk ends (background logging of the last calls)
REDIS_URL = "redis://127.0.0.1:6379/0"
PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
BENCH_DB = f"gw_bench_{os.getpid()}"  # per run: two runs on one machine never drop each other's
GRANT_MICROS = 10**12  # $1M of credits: never the limit
MASTER_KEY = "sk-admin-bench-" + os.urandom(8).hex()
TITLES = {
    "A": "plain LiteLLM (master key, no hooks)",
    "T": "LiteLLM with do-nothing hooks (custom_auth accepting any key, pre-call hook returning the request)",
    "B": "gateway, PostgreSQL + Redis",
    "C": "gateway, embedded SQLite, no Redis",
}

console = Console(width=None if sys.stdout.isatty() else 150)


# ---- machine and services ------------------------------------------------------------------------


def _run_root(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    if os.geteuid() != 0 and shutil.which("sudo"):
        cmd = ["sudo", *cmd]
    console.print(f"[dim]$ {' '.join(cmd)}[/dim]")
    return subprocess.run(cmd, check=True, **kw)


def _port_open(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
        return True
    return False


def _wait_port(port: int, what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not _port_open(port):
        if time.monotonic() > deadline:
            raise SystemExit(f"{what} did not come up on 127.0.0.1:{port}")
        time.sleep(0.3)


def ensure_tools_and_services() -> None:
    if shutil.which("wrk") is None:
        console.print("wrk (the HTTP load generator) is missing: installing it with apt-get (Debian package 'wrk').")
        _run_root(["apt-get", "update", "-q"])
        _run_root(["apt-get", "install", "-y", "-q", "wrk"])
    if not _port_open(5432):
        version = sorted(os.listdir("/etc/postgresql"))[-1]
        console.print(f"PostgreSQL is not listening on 127.0.0.1:5432: starting cluster {version}/main.")
        _run_root(["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "start"])
        _wait_port(5432, "PostgreSQL")
    if not _port_open(6379):
        console.print("Redis is not listening on 127.0.0.1:6379: starting redis-server (no persistence).")
        subprocess.run(
            [
                "redis-server",
                "--daemonize",
                "yes",
                "--bind",
                "127.0.0.1",
                "--port",
                "6379",
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            check=True,
        )
        _wait_port(6379, "Redis")


def _first_line(cmd: list[str]) -> str:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
        return (out.stdout or out.stderr).strip().splitlines()[0]
    except (OSError, IndexError, subprocess.SubprocessError):
        return "?"


def machine_info() -> dict[str, str]:
    cpu = "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem_gb = "?"
    with contextlib.suppress(OSError, ValueError):
        kb = int(Path("/proc/meminfo").read_text().split()[1])
        mem_gb = f"{kb / 1024 / 1024:.1f} GB"

    async def server_versions() -> tuple[str, str]:
        import asyncpg
        from redis.asyncio import Redis

        conn = await asyncpg.connect(PG_ADMIN)
        try:
            pg = await conn.fetchval("SHOW server_version")
        finally:
            await conn.close()
        r = Redis.from_url(REDIS_URL)
        try:
            rv = (await r.info("server"))["redis_version"]
        finally:
            await r.aclose()
        return pg, rv

    pg, rv = asyncio.run(server_versions())
    pkgs = (
        "litellm",
        "fastapi",
        "uvicorn",
        "uvloop",
        "sqlalchemy",
        "asyncpg",
        "aiosqlite",
        "redis",
        "opentelemetry-sdk",
    )

    def version(p: str) -> str:
        try:
            return metadata.version(p)
        except metadata.PackageNotFoundError:
            return "not installed"

    return {
        "CPU": f"{os.cpu_count()} cores, {cpu}",
        "memory": mem_gb,
        "OS": f"{platform.system()} {platform.release()}",
        "Python": platform.python_version(),
        **{p: version(p) for p in pkgs},
        "PostgreSQL": pg,
        "Redis": rv,
        "SQLite": sqlite3.sqlite_version,
        "wrk": _first_line(["wrk", "--version"]).split(" Copyright")[0],
    }


# ---- the three proxies ---------------------------------------------------------------------------


@dataclass
class Proxy:
    name: str
    port: int
    bearer: str
    env: dict[str, str]
    config: Path
    log: Path
    db_url: str | None = None
    proc: subprocess.Popen | None = None
    runs: list[dict] = field(default_factory=list)
    sent: int = 0  # requests completed by wrk (warm-ups included), to compare with what was billed

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1/chat/completions"

    def start(self, workers: int) -> None:
        from gateway.cli.supervisor import proxy_argv
        from gateway.config import Settings

        argv = proxy_argv(Settings(host="127.0.0.1", proxy_port=self.port, proxy_workers=workers), self.config)
        self.proc = subprocess.Popen(
            argv,
            env=self.env,
            cwd=str(REPO),
            stdout=self.log.open("wb"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def wait_ready(self, timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(
                    f"proxy {self.name} exited with {self.proc.returncode}:\n{self.log.read_text()[-3000:]}"
                )
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"http://127.0.0.1:{self.port}/health/liveliness", timeout=1).status_code == 200:
                    return
            time.sleep(0.5)
        raise SystemExit(f"proxy {self.name} did not start in {timeout:.0f}s:\n{self.log.read_text()[-3000:]}")

    def stop(self) -> None:
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)  # its own session: the master and its workers
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def cpu(self) -> float:
        return procstat.tree_cpu(self.proc.pid)

    def db_pids(self) -> list[int]:
        """The database/cache server processes this variant uses: B's PostgreSQL backends (of its own
        database, plus the WAL writer, checkpointer and background writer) and redis-server. SQLite (C)
        runs inside the proxy."""
        if self.name != "B":
            return []
        return asyncio.run(procstat.postgres_pids(PG_ADMIN, BENCH_DB)) + procstat.named_pids("redis-server")

    def worker_pids(self) -> list[int]:
        return [p for p in procstat.tree_pids(self.proc.pid) if p != self.proc.pid]


def _configs(folder: Path, upstream_base_url: str) -> tuple[Path, Path, Path]:
    """(gateway config, plain config, no-op hooks config): the repo's litellm_config.yaml + the fake upstream's
    models; the same model list with nothing of ours (no custom_auth, no callbacks); and with bench/noop_hooks."""
    from devtools.proxy_process import write_test_config

    gateway_cfg = write_test_config(folder, upstream_base_url)
    plain = yaml.safe_load(gateway_cfg.read_text())
    plain["general_settings"] = {"master_key": "os.environ/LITELLM_MASTER_KEY"}
    plain["litellm_settings"] = {k: v for k, v in (plain.get("litellm_settings") or {}).items() if k != "callbacks"}
    plain_cfg = folder / "litellm_config_plain.yaml"
    plain_cfg.write_text(yaml.safe_dump(plain))
    noop = {
        **plain,
        "general_settings": {**plain["general_settings"], "custom_auth": "bench.noop_hooks.auth.user_api_key_auth"},
        "litellm_settings": {
            **plain["litellm_settings"],
            "callbacks": "bench.noop_hooks.callback.proxy_handler_instance",
        },
    }
    noop_cfg = folder / "litellm_config_noop.yaml"
    noop_cfg.write_text(yaml.safe_dump(noop))
    return gateway_cfg, plain_cfg, noop_cfg


async def _fund_account(url: str) -> str:
    """Migrate `url`, create one account with plenty of credits and a key; return the raw key."""
    from gateway import ledger
    from gateway.accounts.keys import create_key
    from gateway.accounts.wallets import get_or_create_account
    from gateway.db.engine import dispose_all, get_engine
    from gateway.db.migrate import upgrade

    upgrade(url)
    db = get_engine(url)
    try:
        account = await get_or_create_account(db, "0x" + "be" * 20)
        await ledger.post_entry(db, account.id, GRANT_MICROS, "admin_grant", f"bench-{account.id}")
        return (await create_key(db, account.id, "bench")).raw_key
    finally:
        await dispose_all()


async def _drop_bench_db() -> None:
    import asyncpg

    conn = await asyncpg.connect(PG_ADMIN)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{BENCH_DB}" WITH (FORCE)')
    finally:
        await conn.close()


async def _recreate_bench_db() -> str:
    import asyncpg

    conn = await asyncpg.connect(PG_ADMIN)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{BENCH_DB}" WITH (FORCE)')
        await conn.execute(f'CREATE DATABASE "{BENCH_DB}"')
    finally:
        await conn.close()
    return f"postgresql+asyncpg://postgres@127.0.0.1:5432/{BENCH_DB}"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_proxies(work: Path, upstream_base_url: str) -> dict[str, Proxy]:
    from gateway.cli.supervisor import child_env
    from gateway.config import Settings

    gateway_cfg, plain_cfg, noop_cfg = _configs(work, upstream_base_url)
    configs = {"A": plain_cfg, "T": noop_cfg}
    proxies: dict[str, Proxy] = {}
    for name in VARIANTS:
        home = work / f"home-{name}"
        home.mkdir()
        if name == "B":
            db_url = asyncio.run(_recreate_bench_db())
        elif name == "C":
            db_url = f"sqlite+aiosqlite:///{home / 'gateway.db'}"
        else:
            db_url = None
        settings = Settings(
            gateway_home=home,
            database_url=db_url,
            redis_url=REDIS_URL if name == "B" else None,
            litellm_master_key=MASTER_KEY,
        )
        env = child_env(settings, MASTER_KEY)  # as `gateway up` runs the proxy (B: GATEWAY_REDIS_URL)
        if name == "A":
            bearer = MASTER_KEY
        elif name == "T":
            bearer = "sk-any-" + os.urandom(8).hex()  # T's custom_auth accepts any key
        else:
            bearer = asyncio.run(_fund_account(db_url))
        proxies[name] = Proxy(
            name,
            _free_port(),
            bearer,
            env,
            configs.get(name, gateway_cfg),
            work / f"proxy-{name}.log",
            db_url,
        )
    return proxies


def probe(p: Proxy) -> None:
    """One plain and one streamed call: both 200, and the gateway's charge header only where it should be."""
    headers = {"Authorization": f"Bearer {p.bearer}"}
    body = {"model": MODEL, "max_tokens": MAX_TOKENS, "messages": [{"role": "user", "content": "hi"}]}
    r = httpx.post(p.url, json=body, headers=headers, timeout=60)
    if r.status_code != 200 or not r.json()["choices"][0]["message"]["content"]:
        raise SystemExit(f"probe of {p.name} failed: {r.status_code} {r.text[:500]}")
    billed = "x-gateway-credits-charged" in r.headers
    if billed != (p.name in ("B", "C")):
        raise SystemExit(f"probe of {p.name}: the gateway's hooks are {'active' if billed else 'missing'}")
    with httpx.stream("POST", p.url, json={**body, "stream": True}, headers=headers, timeout=60) as s:
        text = s.read().decode()
    if s.status_code != 200 or "data: [DONE]" not in text:
        raise SystemExit(f"streamed probe of {p.name} failed: {s.status_code} {text[:500]}")
    p.sent += 2


# ---- load ----------------------------------------------------------------------------------------


def run_wrk(p: Proxy, stream: bool, conc: int, duration: float) -> dict:
    db0 = procstat.cpu_by_pid(p.db_pids())
    ours0 = _ours_cpu()
    cpu0, busy0, t0 = p.cpu(), procstat.machine_busy(), time.monotonic()
    out = subprocess.run(
        [
            "wrk",
            "-t1",
            f"-c{conc}",
            f"-d{duration:g}s",
            "--timeout",
            "15s",
            "-s",
            str(BENCH_DIR / "chat.lua"),
            p.url,
            "--",
            p.bearer,
            "1" if stream else "0",
            MODEL,
            str(MAX_TOKENS),
        ],
        capture_output=True,
        text=True,
    )
    time.sleep(TAIL_SECONDS)
    cpu1, busy1, t1 = p.cpu(), procstat.machine_busy(), time.monotonic()
    db1 = procstat.cpu_by_pid(list(set(db0) | set(p.db_pids())))  # and backends opened meanwhile
    db_cpu = procstat.cpu_delta(db0, db1)
    # what the rest of the machine (other people's work) took meanwhile, in % of all cores
    others = (busy1 - busy0) - (cpu1 - cpu0) - db_cpu - (_ours_cpu() - ours0)
    others_pct = max(others, 0.0) * 100 / ((t1 - t0) * (os.cpu_count() or 1))
    line = next((ln for ln in out.stdout.splitlines() if ln.startswith("BENCH_JSON ")), None)
    if out.returncode != 0 or line is None:
        raise SystemExit(f"wrk failed against {p.name}: {out.stdout}\n{out.stderr}")
    r = json.loads(line.removeprefix("BENCH_JSON "))
    n = max(r["requests"], 1)
    errors = sum(v for k, v in r.items() if k.startswith("err_"))
    p.sent += r["requests"] - r["err_status"]
    return {
        "variant": p.name,
        "stream": stream,
        "conc": conc,
        "requests": r["requests"],
        "errors": errors,
        "rps": r["requests"] / (r["duration_us"] / 1e6),
        "p50": r["p50_us"] / 1000,
        "p99": r["p99_us"] / 1000,
        "max": r["max_us"] / 1000,
        "cpu": (cpu1 - cpu0) * 1000 / n,
        "db_cpu": db_cpu * 1000 / n,
        "others": others_pct,
        "wall": time.monotonic() - t0,
    }


_UPSTREAM_PID: list[int] = []


def _ours_cpu() -> float:
    """CPU of the load generator, the fake upstream and this harness (reaped wrk runs included)."""
    import resource

    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime + sum(procstat.tree_cpu(p) for p in _UPSTREAM_PID)


def _median(runs: list[dict], key: str) -> float:
    return statistics.median(r[key] for r in runs)


def summarize(results: list[dict]) -> list[dict]:
    """One row per (mode, concurrency, variant): medians over rounds."""
    rows = []
    for stream in MODES:
        for conc in CONCURRENCY:
            for v in VARIANTS:
                runs = [r for r in results if (r["stream"], r["conc"], r["variant"]) == (stream, conc, v)]
                if runs:
                    rows.append(
                        {
                            "stream": stream,
                            "conc": conc,
                            "variant": v,
                            "rounds": len(runs),
                            **{k: _median(runs, k) for k in ("rps", "p50", "p99", "cpu", "db_cpu", "others")},
                            "max": max(r["max"] for r in runs),
                            "errors": sum(r["errors"] for r in runs),
                        }
                    )
    return rows


RATIOS = (("B", "A"), ("B", "T"), ("C", "A"), ("C", "B"))  # (variant, base), in the report's column order


def ratios(rows: list[dict]) -> list[dict]:
    """Per point, each of RATIOS both variants ran: entry["B/T"] = B's throughput, latency and CPU beside T's."""
    out = []
    by = {(r["stream"], r["conc"], r["variant"]): r for r in rows}
    for stream in MODES:
        for conc in CONCURRENCY:
            entry: dict = {"stream": stream, "conc": conc}
            for v, base in RATIOS:
                x, b = by.get((stream, conc, v)), by.get((stream, conc, base))
                if x is not None and b is not None:
                    entry[f"{v}/{base}"] = {
                        "rps": x["rps"] / b["rps"],
                        "dp50": x["p50"] - b["p50"],
                        "dp99": x["p99"] - b["p99"],
                        "p99x": x["p99"] / b["p99"],
                        "cpu": (x["cpu"] + x["db_cpu"]) / (b["cpu"] + b["db_cpu"]),
                        "dcpu": x["cpu"] + x["db_cpu"] - b["cpu"] - b["db_cpu"],
                        "dproxy": x["cpu"] - b["cpu"],
                    }
            if len(entry) > 2:
                out.append(entry)
    return out


RATIO_COLS = ("req/s", "p50 ms", "p99 ms", "CPU")


def _ratio_header() -> list[str]:
    return ["mode", "conc"] + [
        f"{v}/{b} {c}" if c in ("req/s", "CPU") else f"{v}-{b} {c}" for v, b in RATIOS for c in RATIO_COLS
    ]


def _ratio_cells(e: dict) -> list[str]:
    cells = [_mode(e["stream"]), str(e["conc"])]
    for v, b in RATIOS:
        x = e.get(f"{v}/{b}")
        cells += [f"{x['rps']:.3f}", f"{x['dp50']:+.2f}", f"{x['dp99']:+.2f}", f"{x['cpu']:.2f}"] if x else ["-"] * 4
    return cells


def _mode(stream: bool) -> str:
    return "stream" if stream else "plain"


def rich_table(rows: list[dict]) -> Table:
    t = Table(title="medians of alternating rounds", title_justify="left")
    for col in (
        "mode",
        "conc",
        "variant",
        "req/s",
        "p50 ms",
        "p99 ms",
        "proxy CPU ms/req",
        "DB CPU ms/req",
        "total CPU ms/req",
        "others' CPU %",
        "rounds",
        "errors",
    ):
        t.add_column(col, justify="left" if col in ("mode", "variant") else "right")
    for r in rows:
        t.add_row(
            _mode(r["stream"]),
            str(r["conc"]),
            r["variant"],
            f"{r['rps']:.1f}",
            f"{r['p50']:.2f}",
            f"{r['p99']:.2f}",
            f"{r['cpu']:.2f}",
            f"{r['db_cpu']:.2f}" if r["variant"] == "B" else "-",
            f"{r['cpu'] + r['db_cpu']:.2f}",
            f"{r['others']:.0f}",
            str(r["rounds"]),
            str(r["errors"]),
        )
    return t


def rich_ratio_table(rat: list[dict]) -> Table:
    t = Table(title="ratios: B to A (plain LiteLLM) and to T (do-nothing hooks), C to A and to B", title_justify="left")
    for col in _ratio_header():
        t.add_column(col, justify="left" if col == "mode" else "right")
    for e in rat:
        t.add_row(*_ratio_cells(e))
    return t


# ---- billing check -------------------------------------------------------------------------------


async def billed(url: str) -> dict:
    import sqlalchemy as sa

    from gateway.db.engine import dispose_all, get_engine

    db = get_engine(url)
    try:
        async with db.connect() as conn:
            usage = (await conn.execute(sa.text("SELECT count(*) FROM llm_usage"))).scalar_one()
            pending = (
                await conn.execute(sa.text("SELECT count(*) FROM credit_holds WHERE status = 'pending'"))
            ).scalar_one()
            books = (
                (
                    await conn.execute(
                        sa.text(
                            "SELECT a.balance_micros = (SELECT COALESCE(SUM(amount_micros), 0) FROM credit_ledger l "
                            "WHERE l.account_id = a.id) "
                            "AND a.held_micros = (SELECT COALESCE(SUM(amount_micros), 0) FROM credit_holds h "
                            "WHERE h.account_id = a.id AND h.status = 'pending') FROM billing_accounts a"
                        )
                    )
                )
                .scalars()
                .all()
            )
        return {"usage_rows": usage, "pending_holds": pending, "books_balance": all(books)}
    finally:
        await dispose_all()


# ---- report --------------------------------------------------------------------------------------


def _md_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def _worst(rat: list[dict], ratio: str, key: str, lowest: bool = True) -> tuple[float, str] | None:
    """The lowest (or highest) value of entry[ratio][key] over the points, and where it was."""
    found = [(e[ratio][key], f"{_mode(e['stream'])} c={e['conc']}") for e in rat if ratio in e]
    if not found:
        return None
    return min(found) if lowest else max(found)


def _verdict(text: str, ok: bool, detail: str) -> str:
    return f"- {text}: **{'met' if ok else 'MISSED'}** ({detail})."


def verdicts(rat: list[dict], rows: list[dict]) -> list[str]:
    """Issue 14's targets, each met or missed and by how much."""
    out = []
    for ratio, floor in (("B/A", 1.0), ("B/T", 0.95), ("C/B", 0.8)):
        w = _worst(rat, ratio, "rps")
        if w:
            out.append(
                _verdict(f"{ratio} throughput >= {floor:g} at every point", w[0] >= floor, f"lowest {w[0]:.3f}, {w[1]}")
            )
    for e in rat:
        if e["conc"] == 1 and "B/T" in e:
            d = e["B/T"]["dp50"]
            out.append(_verdict(f"B p50 at c=1 ({_mode(e['stream'])}) within 1 ms of T's", d <= 1, f"{d:+.2f} ms"))
    for key, cap, what in (("dcpu", 1.0, "proxy + database"), ("dproxy", 0.5, "proxy only")):
        w = _worst(rat, "B/T", key, lowest=False)
        if w:
            out.append(
                _verdict(
                    f"billing CPU per call (B-T, {what}) <= {cap:g} ms", w[0] <= cap, f"highest {w[0]:.2f} ms, {w[1]}"
                )
            )
    for e in rat:
        if e["conc"] == 16 and "C/B" in e:
            x = e["C/B"]["p99x"]
            out.append(_verdict(f"C p99 at c=16 ({_mode(e['stream'])}) within 3x of B's", x <= 3, f"{x:.2f}x"))
    c_max = max((r["max"] for r in rows if r["variant"] == "C"), default=None)
    if c_max is not None:
        out.append(_verdict("no C request over 2 s", c_max <= 2000, f"slowest {c_max:.0f} ms"))
    return out


def write_results(
    info: dict, rows: list[dict], rat: list[dict], checks: dict, money_md: str | None, workers: int, started: float
) -> Path:
    md = [
        "# Benchmark results (`make bench`)",
        "",
        f"Generated by `make bench` ({'BENCH_QUICK=1 smoke run' if QUICK else 'full run'}) on "
        f"{datetime.now(UTC):%Y-%m-%d %H:%M UTC}, in {(time.monotonic() - started) / 60:.1f} min. "
        "Regenerate with `make bench`; do not edit by hand.",
        "",
        "## Machine and versions",
        "",
        _md_table(["what", "value"], [[k, str(v)] for k, v in info.items()]),
        "",
        "## Setup",
        "",
        f"- Every proxy: LiteLLM {info.get('litellm')}, `--num_workers {workers}` (as `gateway up` picks from the "
        "cores), bound to 127.0.0.1, the same model list; all calls go to the fast fake OpenAI upstream "
        "(devtools/fake_upstream.py, 8-word answers) on the same machine.",
        *[f"- **{k}**: {TITLES[k]}." for k in VARIANTS],
        f"- Load: wrk (bench/chat.lua), one thread, keep-alive connections, `POST /v1/chat/completions` "
        f"for `{MODEL}` with `max_tokens: {MAX_TOKENS}` (so every call holds its worst case), plain and "
        "`stream: true`; a stream's latency is until its last byte (after the settle, which is awaited "
        "before `[DONE]`).",
        f"- Each point: {DURATION:g} s, {ROUNDS} round(s) in the order A,B,C,A,B,C,...; the table shows "
        "medians. CPU ms/req: CPU time of the proxy's processes (master + workers), and for B also "
        "PostgreSQL's (the backends of B's database, the WAL writer, checkpointer and background writer) "
        f"and redis-server's, from /proc, over the run plus {TAIL_SECONDS:g} s, divided by the requests wrk "
        "completed. SQLite (C) runs inside the proxy, so its cost is in the proxy column.",
        "- Everything shares 2 cores: wrk and the fake upstream take CPU too, which is why CPU ms/req is "
        "the steadier measure of what billing costs. *others' CPU %*: what every other process on the "
        "machine (not this proxy, its database, wrk, the upstream or the harness) took during the run, in "
        "% of all cores (/proc/stat): a run with a high value was measured on a busy machine.",
        "",
        "## Results",
        "",
        _md_table(
            [
                "mode",
                "conc",
                "variant",
                "req/s",
                "p50 ms",
                "p99 ms",
                "proxy CPU ms/req",
                "DB CPU ms/req",
                "total CPU ms/req",
                "others' CPU %",
                "errors",
            ],
            [
                [
                    _mode(r["stream"]),
                    str(r["conc"]),
                    r["variant"],
                    f"{r['rps']:.1f}",
                    f"{r['p50']:.2f}",
                    f"{r['p99']:.2f}",
                    f"{r['cpu']:.2f}",
                    f"{r['db_cpu']:.2f}" if r["variant"] == "B" else "-",
                    f"{r['cpu'] + r['db_cpu']:.2f}",
                    f"{r['others']:.0f}",
                    str(r["errors"]),
                ]
                for r in rows
            ],
        ),
        "",
        "### Ratios: B to A and to T, C to A and to B",
        "",
        "CPU columns: total CPU per request (proxy + database) of the first variant over the second's.",
        "",
        _md_table(_ratio_header(), [_ratio_cells(e) for e in rat]),
        "",
        "### Targets",
        "",
        *verdicts(rat, rows),
        "",
        "### Every call was billed",
        "",
    ]
    for name, c in checks.items():
        if "error" in c:
            md.append(f"- {name}: could not read its database after the runs: {c['error']}.")
            continue
        md.append(
            f"- {name}: {c['usage_rows']} `llm_usage` rows for {c['sent']} completed requests "
            f"(probes and warm-ups included; calls cut off by wrk's stop may be billed too), "
            f"{c['pending_holds']} holds still pending, books balance: {'yes' if c['books_balance'] else 'NO'}."
        )
    if money_md:
        md += ["", money_md]
    path = BENCH_DIR / "RESULTS.md"
    path.write_text("\n".join(md) + "\n")
    return path


# ---- main ----------------------------------------------------------------------------------------


def _interrupt(*_: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    started = time.monotonic()
    signal.signal(signal.SIGTERM, _interrupt)  # `kill` cleans up like Ctrl-C: proxies stopped, upstream too
    ensure_tools_and_services()
    from devtools.fake_upstream import FakeUpstream
    from gateway.cli.supervisor import proxy_workers
    from gateway.config import Settings

    workers = proxy_workers(Settings(proxy_workers=0))
    info = machine_info()
    console.print(
        f"[bold]credit-gateway bench[/bold] ({'quick' if QUICK else 'full'}): {info['CPU']}, "
        f"LiteLLM {info['litellm']}, {workers} workers per proxy, variants {','.join(VARIANTS)}, "
        f"{ROUNDS} round(s) x {DURATION:g} s per point"
    )
    work = Path(tempfile.mkdtemp(prefix="gw-bench-"))  # proxy logs stay here if anything fails
    with FakeUpstream() as upstream:
        _UPSTREAM_PID[:] = [upstream.proc.pid]
        proxies = make_proxies(work, upstream.base_url)
        try:
            for p in proxies.values():  # one at a time: uvicorn kills workers that take > 5 s to boot
                console.print(f"starting proxy {p.name} ({TITLES[p.name]}): LiteLLM takes ~10-20 s to import…")
                p.start(workers)
                p.wait_ready()
                probe(p)
            if "--serve" in argv:
                for p in proxies.values():
                    console.print(
                        f"{p.name}: {p.url} bearer={p.bearer} pid={p.proc.pid} workers={p.worker_pids()} log={p.log}"
                    )
                console.print(f"upstream: {upstream.base_url}; Ctrl-C stops")
                with contextlib.suppress(KeyboardInterrupt):
                    while True:
                        time.sleep(3600)
                return 0
            results = load(proxies)
            rows = summarize(results)
            rat = ratios(rows)
            time.sleep(2)  # let interrupted calls at the end of the last run finish their release/settle
            checks = {}
            for p in proxies.values():
                if p.db_url:
                    try:
                        checks[p.name] = {**asyncio.run(billed(p.db_url)), "sent": p.sent}
                    except Exception as exc:  # noqa: BLE001 - report it, keep the measurements
                        checks[p.name] = {"error": f"{type(exc).__name__}: {str(exc).splitlines()[0]}", "sent": p.sent}
        except BaseException:
            console.print(f"[red]the bench failed: proxy logs are in {work}[/red]")
            raise
        finally:
            for p in proxies.values():
                p.stop()
            if "B" in proxies:
                asyncio.run(_drop_bench_db())
    shutil.rmtree(work, ignore_errors=True)
    money_md = None
    if os.environ.get("BENCH_SKIP_MONEY") != "1":
        from bench import hooks, money_path

        money_md = money_path.main(quick=QUICK, console=console) + "\n\n" + hooks.main(quick=QUICK, console=console)
    path = write_results(info, rows, rat, checks, money_md, workers, started)
    console.print(rich_table(rows))
    console.print(rich_ratio_table(rat))
    for line in verdicts(rat, rows):
        console.print(line.replace("**", ""))
    for name, c in checks.items():
        if "error" in c:
            console.print(f"[red]{name}: could not read its database after the runs: {c['error']}[/red]")
            continue
        console.print(
            f"{name}: {c['usage_rows']} calls billed for {c['sent']} completed requests, "
            f"{c['pending_holds']} holds pending, books balance: {c['books_balance']}"
        )
    console.print(f"wrote {path.relative_to(REPO)} in {(time.monotonic() - started) / 60:.1f} min")
    return 0


def load(proxies: dict[str, Proxy]) -> list[dict]:
    points = [(s, c) for s in MODES for c in CONCURRENCY]
    total = len(points) * len(proxies) * ROUNDS
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
    )
    task = progress.add_task("warming up", total=total)
    results: list[dict] = []
    with Live(Group(progress, rich_table([])), console=console, refresh_per_second=2, transient=False) as live:
        for p in proxies.values():  # warm-up: connection pools, caches, LiteLLM's first-call work
            for stream in MODES:
                progress.update(task, description=f"warm-up {p.name} {_mode(stream)}")
                run_wrk(p, stream, 16, 2 if QUICK else 3)
        for rnd in range(1, ROUNDS + 1):
            for stream, conc in points:
                for p in proxies.values():
                    progress.update(task, description=f"round {rnd}/{ROUNDS}: {p.name} {_mode(stream)} c={conc}")
                    results.append(run_wrk(p, stream, conc, DURATION))
                    progress.advance(task)
                    live.update(Group(progress, rich_table(summarize(results))))
        progress.update(task, description="done")
    return results


if __name__ == "__main__":
    raise SystemExit(main())
