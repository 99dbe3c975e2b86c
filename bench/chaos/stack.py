"""The real stack a chaos run drives, on this machine: a PostgreSQL database of the run's own and Redis, each
behind a TCP forwarder the run controls (cut, hang: the machine's servers are never touched); the fake
provider (devtools/fake_upstream.py) with its served-calls log and seeded random latency, failures and
mid-stream aborts; two LiteLLM proxy processes with two workers each, sharing the database, Redis and one
spool folder (on a small tmpfs, so the disk can really be filled); the hold sweeper; anvil and the chain
watcher (bench/chaos/chain.py); the sidecar serving the credits page's API (bench/chaos/page.py). Each process is
started the way the tests start it (devtools/proxy_process.py) and restarted after a kill as its supervisor
would (uvicorn restarts a killed worker itself; a killed proxy or sweeper is started again here).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import sqlalchemy as sa

from bench.chaos.chain import Chain
from bench.chaos.page import Page
from devtools.fake_upstream import FakeUpstream
from devtools.forwarder import TcpForwarder
from devtools.pg import migrated_database
from devtools.proxy_process import ProxyProcess, free_port, write_test_config
from gateway.cli.master_key import ensure_master_key
from gateway.cli.supervisor import child_env
from gateway.config import Settings

HOLD_TTL_SECONDS = 20  # longer than any call here (latency + chunks < 5 s), short enough to sweep in the run
HOLD_SWEEP_GRACE_SECONDS = 10
SPOOL_TMPFS_BYTES = 4 * 1024 * 1024
MASTER_KEY = "sk-admin-chaos"


def descendants(pid: int) -> list[int]:
    """Every process below `pid` (from /proc), children first."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                children.setdefault(ppid, []).append(int(entry.name))
    found: list[int] = []
    todo = list(children.get(pid, []))
    while todo:
        child = todo.pop()
        found.append(child)
        todo.extend(children.get(child, []))
    return found


def kill_tree(pid: int) -> None:
    """SIGKILL a process and everything below it (a proxy's uvicorn workers would outlive their parent)."""
    for target in [pid, *descendants(pid)]:
        with contextlib.suppress(ProcessLookupError):
            os.kill(target, signal.SIGKILL)


@dataclass
class Spool:
    """The proxies' shared spool folder, on a tmpfs of its own when this machine lets us mount one."""

    folder: Path
    tmpfs: bool = False
    filler: Path | None = None

    @classmethod
    def make(cls, folder: Path) -> Spool:
        folder.mkdir(parents=True, exist_ok=True)
        mounted = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={SPOOL_TMPFS_BYTES}", "tmpfs", str(folder)], capture_output=True
        )
        return cls(folder, tmpfs=mounted.returncode == 0)

    def fill(self) -> None:
        """Use up the tmpfs: later spool writes fail with ENOSPC (SQLITE_FULL), as on a full disk."""
        if not self.tmpfs:
            return
        self.filler = self.folder / "filler"
        with contextlib.suppress(OSError), self.filler.open("wb") as f:
            while True:
                f.write(b"\0" * 65536)

    def free(self) -> None:
        if self.filler is not None:
            self.filler.unlink(missing_ok=True)
            self.filler = None

    def close(self) -> None:
        self.free()
        if self.tmpfs:
            subprocess.run(["umount", "-l", str(self.folder)], capture_output=True)


