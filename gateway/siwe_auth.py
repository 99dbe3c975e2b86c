"""Sign-In with Ethereum (EIP-4361): nonces, message verification, sign-in and server-side sessions.

No web framework here; the sidecar adapts these functions to HTTP.

- Nonces are random, single-use and live 10 minutes: in Redis (`SET NX EX` to issue, `GETDEL` to consume)
  when it is configured, else in the `siwe_nonces` table (`DELETE ... RETURNING` to consume). With Redis
  configured but unavailable, nonces can be neither issued nor checked (`NonceStoreUnavailable`, HTTP 503):
  there is no weaker stand-in.
- `verify_message` checks everything itself or hands it to signinwithethereum explicitly (its `verify`
  checks only what it is given): domain, URI origin, chain id, a nonce we issued, issued-at (60 s skew),
  expiration / not-before, and the signature: ERC-191 for EOAs, ERC-1271 / EIP-6492 through the chain RPC
  for smart wallets. The nonce is consumed only after the signature is good, so a rejected message
  changes nothing; consuming is atomic, so a nonce can sign in once.
- `sign_in` creates user, billing account and a "default" key on a wallet's first login, then a session.
- A session id is 256 random bits in the browser's cookie; only its SHA-256 is stored, with an expiry and
  a revocation time.
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Protocol, TypeVar
from urllib.parse import urlsplit

import sqlalchemy as sa
import siwe
from pydantic import ValidationError
from redis.asyncio import Redis
from requests import RequestException
from sqlalchemy.ext.asyncio import AsyncEngine
from web3 import HTTPProvider

from gateway.accounts import get_or_create_account, normalize_wallet
from gateway.config import Settings
from gateway.db.auth_schema import sessions, siwe_nonces
from gateway.db.schema import as_utc
from gateway.keys import NewKey, create_key
from gateway.payments import claim_unclaimed
from gateway.redis_link import RedisLink, RedisUnavailable

NONCE_TTL = timedelta(minutes=10)
CLOCK_SKEW = timedelta(seconds=60)
DEFAULT_KEY_LABEL = "default"
_HEADER = " wants you to sign in with your Ethereum account:"

T = TypeVar("T")


class LoginRejected(Exception):
    """The message or signature does not prove a fresh sign-in to this site (HTTP 401)."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


class ChainUnavailable(Exception):
    """A smart-wallet signature could not be checked because the chain RPC failed (HTTP 503)."""


class NonceStoreUnavailable(Exception):
    """Nonces cannot be issued or checked because their store (Redis) is unavailable (HTTP 503)."""


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


# -- nonces -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class IssuedNonce:
    nonce: str
    expires_at: datetime


class NonceStore(Protocol):
    async def issue(self, ttl: timedelta = NONCE_TTL) -> IssuedNonce: ...

    async def is_live(self, nonce: str) -> bool: ...

    async def consume(self, nonce: str) -> bool:
        """Atomically delete a live nonce; True for exactly one caller."""
        ...


def _new_nonce() -> str:
    return secrets.token_hex(16)  # 32 alphanumeric characters, 128 random bits


class RedisNonceStore:
    def __init__(self, redis: RedisLink, prefix: str):
        self.redis = redis
        self.prefix = f"{prefix}:siwe-nonce:"

    async def _run(self, op: Callable[[Redis], Awaitable[T]]) -> T:
        try:
            return await self.redis.run(op)
        except RedisUnavailable:
            raise NonceStoreUnavailable("the sign-in nonce store (Redis) is unavailable") from None

    async def issue(self, ttl: timedelta = NONCE_TTL) -> IssuedNonce:
        px = int(ttl.total_seconds() * 1000)
        nonce = _new_nonce()
        while not await self._run(lambda r: r.set(self.prefix + nonce, "1", nx=True, px=px)):
            nonce = _new_nonce()
        return IssuedNonce(nonce, utc_now() + ttl)

    async def is_live(self, nonce: str) -> bool:
        return bool(await self._run(lambda r: r.exists(self.prefix + nonce)))

    async def consume(self, nonce: str) -> bool:
        return await self._run(lambda r: r.getdel(self.prefix + nonce)) is not None


class DbNonceStore:
    def __init__(self, db: AsyncEngine):
        self.db = db

    async def issue(self, ttl: timedelta = NONCE_TTL) -> IssuedNonce:
        now = utc_now()
        issued = IssuedNonce(_new_nonce(), now + ttl)
        async with self.db.begin() as conn:
            await conn.execute(sa.delete(siwe_nonces).where(siwe_nonces.c.expires_at <= now))
            await conn.execute(sa.insert(siwe_nonces).values(nonce=issued.nonce, expires_at=issued.expires_at))
        return issued

    def _live(self, nonce: str) -> list[sa.ColumnElement[bool]]:
        return [siwe_nonces.c.nonce == nonce, siwe_nonces.c.expires_at > utc_now()]

    async def is_live(self, nonce: str) -> bool:
        async with self.db.connect() as conn:
            return (await conn.execute(sa.select(siwe_nonces.c.nonce).where(*self._live(nonce)))).first() is not None

    async def consume(self, nonce: str) -> bool:
        async with self.db.begin() as conn:
            deleted = sa.delete(siwe_nonces).where(*self._live(nonce)).returning(siwe_nonces.c.nonce)
            return (await conn.execute(deleted)).first() is not None


