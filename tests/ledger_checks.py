"""Assertions over the whole database that must hold after any sequence of money operations."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine


async def assert_books_balance(db: AsyncEngine) -> None:
    """balance == sum(ledger) and held == sum(pending holds) for every account; no balance below zero by holds."""
    async with db.connect() as conn:
        rows = (
            await conn.execute(
                sa.text(
                    """
                    SELECT a.id, a.balance_micros, a.held_micros,
                           COALESCE((SELECT SUM(amount_micros) FROM credit_ledger l
                                     WHERE l.account_id = a.id), 0) AS ledger,
                           COALESCE((SELECT SUM(amount_micros) FROM credit_holds h
                                     WHERE h.account_id = a.id AND h.status = 'pending'), 0) AS pending
                    FROM billing_accounts a
                    """
                )
            )
        ).all()
    bad = [r for r in rows if r.balance_micros != r.ledger or r.held_micros != r.pending]
    assert not bad, f"books do not balance: {bad}"
