"""The chaos run's chain side: anvil with the test USDC (devtools/chain), the chain watcher (`gateway watch`)
reading it through a forwarder the run can cut, payers (some of the run's customers) sending top-ups to the
DAO wallet, a block every half second, and reorgs below the confirmation depth.

The checker's view of the chain: every USDC transfer to the DAO wallet in the canonical chain, confirmed
(`MIN_CONFIRMATIONS` deep), must be credited exactly once; a transfer a reorg removed must not be.
"""

from __future__ import annotations

import asyncio
import random
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import sqlalchemy as sa
from eth_account import Account
from eth_account.signers.local import LocalAccount
from sqlalchemy.ext.asyncio import AsyncEngine

from devtools.chain.anvil import Anvil
from devtools.forwarder import TcpForwarder
from gateway.db.payments_schema import chain_cursor, payments

Confirm = Callable[[LocalAccount, str], Awaitable[None]]
MIN_CONFIRMATIONS = 4
USDC = 1_000_000  # base units (= micros) per USDC
BLOCK_SECONDS = 0.5


@dataclass
class Chain:
    home: Path
    anvil: Anvil = field(default_factory=Anvil)
    rpc: TcpForwarder | None = None
    dao: str = ""
    start_block: int = 0
    watcher: subprocess.Popen | None = None
    payers: list[LocalAccount] = field(default_factory=list)  # customers' wallets, funded
    sent: list[str] = field(default_factory=list)  # tx hashes of the top-ups sent
    reorged: int = 0  # blocks replaced by reorgs
    removed: list[str] = field(default_factory=list)  # top-ups a reorg took out of the chain
    lock: threading.Lock = field(default_factory=threading.Lock)  # one chain operation at a time

    def start(self) -> Chain:
        self.anvil.start()
        self.anvil.deploy_usdc()
        self.rpc = TcpForwarder("127.0.0.1", self.anvil.port).start()
        self.dao = Account.create().address
        self.start_block = self.anvil.w3.eth.block_number + 1
        return self

    def env(self) -> dict[str, str]:
        return {
            "CHAIN_ID": str(self.anvil.chain_id),
            "CHAIN_RPC_URL": f"http://{self.rpc.netloc}",
            "USDC_ADDRESS": self.anvil.usdc.address,
            "DAO_WALLET_ADDRESS": self.dao,
            "MIN_CONFIRMATIONS": str(MIN_CONFIRMATIONS),
            "MIN_TOPUP_USD": "1",
            "MAX_TOPUP_USD": "100",
            "WATCHER_POLL_SECONDS": "1",
            "WATCHER_BATCH_BLOCKS": "50",
            "WATCHER_START_BLOCK": str(self.start_block),
        }

    def start_watcher(self, env: dict[str, str]) -> None:
        log = (self.home / f"watcher-{time.time_ns()}.log").open("wb")
        self.watcher = subprocess.Popen(
            [sys.executable, "-m", "gateway", "watch"], env={**env, **self.env()}, stdout=log, stderr=subprocess.STDOUT
        )

    def fund(self, wallet: LocalAccount) -> None:
        with self.lock:
            self.anvil.set_balance(wallet.address, 10**18)
            self.anvil.usdc_mint(wallet.address, 1_000 * USDC)

    def pay(self, wallet: LocalAccount, usdc: int) -> None:
        with self.lock:
            tx = self.anvil.usdc_transfer(wallet.key, self.dao, usdc * USDC)
            self.sent.append("0x" + tx.hex())

    def mine(self) -> None:
        with self.lock:
            self.anvil.mine(1)

    def reorg(self, depth: int) -> str:
        """A top-up mined, buried under `depth - 1` more blocks, then the last `depth` blocks replaced: the
        top-up is gone (below the confirmation depth, so it must never be credited)."""
        with self.lock:
            tx = None
            if self.payers:
                payer = self.payers[len(self.sent) % len(self.payers)]
                tx = "0x" + self.anvil.usdc_transfer(payer.key, self.dao, USDC).hex()
                self.sent.append(tx)
                if depth > 1:
                    self.anvil.mine(depth - 1)
            head = self.anvil.w3.eth.block_number
            self.anvil.reorg(depth)
            self.reorged += depth
            if tx is not None:
                self.removed.append(tx)
        return f"last {depth} blocks replaced at head {head}" + (f", top-up {tx[:12]}... with them" if tx else "")

    def stop(self) -> None:
        if self.watcher and self.watcher.poll() is None:
            self.watcher.kill()
            self.watcher.wait()
        if self.rpc:
            self.rpc.stop()
        self.anvil.stop()


async def pay_and_mine(
    chain: Chain, payers: list[LocalAccount], rng: random.Random, until: float, confirm: Confirm
) -> None:
    """Top-ups from random payers (1 to 5 USDC) every few seconds, half of them also confirmed through the
    page's API (`confirm`, in the background), and a block every BLOCK_SECONDS."""
    next_payment = time.monotonic()
    confirming: set[asyncio.Task[None]] = set()
    while time.monotonic() < until:
        if payers and time.monotonic() >= next_payment:
            payer = rng.choice(payers)
            await asyncio.to_thread(chain.pay, payer, rng.randint(1, 5))
            if rng.random() < 0.5:
                task = asyncio.create_task(confirm(payer, chain.sent[-1]))
                confirming.add(task)
                task.add_done_callback(confirming.discard)
            next_payment = time.monotonic() + rng.uniform(1, 4)
        await asyncio.to_thread(chain.mine)
        await asyncio.sleep(BLOCK_SECONDS)


async def settle(chain: Chain, db: AsyncEngine, timeout: float) -> bool:
    """Mine past the confirmation depth and wait (bounded) for the watcher to reach the confirmed head."""
    await asyncio.to_thread(lambda: [chain.mine() for _ in range(MIN_CONFIRMATIONS + 1)])
    target = chain.anvil.w3.eth.block_number - MIN_CONFIRMATIONS
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        async with db.connect() as conn:
            cursors = (await conn.execute(sa.select(chain_cursor.c.last_block))).scalars().all()
        if cursors and max(cursors) >= target:
            return True
        await asyncio.sleep(1)
    return False


def confirmed_transfers(chain: Chain) -> dict[str, int]:
    """tx hash -> amount of every canonical USDC transfer to the DAO wallet at least MIN_CONFIRMATIONS deep."""
    w3 = chain.anvil.w3
    head = w3.eth.block_number
    token = chain.anvil.usdc
    logs = token.events.Transfer().get_logs(
        from_block=chain.start_block, to_block=head - MIN_CONFIRMATIONS + 1, argument_filters={"to": chain.dao}
    )
    return {"0x" + log["transactionHash"].hex().removeprefix("0x"): int(log["args"]["value"]) for log in logs}


async def credited(db: AsyncEngine, dao: str) -> dict[str, int]:
    """tx hash -> micros credited, for the DAO wallet's credited payments (one row per transfer log)."""
    async with db.connect() as conn:
        rows = (
            await conn.execute(
                sa.select(payments.c.tx_hash, payments.c.micros_credited).where(
                    payments.c.to_address == dao.lower(), payments.c.status == "credited"
                )
            )
        ).all()
    return {r.tx_hash: int(r.micros_credited or 0) for r in rows}
