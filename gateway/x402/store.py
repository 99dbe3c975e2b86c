"""The `x402_authorizations` rows: one per EIP-3009 authorization the gateway took, unique per
(chain, token, payer, nonce). Each status change is one conditional statement, so that concurrent requests
carrying the same payment (on any number of processes) agree on who settles it and who is refused.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from gateway.db.schema import insert_for
from gateway.db.x402_schema import AuthorizationStatus as Status
from gateway.db.x402_schema import x402_authorizations as rows
from gateway.x402.protocol import Payment


@dataclass(frozen=True)
class Key:
    chain_id: int
    token: str
    payer: str
    nonce: str

    def where(self) -> sa.ColumnElement[bool]:
        return sa.and_(
            rows.c.chain_id == self.chain_id,
            rows.c.token_address == self.token,
            rows.c.payer == self.payer,
            rows.c.nonce == self.nonce,
        )


def key_of(chain_id: int, token: str, payment: Payment) -> Key:
    return Key(chain_id, token.lower(), payment.authorization.from_address, payment.authorization.nonce)


def payload_sha256(payment: Payment) -> str:
    """What identifies one payment exactly: every signed field and the signature."""
    auth = payment.authorization
    return hashlib.sha256(
        orjson.dumps(
            [
                auth.from_address,
                auth.to,
                str(auth.value),
                str(auth.valid_after),
                str(auth.valid_before),
                auth.nonce,
                payment.signature.hex(),
            ]
        )
    ).hexdigest()


async def find(db: AsyncEngine, key: Key) -> sa.Row[Any] | None:
    async with db.connect() as conn:
        return (await conn.execute(sa.select(rows).where(key.where()))).first()


async def claim(db: AsyncEngine, key: Key, payment: Payment) -> int | None:
    """Take the nonce for this request: the new row's id, or None if the nonce was taken before."""
    auth = payment.authorization
    async with db.begin() as conn:
        claimed = (
            await conn.execute(
                insert_for(conn)(rows)
                .values(
                    chain_id=key.chain_id,
                    token_address=key.token,
                    payer=key.payer,
                    nonce=key.nonce,
                    value=auth.value,
                    valid_before=auth.valid_before,
                    payload_sha256=payload_sha256(payment),
                    status=Status.CLAIMED,
                )
                .on_conflict_do_nothing(index_elements=["chain_id", "token_address", "payer", "nonce"])
                .returning(rows.c.id)
            )
        ).scalar_one_or_none()
    return None if claimed is None else int(claimed)


async def record_submitted(conn: AsyncConnection, row_id: int, tx_hash: str) -> None:
    """In the gas wallet's transaction: the transfer about to be sent (rolled back if it is not)."""
    await conn.execute(
        sa.update(rows)
        .where(rows.c.id == row_id, rows.c.status == Status.CLAIMED)
        .values(status=Status.SUBMITTED, tx_hash=tx_hash, updated_at=sa.func.current_timestamp())
    )


async def release(db: AsyncEngine, row_id: int) -> None:
    """Give the nonce back when nothing was sent for it (the payer may retry the same payment)."""
    async with db.begin() as conn:
        await conn.execute(sa.delete(rows).where(rows.c.id == row_id, rows.c.status == Status.CLAIMED))


async def mark_failed(db: AsyncEngine, row_id: int, reason: str) -> None:
    async with db.begin() as conn:
        await conn.execute(
            sa.update(rows)
            .where(rows.c.id == row_id, rows.c.status == Status.SUBMITTED)
            .values(status=Status.FAILED, reason=reason[:200], updated_at=sa.func.current_timestamp())
        )


async def mark_settled(db: AsyncEngine, row_id: int, payment_reference: str) -> bool:
    """Close the authorization: True for the one request that does so (it is the one served)."""
    async with db.begin() as conn:
        return (
            await conn.execute(
                sa.update(rows)
                .where(rows.c.id == row_id, rows.c.status == Status.SUBMITTED)
                .values(
                    status=Status.SETTLED, payment_reference=payment_reference, updated_at=sa.func.current_timestamp()
                )
                .returning(rows.c.id)
            )
        ).first() is not None
