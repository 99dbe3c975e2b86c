"""Fixtures for top-up tests: a fresh DAO wallet and payer per test, explicit Settings, an RPC client
to the session's anvil, and ledger helpers. The chain is reverted after each test (`chain` fixture);
the database is shared, so every test uses wallets of its own."""

from __future__ import annotations

import secrets
from decimal import Decimal

import pytest
import sqlalchemy as sa
from eth_account import Account
from eth_account.signers.local import LocalAccount
from sqlalchemy.ext.asyncio import create_async_engine
from web3 import Web3

from devtools.chain.anvil import Anvil
from devtools.pg import migrated_database
from gateway.accounts.wallets import get_or_create_account
from gateway.config import Settings
from gateway.db.schema import credit_ledger
from gateway.payments.chain import ChainRPC

USDC = 1_000_000  # base units (= micros) per USDC
MIN_CONFIRMATIONS = 3


def make_settings(chain: Anvil, dao: str, **overrides) -> Settings:
    values = {
        "chain_id": chain.chain_id,
        "chain_rpc_url": chain.url,
        "usdc_address": chain.usdc.address,
        "dao_wallet_address": dao,
        "min_confirmations": MIN_CONFIRMATIONS,
        "min_topup_usd": Decimal("1"),
        "max_topup_usd": Decimal("100"),
        "watcher_batch_blocks": 5,
        "watcher_start_block": chain.w3.eth.block_number + 1,
    }
    return Settings(_env_file=None, **(values | overrides))


def new_funded_wallet(chain: Anvil, usdc_units: int = 500 * USDC) -> LocalAccount:
    wallet = Account.create()
    chain.set_balance(wallet.address, 10**18)
    chain.usdc_mint(wallet.address, usdc_units)
    return wallet


def random_address() -> str:
    """A fresh checksummed address nobody holds a key for (a DAO wallet, a stranger)."""
    return Web3.to_checksum_address("0x" + secrets.token_hex(20))


@pytest.fixture
def dao() -> str:
    return random_address()


@pytest.fixture
def settings(chain: Anvil, dao: str) -> Settings:
    return make_settings(chain, dao)


@pytest.fixture
def payer(chain: Anvil) -> LocalAccount:
    """A wallet with ETH and 500 test USDC, and no account yet."""
    return new_funded_wallet(chain)


@pytest.fixture
async def payer_account(db, payer):
    return await get_or_create_account(db, payer.address)


@pytest.fixture
async def rpc(chain: Anvil):
    async with ChainRPC(chain.url) as client:
        yield client


def pay(chain: Anvil, payer: LocalAccount, to: str, amount: int, **kw) -> str:
    """Transfer test USDC; returns the 0x tx hash."""
    return "0x" + chain.usdc_transfer(payer.key, to, amount, **kw).hex()


async def ledger_rows(db, account_id: int | None = None) -> list[sa.Row]:
    query = sa.select(credit_ledger).order_by(credit_ledger.c.id)
    if account_id is not None:
        query = query.where(credit_ledger.c.account_id == account_id)
    async with db.connect() as conn:
        return (await conn.execute(query)).all()


async def ledger_count(db) -> int:
    async with db.connect() as conn:
        return (await conn.execute(sa.select(sa.func.count()).select_from(credit_ledger))).scalar_one()


@pytest.fixture
def own_pg_url() -> str:
    """A migrated PostgreSQL database of this test's own (for whole-database checks and tampering)."""
    with migrated_database() as url:
        yield url


@pytest.fixture
async def own_db(own_pg_url: str):
    engine = create_async_engine(own_pg_url)
    yield engine
    await engine.dispose()
