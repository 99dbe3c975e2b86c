"""x402 fixtures: an anvil of these tests' own (TestUSDC with EIP-3009, two SmartWallet factories), its RPC
behind a forwarder the tests can cut, a gas wallet, a DAO wallet, a PostgreSQL database of their own (so
that `reconcile` judges x402 traffic alone) and the real proxy (2 workers) with X402_ENABLED. All of package
scope: the proxy and its database connections are gone once these tests are done."""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator

import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from web3 import Web3
from web3.contract import Contract

from devtools.chain.anvil import Anvil
from devtools.forwarder import TcpForwarder
from devtools.pg import migrated_database
from devtools.proxy_process import ProxyProcess, free_port, write_test_config
from gateway.config import Settings
from tests.e2e.conftest import REDIS_URL

MAX_TIMEOUT = 12  # seconds a settlement waits for its receipt (test_replay waits it out once)


@pytest.fixture(scope="package")
def node() -> Iterator[Anvil]:
    with Anvil() as chain:
        chain.deploy_usdc()
        yield chain


@pytest.fixture(scope="package")
def factory(node: Anvil) -> Contract:
    """The SmartWallet factory the gateway trusts (X402_ERC6492_FACTORIES)."""
    return node.deploy("SmartWalletFactory")


@pytest.fixture(scope="package")
def untrusted_factory(node: Anvil) -> Contract:
    return node.deploy("SmartWalletFactory")


@pytest.fixture(scope="package")
def rpc_link(node: Anvil) -> Iterator[TcpForwarder]:
    with TcpForwarder("127.0.0.1", node.port) as link:
        yield link


@pytest.fixture(scope="package")
def gas_wallet(node: Anvil) -> LocalAccount:
    wallet = Account.create()
    node.set_balance(wallet.address, 10 * 10**18)
    return wallet


@pytest.fixture(scope="package")
def dao() -> str:
    return Web3.to_checksum_address("0x" + secrets.token_hex(20))


@pytest.fixture(scope="package")
def x402_db_url() -> Iterator[str]:
    with migrated_database("gw_x402") as url:
        yield url


@pytest.fixture(scope="package")
async def x402_db(x402_db_url: str) -> AsyncEngine:
    engine = create_async_engine(x402_db_url)
    yield engine
    await engine.dispose()


@pytest.fixture(scope="package")
def chain_settings(node: Anvil, dao: str, factory: Contract) -> Settings:
    """The gateway's chain settings as the proxy reads them (also for reconcile)."""
    return Settings(
        _env_file=None,
        chain_id=node.chain_id,
        chain_rpc_url=node.url,
        usdc_address=node.usdc.address,
        dao_wallet_address=dao,
        x402_erc6492_factories=[factory.address],
    )


@pytest.fixture(scope="package")
def x402_proxy(
    x402_db_url, upstream, tmp_path_factory, node, rpc_link, gas_wallet, dao, factory
) -> Iterator[ProxyProcess]:
    home = tmp_path_factory.mktemp("x402-home")
    settings = Settings(
        _env_file=None,
        gateway_home=home,
        database_url=x402_db_url,
        redis_url=REDIS_URL,
        proxy_port=free_port(),
        proxy_workers=2,
        litellm_master_key="sk-admin-x402-test",
    )
    env = {
        "X402_ENABLED": "true",
        "CHAIN_ID": str(node.chain_id),
        "CHAIN_RPC_URL": f"http://{rpc_link.netloc}",
        "USDC_ADDRESS": node.usdc.address,
        "DAO_WALLET_ADDRESS": dao,
        "X402_GAS_WALLET_KEY": "0x" + bytes(gas_wallet.key).hex(),
        "X402_ERC6492_FACTORIES": json.dumps([factory.address]),
        "X402_MAX_TIMEOUT_SECONDS": str(MAX_TIMEOUT),
    }
    proc = ProxyProcess(settings, write_test_config(home, upstream.base_url), home / "proxy.log", env).start()
    yield proc
    proc.stop()


@pytest.fixture
def chat_url(x402_proxy: ProxyProcess) -> str:
    return f"{x402_proxy.base_url}/chat/completions"
