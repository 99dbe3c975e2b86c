"""A local anvil EVM node for tests (imitates Base: chain id 8453 by default).

Owns: finding the anvil binary shipped by the npm package ``@foundry-rs/anvil``,
starting it on a free 127.0.0.1 port, waiting until it answers, and stopping it
for sure (``stop()``, context manager, ``atexit``, and on Linux a parent-death
signal so even a SIGKILLed pytest leaves no anvil behind). Also the small
chain-control and transaction helpers tests need: the funded dev accounts,
``deploy``, ``mine``, ``snapshot``/``revert``, ``set_automine``, ``reorg`` and
the test-USDC transfer helpers.

Never talks to anything but the anvil it started.
"""

from __future__ import annotations

import atexit
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Sequence
from functools import cache
from typing import Any

from eth_account import Account
from eth_account.signers.local import LocalAccount
from web3 import Web3
from web3.contract import Contract
from web3.types import TxParams

from devtools.chain.solc_compile import REPO_ROOT, compile_contracts

DEV_MNEMONIC = "test test test test test test test test test test test junk"
BASE_CHAIN_ID = 8453
USDC_DECIMALS = 6
Sender = LocalAccount | str | bytes | None  # account, private key, or None = accounts[0]


class AnvilError(RuntimeError):
    pass


def find_anvil_binary() -> str:
    """$ANVIL_BIN, else the native binary from node_modules, else `anvil` on PATH."""
    if os.environ.get("ANVIL_BIN"):
        return os.environ["ANVIL_BIN"]
    arch = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}.get(
        platform.machine().lower(), platform.machine().lower()
    )
    osname = {"linux": "linux", "darwin": "darwin"}.get(sys.platform, sys.platform)
    native = REPO_ROOT / "node_modules" / "@foundry-rs" / f"anvil-{osname}-{arch}" / "bin" / "anvil"
    if native.exists():
        return str(native)
    on_path = shutil.which("anvil")
    if on_path:
        return on_path
    raise AnvilError(f"anvil binary not found (looked at {native} and PATH): run `npm ci` in {REPO_ROOT}")


@cache
def dev_account(index: int) -> LocalAccount:
    """Anvil's funded dev account ``index`` (10 000 ETH each by default)."""
    Account.enable_unaudited_hdwallet_features()
    return Account.from_mnemonic(DEV_MNEMONIC, account_path=f"m/44'/60'/0'/0/{index}")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _die_with_parent() -> None:  # runs in the child between fork and exec
    if sys.platform.startswith("linux"):
        import ctypes

        PR_SET_PDEATHSIG = 1
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def _as_account(sender: Sender, default: LocalAccount) -> LocalAccount:
    if sender is None:
        return default
    if isinstance(sender, (str, bytes)):
        return Account.from_key(sender)
    return sender


