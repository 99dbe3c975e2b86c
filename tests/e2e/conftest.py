"""End-to-end fixtures: a fake OpenAI upstream and the real LiteLLM proxy with our hooks, on PostgreSQL + Redis."""

from __future__ import annotations

from pathlib import Path

import openai
import pytest

from devtools.fake_upstream import FakeUpstream
from devtools.proxy_process import ProxyProcess, free_port, write_test_config
from gateway import ledger
from gateway.accounts.keys import create_key
from gateway.accounts.wallets import get_or_create_account
from gateway.config import Settings
from tests.conftest import random_wallet

REDIS_URL = "redis://127.0.0.1:6379/0"


@pytest.fixture(scope="session")
def upstream():
    with FakeUpstream() as fake:
        yield fake


@pytest.fixture(autouse=True)
def _reset_upstream(request):
    if "upstream" in request.fixturenames:
        request.getfixturevalue("upstream").reset()


@pytest.fixture(scope="session")
def proxy(pg_url: str, upstream: FakeUpstream, tmp_path_factory) -> ProxyProcess:
    """The real proxy, 2 workers (revocation and concurrency must hold across processes), PostgreSQL, Redis."""
    proc = start_proxy(pg_url, upstream, tmp_path_factory.mktemp("gateway-home"))
    yield proc
    proc.stop()


def proxy_settings(pg_url: str, home: Path, workers: int = 2) -> Settings:
    """A test proxy's settings: the run's PostgreSQL and Redis, a free port, `home` as GATEWAY_HOME."""
    return Settings(
        gateway_home=home,
        database_url=pg_url,
        redis_url=REDIS_URL,
        proxy_port=free_port(),
        proxy_workers=workers,
        litellm_master_key="sk-admin-e2e-test",
    )


def start_proxy(pg_url: str, upstream: FakeUpstream, home: Path, workers: int = 2) -> ProxyProcess:
    """A real proxy (2 workers unless told) on the run's PostgreSQL and Redis (environment: the test process's)."""
    settings = proxy_settings(pg_url, home, workers)
    return ProxyProcess(settings, write_test_config(home, upstream.base_url), home / "proxy.log").start()


class Customer:
    """A funded account with a key, and an OpenAI client using it."""

    def __init__(self, proxy: ProxyProcess, account, key):
        self.account = account
        self.key = key
        self.client = openai.OpenAI(base_url=proxy.base_url, api_key=key.raw_key, max_retries=0, timeout=60)
        self.async_client = openai.AsyncOpenAI(base_url=proxy.base_url, api_key=key.raw_key, max_retries=0, timeout=60)


@pytest.fixture
def make_customer(db, proxy):
    async def make(credits_micros: int = 1_000_000) -> Customer:
        account = await get_or_create_account(db, random_wallet())
        if credits_micros:
            await ledger.post_entry(db, account.id, credits_micros, "admin_grant", f"e2e-{account.id}")
        return Customer(proxy, account, await create_key(db, account.id, "e2e"))

    return make
