"""pytest fixtures for tests that need a local EVM (USDC top-ups, SIWE smart wallets).

Owns: one anvil per test session (per xdist worker), the TestUSDC deployed on it,
a SmartWallet factory, and ``chain`` for per-test isolation via snapshot/revert.
Load with ``pytest_plugins = ["tests.chain.fixtures"]`` in tests/conftest.py.

Addresses are deterministic: TestUSDC is the first deployment from dev account 0,
so it lives at 0x5FbDB2315678afecb367f032d93F642f64180aa3 on chain id 8453.
"""

from __future__ import annotations

from typing import Callable, Iterator

import pytest
from eth_account.signers.local import LocalAccount
from web3.contract import Contract

from .anvil import Anvil, Sender


@pytest.fixture(scope="session")
def anvil() -> Iterator[Anvil]:
    """A running anvil (chain id 8453) with TestUSDC deployed as ``anvil.usdc``."""
    node = Anvil()
    node.start()
    try:
        node.deploy_usdc()
        yield node
    finally:
        node.stop()


@pytest.fixture(scope="session")
def usdc(anvil: Anvil) -> Contract:
    """The session's TestUSDC contract (6 decimals, open ``mint``)."""
    return anvil.usdc


@pytest.fixture(scope="session")
def smart_wallet_factory(anvil: Anvil) -> Callable[..., Contract]:
    """``make(owner, sender=None) -> Contract``: deploy an ERC-1271 SmartWallet owned by
    ``owner`` (an address or a LocalAccount)."""

    def make(owner: str | LocalAccount, sender: Sender = None) -> Contract:
        address = owner if isinstance(owner, str) else owner.address
        return anvil.deploy("SmartWallet", address, sender=sender)

    return make


@pytest.fixture
def chain(anvil: Anvil) -> Iterator[Anvil]:
    """The session anvil, rolled back after the test (evm_snapshot/evm_revert) with
    automine switched back on, so the test's blocks, txs and balances do not leak."""
    snap = anvil.snapshot()
    try:
        yield anvil
    finally:
        anvil.set_automine(True)
        if not anvil.revert(snap):
            raise RuntimeError("evm_revert failed: a test reverted past its own snapshot")
