"""The chaos run's faults: a schedule drawn from the seed (what, when, how long; overlapping), and its
execution against the stack.

- `pg_cut` / `pg_hang`, `redis_cut` / `redis_hang`: the forwarder in front of the server refuses (resets)
  every connection, or keeps them open and passes nothing; overlapping faults on one link combine (cut wins
  over hung) and the link opens when the last one ends;
- `kill_worker`: SIGKILL of one LiteLLM worker of a proxy (uvicorn starts a new one);
- `kill_proxy`: SIGKILL of a whole proxy process and its workers, started again at once (its successor
  replays the shared spool);
- `kill_sweeper`: SIGKILL of the sweeper, started again after the fault's duration;
- `clock_jump`: one sweeper pass whose clock is ahead by the fault's size (`sweep_once` with a shifted `now`:
  the process clock itself is not changed), so holds of calls still in flight are expired under them;
- `spool_full`: the spool's tmpfs filled to the last byte for the fault's duration;
- `chain_cut` / `chain_hang`: the watcher's chain RPC (a forwarder in front of anvil);
- `reorg`: anvil replaces its last 1 to MIN_CONFIRMATIONS - 1 blocks (their top-ups are gone for good);
- `kill_watcher` / `kill_sidecar`: SIGKILL of the chain watcher / the sidecar, started again after the
  fault's duration;
- `poison`: for the fault's duration PostgreSQL refuses one account's usage rows (a trigger raising a data
  error): a permanent refusal, which must be set aside and named by reconcile, never spooled or retried.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field

import asyncpg

from bench.chaos.chain import MIN_CONFIRMATIONS
from bench.chaos.stack import Stack, kill_tree

LINK_FAULTS = ("pg_cut", "pg_hang", "redis_cut", "redis_hang", "chain_cut", "chain_hang")
KINDS = (
    *LINK_FAULTS,
    *("kill_worker", "kill_proxy", "kill_sweeper", "clock_jump", "spool_full", "reorg", "kill_watcher", "poison"),
    "kill_sidecar",
)
WEIGHTS = (4, 2, 2, 2, 2, 1, 3, 1, 1, 1, 2, 2, 1, 1, 1)
POISON_SQL = (
    "CREATE OR REPLACE FUNCTION chaos_poison() RETURNS trigger LANGUAGE plpgsql AS "
    "$$ BEGIN RAISE EXCEPTION 'chaos: usage refused' USING ERRCODE = '22023'; END $$",
    "CREATE TRIGGER chaos_poison_{account} BEFORE INSERT ON llm_usage FOR EACH ROW "
    "WHEN (NEW.account_id = {account}) EXECUTE FUNCTION chaos_poison()",
)
CURE_SQL = "DROP TRIGGER IF EXISTS chaos_poison_{account} ON llm_usage"
CLOCK_JUMP = """
import asyncio, sys
from datetime import UTC, datetime, timedelta
from gateway.config import get_settings
from gateway.jobs.sweeper import sweep_once
from gateway.runtime import build_runtime

async def main():
    settings = get_settings()
    rt = build_runtime(settings)
    try:
        now = datetime.now(UTC) + timedelta(seconds=float(sys.argv[1]))
        expired = await sweep_once(rt.ledger, settings, now=now)
        print(len(expired))
    finally:
        await rt.aclose()
