"""The `db` fixture of the ledger tests that run on PostgreSQL (one-statement path) and SQLite (portable): a test
module imports it to run every test on both."""

from __future__ import annotations

import pytest

from gateway.db.engine import get_engine
from gateway.db.migrate import upgrade


@pytest.fixture(scope="module", params=["postgresql", "sqlite"], name="db")
def both_backends_db(request, tmp_path_factory):
    """The same tests on both implementations of hold/settle/release."""
    if request.param == "postgresql":
        return get_engine(request.getfixturevalue("pg_url"))
    url = f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('ledger') / 'gateway.db'}"
    upgrade(url)
    return get_engine(url)
