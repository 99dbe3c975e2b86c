"""A payment's ledger reference (`chain:tx:log`) already naming another account's or another amount's credit is
refused, never answered with that first credit: by the top-up path (the sidecar's confirm and the watcher, through
`accept_transfer`) and by x402's own settlements (`credit_own_settlement`). Nothing is written: no payment row,
no credit. (It cannot happen while the payments table and the ledger agree; it would after a partial restore.)"""

from __future__ import annotations

import secrets

import pytest
import sqlalchemy as sa

from gateway import ledger
from gateway.accounts.wallets import get_or_create_account
from gateway.config import Settings
from gateway.db.payments_schema import payments
from gateway.payments.chain import Transfer
from gateway.payments.service import accept_transfer, credit_own_settlement, payment_reference
from tests.conftest import random_wallet

CHAIN_ID = 8453
USDC = 1_000_000


async def _credit_by_topup(db, t: Transfer, account_id: int) -> None:
    settings = Settings(_env_file=None, min_confirmations=1)
    await accept_transfer(db, settings, t, t.block_number, account_id)


async def _credit_by_x402(db, t: Transfer, account_id: int) -> None:
    await credit_own_settlement(db, CHAIN_ID, t, account_id)


@pytest.mark.parametrize("credit", [_credit_by_topup, _credit_by_x402])
async def test_a_payment_reference_already_used_elsewhere_is_refused(db, credit):
    first, payer = await get_or_create_account(db, random_wallet()), await get_or_create_account(db, random_wallet())
    t = Transfer(
        token="0x" + "ab" * 20,
        from_address=payer.wallet_address,
        to_address="0x" + "cd" * 20,
        value=5 * USDC,
        tx_hash="0x" + secrets.token_hex(32),
        log_index=0,
        block_number=100,
        block_hash="0x" + "ef" * 32,
    )
    reference = payment_reference(CHAIN_ID, t.tx_hash, t.log_index)
    await ledger.post_entry(db, first.id, 5 * USDC, "onchain_payment", reference)
    with pytest.raises(ledger.ReferenceReused):
        await credit(db, t, payer.id)
    assert (await ledger.get_balance(db, payer.id)).balance_micros == 0
    async with db.connect() as conn:
        assert (await conn.execute(sa.select(payments).where(payments.c.tx_hash == t.tx_hash))).first() is None
