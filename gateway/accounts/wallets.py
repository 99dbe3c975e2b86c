"""Users and billing accounts: one wallet address -> one user -> one billing account; an operator's freeze of
an account (`set_frozen`, `frozen_since`)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime

import sqlalchemy as sa
from eth_utils.address import is_checksum_address
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.db.schema import as_utc, billing_accounts, users

_WALLET = re.compile(r"^0x[0-9a-fA-F]{40}$")


class InvalidWallet(ValueError):
    pass


@dataclass(frozen=True)
class Account:
    id: int
    user_id: int
    wallet_address: str
    created: bool = False


def normalize_wallet(address: str) -> str:
    """Lower-case 0x-hex; raises InvalidWallet for anything that is not a 20-byte hex address, and for a mixed-case
    address whose EIP-55 checksum does not match (a typo there would otherwise name someone else's wallet). An
    all-lower or all-upper case address carries no checksum and is taken as it is (as SIWE and wallets do)."""
    address = (address or "").strip()
    if not _WALLET.match(address):
        raise InvalidWallet(f"not an Ethereum address: {address!r} (expected 0x followed by 40 hex digits)")
    digits = address[2:]
    if digits != digits.lower() and digits != digits.upper() and not is_checksum_address(address):
        raise InvalidWallet(
            f"{address} has a wrong EIP-55 checksum (its upper and lower case letters): check it for a typo, "
            "or give it all in lower case"
        )
    return address.lower()


async def find_account(db: AsyncEngine, wallet: str) -> Account | None:
    wallet = normalize_wallet(wallet)
    async with db.connect() as conn:
        row = (
            await conn.execute(
                sa.select(billing_accounts.c.id, users.c.id.label("user_id"))
                .join(users, users.c.id == billing_accounts.c.user_id)
                .where(users.c.wallet_address == wallet)
            )
        ).first()
    return Account(row.id, row.user_id, wallet) if row else None


async def wallet_of(db: AsyncEngine, account_id: int) -> str | None:
    """The wallet address of an account (None: no such account)."""
    async with db.connect() as conn:
        query = (
            sa.select(users.c.wallet_address)
            .join(billing_accounts, billing_accounts.c.user_id == users.c.id)
            .where(billing_accounts.c.id == account_id)
        )
        return (await conn.execute(query)).scalar_one_or_none()


async def get_or_create_account(db: AsyncEngine, wallet: str) -> Account:
    """The wallet's account, created with a zero balance on first use (safe under concurrent first logins)."""
    wallet = normalize_wallet(wallet)
    existing = await find_account(db, wallet)
    if existing is not None:
        return existing
    try:
        async with db.begin() as conn:
            user_id = (
                await conn.execute(sa.insert(users).values(wallet_address=wallet).returning(users.c.id))
            ).scalar_one()
            account_id = (
                await conn.execute(sa.insert(billing_accounts).values(user_id=user_id).returning(billing_accounts.c.id))
            ).scalar_one()
        return Account(account_id, user_id, wallet, created=True)
    except IntegrityError:
        again = await find_account(db, wallet)
        if again is None:
            raise
        return again


async def set_frozen(db: AsyncEngine, account_id: int, frozen: bool) -> datetime | None:
    """Freeze (or unfreeze) an account; idempotent: freezing a frozen account keeps its first time. Returns
    since when it is frozen (None: not frozen). Raises LookupError for an unknown account. Callers drop the
    account's cached key lookups (gateway.accounts.keys.forget_account_keys)."""
    acc = billing_accounts
    async with db.begin() as conn:
        if frozen:
            await conn.execute(
                sa.update(acc)
                .where(acc.c.id == account_id, acc.c.frozen_at.is_(None))
                .values(frozen_at=datetime.now(UTC))
            )
        else:
            await conn.execute(sa.update(acc).where(acc.c.id == account_id).values(frozen_at=None))
        row = (await conn.execute(sa.select(acc.c.frozen_at).where(acc.c.id == account_id))).first()
    if row is None:
        raise LookupError(f"no account {account_id}")
    return as_utc(row.frozen_at) if row.frozen_at else None


async def frozen_since(db: AsyncEngine, account_id: int) -> datetime | None:
    """When an operator froze the account, or None when it is not frozen."""
    async with db.connect() as conn:
        value = (
            await conn.execute(sa.select(billing_accounts.c.frozen_at).where(billing_accounts.c.id == account_id))
        ).scalar_one_or_none()
    return as_utc(value) if value else None
