"""The chaos run's credits page: the sidecar (`gateway sidecar`, on the run's PostgreSQL and Redis links and
the chain RPC forwarder) and browser-like clients that sign in with their wallet (SIWE: nonce, EIP-4361
message, signature, session cookie) and confirm each top-up they sent through the page's API, racing the
chain watcher for the same transfer (it must be credited once).
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from eth_account.messages import encode_defunct
from eth_account.signers.local import LocalAccount
from siwe import ISO8601Datetime, SiweMessage

from devtools.proxy_process import free_port

CONFIRM_TRIES = 40  # a confirm retried every 2 s while the transfer is not deep enough or the page is down


@dataclass
class Page:
    home: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen | None = None
    outcomes: Counter[str] = field(default_factory=Counter)

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self, base: dict[str, str]) -> dict[str, str]:
        return {
            **base,
            "SIDECAR_PORT": str(self.port),
            "SIWE_DOMAIN": f"127.0.0.1:{self.port}",
            "SIDECAR_REDIS_PREFIX": f"chaos:{self.port}",
            "RATE_LIMIT_NONCE": "10000/minute",
            "RATE_LIMIT_VERIFY": "10000/minute",
            "RATE_LIMIT_PAYMENT_CONFIRM": "10000/minute",
        }

    def start(self, base_env: dict[str, str], timeout: float = 120) -> None:
        log = (self.home / f"sidecar-{time.time_ns()}.log").open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "gateway", "sidecar"], env=self.env(base_env), stdout=log, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.process.poll() is None:
            try:
                if httpx.get(f"{self.origin}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        raise RuntimeError(f"the sidecar did not start; see {log.name}")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.origin, headers={"Origin": self.origin}, timeout=15)

    async def sign_in(self, client: httpx.AsyncClient, wallet: LocalAccount) -> bool:
        try:
            nonce = await client.get("/api/v1/auth/nonce")
            if nonce.status_code != 200:
                self.outcomes[f"sign_in:{nonce.status_code}"] += 1
                return False
            text = siwe_text(f"127.0.0.1:{self.port}", self.origin, wallet.address, nonce.json()["nonce"])
            signature = wallet.sign_message(encode_defunct(text=text)).signature.to_0x_hex()
            verify = await client.post("/api/v1/auth/verify", json={"message": text, "signature": signature})
        except httpx.HTTPError as exc:
            self.outcomes[f"sign_in:transport:{type(exc).__name__}"] += 1
            return False
        self.outcomes[f"sign_in:{verify.status_code}"] += 1
        return verify.status_code == 200

    async def confirm(self, wallet: LocalAccount, tx_hash: str) -> None:
        """Sign in and confirm `tx_hash` until it is credited (or the tries run out); every answer counted."""
        async with self.client() as client:
            signed_in = False
            for _ in range(CONFIRM_TRIES):
                if not signed_in:
                    signed_in = await self.sign_in(client, wallet)
                if signed_in:
                    try:
                        answer = await client.post("/api/v1/payments/credits/confirm", json={"tx_hash": tx_hash})
                    except httpx.HTTPError as exc:
                        self.outcomes[f"confirm:transport:{type(exc).__name__}"] += 1
                    else:
                        self.outcomes[f"confirm:{answer.status_code}"] += 1
                        if answer.status_code == 200:
                            return
                        signed_in = answer.status_code != 401
                await asyncio.sleep(2)
            self.outcomes["confirm:gave_up"] += 1


def siwe_text(domain: str, origin: str, address: str, nonce: str) -> str:
    now = datetime.now(UTC)
    return SiweMessage(
        domain=domain,
        address=address,
        statement="Sign in to credit-gateway.",
        uri=f"{origin}/",
        version="1",
        chain_id=8453,
        nonce=nonce,
        issued_at=ISO8601Datetime.from_datetime(now),
        expiration_time=ISO8601Datetime.from_datetime(now + timedelta(minutes=5)),
    ).prepare_message()
