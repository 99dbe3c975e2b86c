"""`gateway reconcile` reports an x402 authorization left open (a process died between sending a transfer
and crediting it), and only once it is well past the longest a settlement waits."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.ext.asyncio import create_async_engine

from devtools.pg import migrated_database
from gateway.config import Settings
from gateway.db.x402_schema import AuthorizationStatus, x402_authorizations
from gateway.jobs.reconcile import X402_GRACE_SECONDS, reconcile


@pytest.fixture
def fresh_url():
    with migrated_database("gw_x402_reconcile") as url:
        yield url


@pytest.fixture
async def fresh_db(fresh_url):
    engine = create_async_engine(fresh_url)
    yield engine
    await engine.dispose()


async def test_an_open_x402_authorization_is_a_mismatch_once_it_is_stale(fresh_db):
    settings = Settings(_env_file=None)
    async with fresh_db.begin() as conn:
        await conn.execute(
            x402_authorizations.insert().values(
                chain_id=8453,
                token_address="0x" + "ef" * 20,
                payer="0x" + "ab" * 20,
                nonce="0x" + "01" * 32,
                value=1234,
                valid_before=2_000_000_000,
                payload_sha256="0" * 64,
                status=AuthorizationStatus.SUBMITTED,
                tx_hash="0x" + "99" * 32,
            )
        )
    assert (await reconcile(fresh_db, settings)).ok  # just sent: its settlement may still be running
    later = datetime.now(UTC) + timedelta(seconds=settings.x402_max_timeout_seconds + X402_GRACE_SECONDS + 5)
    report = await reconcile(fresh_db, settings, now=later)
    [mismatch] = report.mismatches
    assert mismatch.check == "x402" and "0x" + "99" * 32 in mismatch.detail and "still submitted" in mismatch.detail
