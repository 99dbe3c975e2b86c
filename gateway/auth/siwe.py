"""Sign-In with Ethereum (EIP-4361): is this signed message a fresh sign-in to this site, and by which wallet?

`verify_message` checks everything itself or hands it to signinwithethereum explicitly (its `verify` checks
only what it is given): domain, URI origin, chain id, a nonce we issued, issued-at (60 s skew), expiration /
not-before, and the signature: ERC-191 for EOAs, ERC-1271 / EIP-6492 through the chain RPC for smart
wallets. The nonce is consumed only after the signature is good, so a rejected message changes nothing;
consuming is atomic, so a nonce can sign in once. No web framework here; the sidecar adapts it to HTTP.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import urlsplit

import siwe
from pydantic import ValidationError
from requests import RequestException
from web3 import HTTPProvider

from gateway.accounts.wallets import normalize_wallet
from gateway.auth.nonces import NonceStore, utc_now
from gateway.config import Settings
from gateway.failures import ChainUnavailable

CLOCK_SKEW = timedelta(seconds=60)
_HEADER = " wants you to sign in with your Ethereum account:"


class LoginRejected(Exception):
    """The message or signature does not prove a fresh sign-in to this site (HTTP 401)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


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
