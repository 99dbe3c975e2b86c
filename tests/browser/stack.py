"""The real services behind the page in browser tests: the sidecar (`gateway sidecar`, a subprocess) on the
run's PostgreSQL and Redis, with the chain settings of the session's anvil. Its chain RPC goes through a
TcpForwarder, so a test can cut the gateway off the chain while the wallet still reaches it.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import redis

from devtools.chain.anvil import Anvil
from devtools.forwarder import TcpForwarder
from devtools.proxy_process import free_port, stop_process
from gateway.config import REPO_ROOT

REDIS_URL = "redis://127.0.0.1:6379/0"
MIN_CONFIRMATIONS = 3
NONCES_PER_MINUTE = 6  # per client IP; every test browses from an IP of its own (X-Forwarded-For)


@dataclass
class Sidecar:
    url: str
    dao: str
    rpc: TcpForwarder  # the gateway's way to the chain
    proc: subprocess.Popen
    redis_prefix: str
    log: Path

    def stop(self) -> None:
        stop_process(self.proc)
        with redis.Redis.from_url(REDIS_URL) as client:
            for key in client.scan_iter(match=f"{self.redis_prefix}:*"):
                client.delete(key)


def start_sidecar(
    pg_url: str, chain: Anvil, rpc: TcpForwarder, home: Path, dao: str, operators: tuple[str, ...] = ()
) -> Sidecar:
    port = free_port()
    prefix = f"gwtest:browser:{secrets.token_hex(4)}"
    env = {
        **os.environ,
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])),
        "GATEWAY_HOME": str(home),
        "GATEWAY_DATABASE_URL": pg_url,
        "GATEWAY_REDIS_URL": REDIS_URL,
        "SIDECAR_REDIS_PREFIX": prefix,
        "HOST": "127.0.0.1",
        "SIDECAR_PORT": str(port),
        "SIWE_DOMAIN": f"127.0.0.1:{port}",
        "CHAIN_ID": str(chain.chain_id),
        "CHAIN_RPC_URL": f"http://{rpc.netloc}",
        "CHAIN_RPC_TIMEOUT_SECONDS": "2",
        "USDC_ADDRESS": chain.usdc.address,
        "DAO_WALLET_ADDRESS": dao,
        "MIN_CONFIRMATIONS": str(MIN_CONFIRMATIONS),
        "MIN_TOPUP_USD": "1",
        "MAX_TOPUP_USD": "100",
        "RATE_LIMIT_NONCE": f"{NONCES_PER_MINUTE}/minute",
        "FORWARDED_ALLOW_IPS": "127.0.0.1",  # the tests play the TLS proxy: each browses from an X-Forwarded-For
        "OPERATOR_WALLETS": json.dumps(list(operators)),
        "EXPLORER_TX_URL": "https://explorer.invalid/tx/{tx}",
    }
    env.pop("DATABASE_URL", None)
    env.pop("REDIS_URL", None)
    log = home / "sidecar.log"
    proc = subprocess.Popen(
        [sys.executable, "-m", "gateway", "sidecar"], cwd=home, env=env,
        stdout=log.open("wb"), stderr=subprocess.STDOUT,
    )  # fmt: skip
    sidecar = Sidecar(f"http://127.0.0.1:{port}", dao, rpc, proc, prefix, log)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the sidecar exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(f"{sidecar.url}/healthz", timeout=1).status_code == 200:
                return sidecar
        except httpx.HTTPError:
            time.sleep(0.2)
    sidecar.stop()
    raise RuntimeError(f"the sidecar did not start in 60 s:\n{log.read_text()[-3000:]}")