@dataclass
class Stack:
    home: Path
    seed: int
    db_url: str = ""  # the database itself (the checker's view)
    linked_url: str = ""  # through the PostgreSQL forwarder (the gateway's view)
    pg: TcpForwarder | None = None
    redis: TcpForwarder | None = None
    upstream: FakeUpstream | None = None
    proxies: list[ProxyProcess] = field(default_factory=list)
    sweeper: subprocess.Popen | None = None
    spool: Spool | None = None
    provider_log: Path = Path()
    chain: Chain | None = None
    page: Page | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def settings(self, **changes: object) -> Settings:
        return Settings(
            gateway_home=self.home,
            database_url=self.linked_url,
            redis_url=f"redis://{self.redis.netloc}/0" if self.redis else None,
            litellm_master_key=MASTER_KEY,
            spool_dir=self.spool.folder if self.spool else None,
            hold_ttl_seconds=HOLD_TTL_SECONDS,
            hold_sweep_grace_seconds=HOLD_SWEEP_GRACE_SECONDS,
            spool_replay_seconds=1.0,
            **changes,
        )

    def tuning(self) -> dict[str, str]:
        """The settings child_env does not pass on, as a deployment's .env would set them."""
        return {
            "SPOOL_DIR": str(self.settings().effective_spool_dir),
            "HOLD_TTL_SECONDS": str(HOLD_TTL_SECONDS),
            "HOLD_SWEEP_GRACE_SECONDS": str(HOLD_SWEEP_GRACE_SECONDS),
            "SPOOL_REPLAY_SECONDS": "1",
        }

    def env(self) -> dict[str, str]:
        """The environment of a gateway process of the run other than a proxy (sweeper, CLI)."""
        s = self.settings()
        chain = self.chain.env() if self.chain else {}
        return {**child_env(s, ensure_master_key(s), metrics="chaos"), **self.tuning(), **chain}

    # ---- processes --------------------------------------------------------------------------------
    def start_proxy(self, index: int) -> ProxyProcess:
        """Start (or restart) proxy `index` on its port; blocks until it answers."""
        with self._lock:
            old = self.proxies[index] if index < len(self.proxies) else None
        port = old.settings.proxy_port if old else free_port()
        settings = self.settings(proxy_port=port, proxy_workers=2)
        config = write_test_config(self.home, self.upstream.base_url) if self.upstream else Path()
        log = self.home / f"proxy{index}-{time.time_ns()}.log"
        proxy = ProxyProcess(settings, config, log, extra_env=self.tuning())
        proxy.start(timeout=240)
        with self._lock:
            if old is None:
                self.proxies.append(proxy)  # in the order they answer: any proxy serves any call
            else:
                self.proxies[index] = proxy
        return proxy

    def start_sweeper(self) -> None:
        log = (self.home / f"sweeper-{time.time_ns()}.log").open("wb")
        self.sweeper = subprocess.Popen(
            [sys.executable, "-m", "gateway", "sweep", "--interval", "2"],
            env=self.env(),
            stdout=log,
            stderr=subprocess.STDOUT,
        )

    def proxy_pid(self, index: int) -> int | None:
        with self._lock:
            proc = self.proxies[index].proc
        return proc.pid if proc and proc.poll() is None else None

    def workers(self, index: int) -> list[int]:
        pid = self.proxy_pid(index)
        return [p for p in descendants(pid) if "spawn_main" in _cmdline(p)] if pid else []  # uvicorn's workers

    def base_urls(self) -> list[str]:
        with self._lock:
            return [p.base_url for p in self.proxies]

    def stop(self) -> None:
        for proxy in self.proxies:
            if proxy.proc and proxy.proc.poll() is None:
                kill_tree(proxy.proc.pid)
                proxy.proc.wait()
        if self.sweeper and self.sweeper.poll() is None:
            self.sweeper.kill()
            self.sweeper.wait()
        if self.upstream:
            self.upstream.stop()
        if self.page:
            self.page.stop()
        if self.chain:
            self.chain.stop()
        for link in (self.pg, self.redis):
            if link:
                link.stop()
        if self.spool:
            self.spool.close()


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


@contextlib.contextmanager
def running(home: Path, seed: int, proxies: int = 2) -> Iterator[Stack]:
    """The whole stack up (its own database, migrated), then torn down and the database dropped."""
    with migrated_database("gw_chaos") as db_url:
        stack = Stack(home=home, seed=seed, db_url=db_url)
        try:
            url = sa.engine.make_url(db_url)
            stack.pg = TcpForwarder(url.host or "127.0.0.1", url.port or 5432).start()
            stack.redis = TcpForwarder("127.0.0.1", 6379).start()
            stack.linked_url = url.set(host=stack.pg.host, port=stack.pg.port).render_as_string(hide_password=False)
            stack.spool = Spool.make(home / "spool")
            stack.provider_log = home / "provider.jsonl"
            stack.upstream = FakeUpstream(args=("--log", str(stack.provider_log), "--seed", str(seed)))
            stack.upstream._request(
                "POST",
                "/_control/mode",
                {"latency": 0.05, "latency_jitter": 0.6, "chunk_delay": 0.04, "fail_ratio": 0.05, "abort_ratio": 0.05},
            )
            stack.chain = Chain(home).start()
            boots = [threading.Thread(target=stack.start_proxy, args=(i,)) for i in range(proxies)]
            for boot in boots:
                boot.start()
            for boot in boots:
                boot.join()
            if len(stack.proxies) != proxies:
                raise RuntimeError(f"only {len(stack.proxies)} of {proxies} proxies started; logs in {home}")
            stack.start_sweeper()
            stack.chain.start_watcher(stack.env())
            stack.page = Page(home)
            stack.page.start(stack.env())
            yield stack
        finally:
            stack.stop()