class Anvil:
    """One anvil process. Use as ``with Anvil() as node:`` or ``start()``/``stop()``."""

    def __init__(
        self,
        chain_id: int = BASE_CHAIN_ID,
        n_accounts: int = 10,
        extra_args: Sequence[str] = (),
        startup_timeout: float = 30.0,
    ) -> None:
        self.chain_id = chain_id
        self.n_accounts = n_accounts
        self.extra_args = list(extra_args)
        self.startup_timeout = startup_timeout
        self.port: int | None = None
        self.proc: subprocess.Popen | None = None
        self.w3: Web3 | None = None
        self.usdc: Contract | None = None
        self._automine = True
        self._log = None

    # -- lifecycle -------------------------------------------------------
    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def accounts(self) -> list[LocalAccount]:
        return [dev_account(i) for i in range(self.n_accounts)]

    def start(self) -> Anvil:
        if self.proc is not None:
            raise AnvilError("already started")
        binary = find_anvil_binary()
        last_err = ""
        for _ in range(3):  # a free port can be taken between probe and bind
            self.port = _free_port()
            self._log = tempfile.TemporaryFile()  # noqa: SIM115 - anvil writes to it until stop() closes it
            cmd = [
                binary,
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--chain-id",
                str(self.chain_id),
                "--accounts",
                str(self.n_accounts),
                "--silent",
                *self.extra_args,
            ]
            self.proc = subprocess.Popen(
                cmd, stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT, preexec_fn=_die_with_parent
            )
            atexit.register(self.stop)
            try:
                self._wait_ready()
                break
            except AnvilError as e:
                last_err = str(e)
                self.stop()
        else:
            raise AnvilError(f"anvil failed to start: {last_err}")
        self.w3 = Web3(Web3.HTTPProvider(self.url, request_kwargs={"timeout": 30}))
        return self

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.startup_timeout
        body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "eth_chainId", "params": []}).encode()
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self._log.seek(0)
                out = self._log.read().decode(errors="replace")[-2000:]
                raise AnvilError(f"anvil exited with {self.proc.returncode}: {out}")
            try:
                req = urllib.request.Request(self.url, body, {"Content-Type": "application/json"})
                with urllib.request.urlopen(req, timeout=1) as r:
                    if int(json.load(r)["result"], 16) == self.chain_id:
                        return
            except (OSError, ValueError, KeyError):
                pass
            time.sleep(0.02)
        raise AnvilError(f"anvil did not answer eth_chainId within {self.startup_timeout}s")

    def stop(self) -> None:
        """Terminate and reap anvil. Idempotent."""
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if self._log is not None:
            self._log.close()
            self._log = None
        atexit.unregister(self.stop)

    def __enter__(self) -> Anvil:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # -- raw chain control -------------------------------------------------
    def rpc(self, method: str, *params: Any) -> Any:
        """Call a JSON-RPC method; raise AnvilError on an RPC error."""
        resp = self.w3.provider.make_request(method, list(params))
        if "error" in resp:
            raise AnvilError(f"{method}: {resp['error']}")
        return resp["result"]

    def mine(self, n: int = 1) -> int:
        """Mine ``n`` blocks (anvil_mine); return the new head number."""
        self.rpc("anvil_mine", hex(n))
        return self.w3.eth.block_number

    def snapshot(self) -> str:
        """evm_snapshot; returns an id for ``revert``."""
        return self.rpc("evm_snapshot")

    def revert(self, snapshot_id: str) -> bool:
        """evm_revert. Anvil drops the snapshot (and later ones) on revert: take a new one to revert again."""
        return bool(self.rpc("evm_revert", snapshot_id))

    def set_automine(self, enabled: bool) -> None:
        self.rpc("evm_setAutomine", enabled)
        self._automine = enabled

    def reorg(self, depth: int, txs: Sequence[tuple[TxParams | str, int]] = ()) -> None:
        """anvil_reorg: replace the last ``depth`` blocks with as many new ones.

        ``txs`` is ``[(tx, block_offset), ...]``: a tx object (anvil signs it for its
        dev accounts) or a signed raw-tx hex, put into new block ``block_offset``
        (0-based, < depth). Original txs are dropped, not re-included.
        """
        self.rpc("anvil_reorg", depth, [list(p) for p in txs])

    def set_balance(self, address: str, wei: int) -> None:
        self.rpc("anvil_setBalance", address, hex(wei))

    # -- transactions ---------------------------------------------------
    def send(self, tx: TxParams, sender: Sender = None, wait: bool | None = None) -> bytes:
        """Fill, sign locally and send ``tx``; wait for the receipt if automining
        (or if ``wait`` is True). Returns the tx hash. A tx with ``gas`` set is not estimated."""
        acct = _as_account(sender, self.accounts[0])
        tx = dict(tx)
        tx.setdefault("from", acct.address)
        tx.setdefault("chainId", self.chain_id)
        tx.setdefault("nonce", self.w3.eth.get_transaction_count(acct.address, "pending"))
        if "gasPrice" not in tx:
            tx.setdefault("maxPriorityFeePerGas", 10**9)
            tx.setdefault("maxFeePerGas", 2 * self.w3.eth.get_block("latest")["baseFeePerGas"] + 10**9)
        if "gas" not in tx:
            tx["gas"] = self.w3.eth.estimate_gas(tx, "pending")
        tx_hash = self.w3.eth.send_raw_transaction(acct.sign_transaction(tx).raw_transaction)
        if self._automine if wait is None else wait:
            self.w3.eth.wait_for_transaction_receipt(tx_hash, timeout=30, poll_latency=0.01)
        return bytes(tx_hash)

    def transact(self, fn: Any, sender: Sender = None, gas: int | None = None, wait: bool | None = None) -> bytes:
        """Send a bound contract call, e.g. ``node.transact(usdc.functions.mint(a, 1))``."""
        # _encode_transaction_data is web3's own calldata encoder (stable since v5, no RPC).
        tx: TxParams = {"to": fn.address, "data": fn._encode_transaction_data()}
        if gas is not None:
            tx["gas"] = gas
        return self.send(tx, sender, wait)

    def deploy(self, name: str, *args: Any, sender: Sender = None) -> Contract:
        """Compile-if-needed and deploy contract ``name``; returns the bound contract (waits for mining)."""
        abi, bytecode = compile_contracts()[name]
        factory = self.w3.eth.contract(abi=abi, bytecode=bytecode)
        data = factory.constructor(*args).data_in_transaction
        tx_hash = self.send({"data": data}, sender, wait=False)
        if not self._automine:
            self.mine()
        receipt = self.w3.eth.wait_for_transaction_receipt(tx_hash, timeout=30, poll_latency=0.01)
        if receipt["status"] != 1:
            raise AnvilError(f"deploying {name} reverted")
        return self.w3.eth.contract(address=receipt["contractAddress"], abi=abi)

    # -- test USDC ------------------------------------------------------
    def deploy_usdc(self, sender: Sender = None) -> Contract:
        """Deploy TestUSDC and remember it as ``self.usdc`` (the transfer helpers' default token)."""
        self.usdc = self.deploy("TestUSDC", sender=sender)
        return self.usdc

    def _token(self, token: Contract | None) -> Contract:
        token = token or self.usdc
        if token is None:
            raise AnvilError("no USDC deployed: call deploy_usdc() or pass token=")
        return token

    def usdc_mint(self, to: str, amount: int, token: Contract | None = None, wait: bool | None = None) -> bytes:
        """Mint ``amount`` base units (6 decimals) to ``to``; returns the tx hash."""
        return self.transact(self._token(token).functions.mint(to, amount), wait=wait)

    def usdc_transfer(
        self, from_key: Sender, to: str, amount: int, token: Contract | None = None, wait: bool | None = None
    ) -> bytes:
        """ERC-20 transfer of ``amount`` base units from ``from_key``'s account; returns the tx hash."""
        return self.transact(self._token(token).functions.transfer(to, amount), sender=from_key, wait=wait)

    def usdc_transfer_reverting(
        self,
        from_key: Sender,
        to: str,
        amount: int,
        token: Contract | None = None,
        gas: int = 200_000,
        wait: bool | None = None,
    ) -> bytes:
        """Send ``transferThenRevert`` with a fixed gas limit: it is mined with receipt status 0
        (the Transfer it emitted is rolled back, so no log). Returns the tx hash."""
        fn = self._token(token).functions.transferThenRevert(to, amount)
        return self.transact(fn, sender=from_key, gas=gas, wait=wait)