asyncio.run(main())
"""


@dataclass(frozen=True)
class Fault:
    at: float  # seconds after the load started
    kind: str
    seconds: float  # how long it lasts (a kill: how long until the restart, where it is ours)
    target: int = 0  # which proxy


@dataclass
class Injected:
    fault: Fault
    started: float = 0.0
    ended: float = 0.0
    detail: str = ""


def schedule(rng: random.Random, seconds: float, proxies: int, accounts: int) -> list[Fault]:
    """About one fault every 6 s, at least one PostgreSQL cut and one worker kill; a proxy is killed at most
    once per 90 s of budget, at most once under 90 s (a LiteLLM proxy takes ~30 s of CPU to boot again)."""
    window = max(5.0, seconds * 0.85)
    faults = [
        Fault(rng.uniform(1, window), "pg_cut", rng.uniform(3, 10)),
        Fault(rng.uniform(1, window), "kill_worker", 0, rng.randrange(proxies)),
    ]
    proxy_kills = max(1, int(seconds // 90)) if seconds >= 60 else 0
    for _ in range(max(2, int(seconds // 6)) - 2):
        kind = rng.choices(KINDS, WEIGHTS)[0]
        if kind == "kill_proxy":
            if proxy_kills == 0:
                kind = "kill_worker"
            proxy_kills -= 1
        duration = {"kill_worker": 0, "kill_proxy": 0}.get(kind)
        if kind in ("kill_sweeper", "kill_watcher", "kill_sidecar"):
            duration = rng.uniform(1, 8)
        elif kind == "clock_jump":
            duration = rng.uniform(30, 900)  # the size of the jump
        elif kind == "reorg":
            duration = rng.randint(1, MIN_CONFIRMATIONS - 1)  # the depth, below the confirmation depth
        if kind == "poison":
            duration = rng.uniform(10, 30)  # long enough for the account's calls to meet it
        target = rng.randint(1, accounts) if kind == "poison" else rng.randrange(proxies)
        faults.append(Fault(rng.uniform(1, window), kind, duration or rng.uniform(2, 12), target))
    return sorted(faults, key=lambda f: f.at)


@dataclass
class Injector:
    stack: Stack
    t0: float
    log: list[Injected] = field(default_factory=list)
    _active: dict[str, list[str]] = field(default_factory=lambda: {"pg": [], "redis": [], "chain": []})

    async def run(self, faults: list[Fault]) -> None:
        await asyncio.gather(*[self._one(f) for f in faults])

    async def _one(self, fault: Fault) -> None:
        await asyncio.sleep(max(0.0, self.t0 + fault.at - time.monotonic()))
        entry = Injected(fault, started=time.monotonic() - self.t0)
        self.log.append(entry)
        try:
            entry.detail = await getattr(self, fault.kind)(fault) or ""
        except Exception as exc:  # noqa: BLE001 - a fault that could not be injected is reported, never fatal
            entry.detail = f"not injected: {type(exc).__name__}: {exc}"
        entry.ended = time.monotonic() - self.t0

    # ---- links ------------------------------------------------------------------------------------
    async def _link(self, name: str, mode: str, seconds: float) -> str:
        self._active[name].append(mode)
        self._apply(name)
        await asyncio.sleep(seconds)
        self._active[name].remove(mode)
        self._apply(name)
        return ""

    def _apply(self, name: str) -> None:
        link = {"pg": self.stack.pg, "redis": self.stack.redis, "chain": self.stack.chain.rpc}[name]
        active = self._active[name]
        if "cut" in active:
            link.cut()
        elif "hang" in active:
            link.hang()
        else:
            link.restore()

    async def pg_cut(self, f: Fault) -> str:
        return await self._link("pg", "cut", f.seconds)

    async def pg_hang(self, f: Fault) -> str:
        return await self._link("pg", "hang", f.seconds)

    async def redis_cut(self, f: Fault) -> str:
        return await self._link("redis", "cut", f.seconds)

    async def redis_hang(self, f: Fault) -> str:
        return await self._link("redis", "hang", f.seconds)

    async def chain_cut(self, f: Fault) -> str:
        return await self._link("chain", "cut", f.seconds)

    async def chain_hang(self, f: Fault) -> str:
        return await self._link("chain", "hang", f.seconds)

    async def reorg(self, f: Fault) -> str:
        return await asyncio.to_thread(self.stack.chain.reorg, int(f.seconds))

    async def poison(self, f: Fault) -> str:
        """The account poisoned is one of the five richest at that moment (`target` picks which): one whose
        calls are still served (the near-zero ones are refused at the hold, before any usage row)."""
        dsn = self.stack.db_url.replace("postgresql+asyncpg://", "postgresql://")
        conn = await asyncpg.connect(dsn)
        try:
            account = await conn.fetchval(
                "SELECT id FROM billing_accounts ORDER BY balance_micros DESC, id LIMIT 1 OFFSET $1", f.target % 5
            )
            async with conn.transaction():
                for statement in POISON_SQL:
                    await conn.execute(statement.format(account=int(account)))
            await asyncio.sleep(f.seconds)
            await conn.execute(CURE_SQL.format(account=int(account)))
        finally:
            await conn.close()
        return f"account {account}'s usage rows refused"

    async def kill_sidecar(self, f: Fault) -> str:
        page = self.stack.page
        if page.process is None or page.process.poll() is not None:
            return "sidecar was down already"
        pid = page.process.pid
        page.stop()
        await asyncio.sleep(f.seconds)
        await asyncio.to_thread(page.start, self.stack.env())
        return f"sidecar pid {pid}"

    async def kill_watcher(self, f: Fault) -> str:
        watcher = self.stack.chain.watcher
        if watcher is None or watcher.poll() is not None:
            return "watcher was down already"
        watcher.kill()
        await asyncio.to_thread(watcher.wait)
        await asyncio.sleep(f.seconds)
        self.stack.chain.start_watcher(self.stack.env())
        return f"watcher pid {watcher.pid}"

    # ---- processes --------------------------------------------------------------------------------
    async def kill_worker(self, f: Fault) -> str:
        workers = self.stack.workers(f.target)
        if not workers:
            return f"proxy {f.target} had no worker to kill (restarting)"
        victim = random.Random(f.at).choice(workers)
        with contextlib.suppress(ProcessLookupError):
            os.kill(victim, signal.SIGKILL)
        return f"proxy {f.target} worker pid {victim}"

    async def kill_proxy(self, f: Fault) -> str:
        pid = self.stack.proxy_pid(f.target)
        if pid is None:
            return f"proxy {f.target} was down already"
        kill_tree(pid)
        started = time.monotonic()
        await asyncio.to_thread(self.stack.start_proxy, f.target)
        return f"proxy {f.target} pid {pid}; back after {time.monotonic() - started:.0f} s"

    async def kill_sweeper(self, f: Fault) -> str:
        sweeper = self.stack.sweeper
        if sweeper is None or sweeper.poll() is not None:
            return "sweeper was down already"
        sweeper.kill()
        await asyncio.to_thread(sweeper.wait)
        await asyncio.sleep(f.seconds)
        self.stack.start_sweeper()
        return f"sweeper pid {sweeper.pid}"

    async def clock_jump(self, f: Fault) -> str:
        proc = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-c", CLOCK_JUMP, str(f.seconds)],
            env=self.stack.env(),
            capture_output=True,
            text=True,
            timeout=120,
        )
        if proc.returncode != 0:
            return f"sweeper pass {f.seconds:.0f} s ahead failed: {proc.stderr.strip().splitlines()[-1:]}"
        return f"a sweeper pass {f.seconds:.0f} s ahead expired {proc.stdout.strip()} holds"

    async def spool_full(self, f: Fault) -> str:
        spool = self.stack.spool
        if spool is None or not spool.tmpfs:
            return "not injected: no tmpfs for the spool on this machine"
        await asyncio.to_thread(spool.fill)
        await asyncio.sleep(f.seconds)
        spool.free()
        return ""

    def restore_all(self) -> None:
        """Every link open again (the faults' own ends do it; this is for a run cut short)."""
        for name in self._active:
            self._active[name].clear()
            self._apply(name)
        if self.stack.spool:
            self.stack.spool.free()