# -- message verification ---------------------------------------------------------------------------


@dataclass(frozen=True)
class SiwePolicy:
    """What a sign-in message must say to be accepted here, and where smart-wallet signatures are checked."""

    domain: str
    chain_id: int
    provider: HTTPProvider | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> SiwePolicy:
        provider = None
        if settings.chain_rpc_url:
            provider = HTTPProvider(
                settings.chain_rpc_url,
                request_kwargs={"timeout": settings.chain_rpc_timeout_seconds},
                exception_retry_configuration=None,
            )
        return cls(settings.siwe_domain, settings.chain_id, provider)

    @property
    def origins(self) -> frozenset[str]:
        """This site's own origins: its domain over http or https."""
        return frozenset({f"http://{self.domain}", f"https://{self.domain}"})


def _check_header(text: str, policy: SiwePolicy) -> None:
    """Refuse other sites' (and garbage) messages before the comparatively slow EIP-4361 parse."""
    allowed = {f"{scheme}{policy.domain}{_HEADER}" for scheme in ("", "http://", "https://")}
    if text.partition("\n")[0] not in allowed:
        raise LoginRejected("domain_mismatch", f"the message must start with '{policy.domain}{_HEADER}'")


def _parse(text: str) -> siwe.SiweMessage:
    try:
        return siwe.SiweMessage.from_message(text, abnf=False)
    except ValueError as exc:
        raise LoginRejected("malformed_message", f"not an EIP-4361 sign-in message: {_describe(exc)}") from None


def _describe(exc: ValueError) -> str:
    if isinstance(exc, ValidationError):
        error = exc.errors()[0]
        return f"{'.'.join(map(str, error['loc']))}: {error['msg']}"[:200]
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]


def _check_claims(message: siwe.SiweMessage, policy: SiwePolicy, now: datetime) -> None:
    uri = urlsplit(str(message.uri))
    if f"{uri.scheme}://{uri.netloc}".lower() not in policy.origins:
        raise LoginRejected("uri_mismatch", f"the message URI must be on https://{policy.domain} (or http://)")
    if message.chain_id != policy.chain_id:
        raise LoginRejected(
            "chain_mismatch", f"the message is for chain {message.chain_id}; sign in on chain {policy.chain_id}"
        )
    if message.issued_at._datetime > now + CLOCK_SKEW:  # the library's own parse of the timestamp
        raise LoginRejected("issued_in_future", "the message's Issued At is in the future (check your clock)")


_REJECTIONS: dict[type[siwe.VerificationError], tuple[str, str]] = {
    siwe.ExpiredMessage: ("message_expired", "the message's Expiration Time has passed; sign a new one"),
    siwe.NotYetValidMessage: ("message_not_yet_valid", "the message's Not Before time has not come yet"),
    siwe.DomainMismatch: ("domain_mismatch", "the message is for another domain"),
    siwe.NonceMismatch: ("nonce_invalid", "the message's nonce does not match"),
}
_BAD_SIGNATURE = ("invalid_signature", "the signature does not match the message and address")


def _check_signature(message: siwe.SiweMessage, signature: str, policy: SiwePolicy, nonce: str, now: datetime) -> None:
    """signinwithethereum's verify, given every expectation explicitly (blocking: it may call the RPC).

    `nonce` is the one our store just confirmed live; the URI is checked by origin in `_check_claims`
    because the library only compares it verbatim.
    """
    try:
        message.verify(
            signature,
            domain=policy.domain,
            nonce=nonce,
            chain_id=policy.chain_id,
            timestamp=now,
            provider=policy.provider,
        )
    except siwe.ChainIdMismatch as exc:  # our own check passed, so it is the RPC that serves another chain
        raise ChainUnavailable(f"the chain RPC is misconfigured: {exc}") from None
    except siwe.VerificationError as exc:
        code, text = _REJECTIONS.get(type(exc), _BAD_SIGNATURE)
        raise LoginRejected(code, text) from None
    except RequestException as exc:
        raise ChainUnavailable(f"the chain RPC did not answer: {type(exc).__name__}") from None


def _nonce_invalid() -> LoginRejected:
    return LoginRejected(
        "nonce_invalid", "the nonce was not issued here, has expired or was already used; get a new one"
    )


async def verify_message(text: str, signature: str, policy: SiwePolicy, nonces: NonceStore) -> str:
    """The signing wallet (lower-case 0x hex) of a valid, fresh sign-in message; consumes its nonce."""
    now = utc_now()
    _check_header(text, policy)
    message = await asyncio.to_thread(_parse, text)
    _check_claims(message, policy, now)
    if not await nonces.is_live(message.nonce):
        raise _nonce_invalid()
    await asyncio.to_thread(_check_signature, message, signature, policy, message.nonce, now)
    if not await nonces.consume(message.nonce):  # a concurrent sign-in with the same message won
        raise _nonce_invalid()
    return normalize_wallet(message.address)


# -- sessions ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Session:
    account_id: int
    wallet_address: str
    expires_at: datetime


@dataclass(frozen=True)
class SignedIn:
    session_id: str  # the raw id, for the cookie only
    session: Session
    default_key: NewKey | None  # created on the wallet's first sign-in; its raw key is shown once


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
