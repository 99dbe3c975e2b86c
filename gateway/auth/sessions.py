"""Server-side sessions: a session id is 256 random bits in the browser's cookie; only its SHA-256 is stored,
with an expiry and a revocation time."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.auth.nonces import utc_now
from gateway.db.auth_schema import sessions
from gateway.db.schema import as_utc


@dataclass(frozen=True)
class Session:
    account_id: int
    wallet_address: str
    expires_at: datetime


def _hash_session_id(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


async def create_session(db: AsyncEngine, account_id: int, wallet: str, ttl: timedelta) -> tuple[str, Session]:
    session_id = secrets.token_urlsafe(32)
    now = utc_now()
    session = Session(account_id, wallet, now + ttl)
    async with db.begin() as conn:
        await conn.execute(
            sa.insert(sessions).values(
                id_hash=_hash_session_id(session_id),
                account_id=account_id,
                wallet_address=wallet,
                created_at=now,
                expires_at=session.expires_at,
            )
        )
    return session_id, session


async def get_session(db: AsyncEngine, session_id: str) -> Session | None:
    """The live (unexpired, unrevoked) session with this id, or None."""
    async with db.connect() as conn:
        row = (
            await conn.execute(
                sa.select(sessions.c.account_id, sessions.c.wallet_address, sessions.c.expires_at).where(
                    sessions.c.id_hash == _hash_session_id(session_id),
                    sessions.c.revoked_at.is_(None),
                    sessions.c.expires_at > utc_now(),
                )
            )
        ).first()
    return Session(row.account_id, row.wallet_address, as_utc(row.expires_at)) if row else None


async def revoke_session(db: AsyncEngine, session_id: str) -> bool:
    async with db.begin() as conn:
        revoked = await conn.execute(
            sa.update(sessions)
            .where(sessions.c.id_hash == _hash_session_id(session_id), sessions.c.revoked_at.is_(None))
            .values(revoked_at=utc_now())
        )
    return revoked.rowcount == 1
