"""Signing in: a verified SIWE message opens a session; a wallet's first sign-in also creates its user,
billing account and "default" key, and credits the top-ups it sent before it had an account.

The use case that spans accounts, auth and payments lives here, so that none of those imports another's
service layer for it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.accounts.keys import NewKey, create_key
from gateway.accounts.wallets import get_or_create_account
from gateway.auth.nonces import NonceStore
from gateway.auth.sessions import Session, create_session
from gateway.auth.siwe import SiwePolicy, verify_message
from gateway.payments.service import claim_unclaimed

DEFAULT_KEY_LABEL = "default"


@dataclass(frozen=True)
class SignedIn:
    session_id: str  # the raw id, for the cookie only
    session: Session
    default_key: NewKey | None  # created on the wallet's first sign-in; its raw key is shown once


async def sign_in(
    db: AsyncEngine, nonces: NonceStore, policy: SiwePolicy, text: str, signature: str, session_ttl: timedelta
) -> SignedIn:
    """Verify a signed message, then open a session for its wallet (creating the account on first login and
    crediting any confirmed top-ups the wallet sent before it had one)."""
    wallet = await verify_message(text, signature, policy, nonces)
    account = await get_or_create_account(db, wallet)
    default_key = await create_key(db, account.id, DEFAULT_KEY_LABEL) if account.created else None
    await claim_unclaimed(db, account.id, wallet)  # top-ups this wallet sent before it had an account
    session_id, session = await create_session(db, account.id, wallet, session_ttl)
    return SignedIn(session_id, session, default_key)
