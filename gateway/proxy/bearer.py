"""Bearer-key authentication, shared by the ASGI guard (the routes it answers itself) and LiteLLM's
`custom_auth` (gateway.proxy.auth): the credential a request presents, and the account behind it.

A key is checked by its SHA-256 against the active keys (gateway.accounts.keys, cached briefly): 401 for a
missing or unknown key, 403 for a frozen account, 503 when the key store is unreachable.
"""

from __future__ import annotations

import logging

from gateway.accounts.keys import KeyOwner, resolve_key
from gateway.failures import is_transient
from gateway.proxy.errors import account_frozen, billing_unavailable, invalid_key
from gateway.proxy.runtime import runtime

log = logging.getLogger("gateway.proxy.auth")


def presented_key(headers: dict[str, bytes]) -> str:
    """The key a request presents: `Authorization: Bearer <key>` (OpenAI's SDKs) or `x-api-key` (Anthropic's)."""
    authorization = (headers.get("authorization") or headers.get("x-api-key") or b"").decode("latin-1")
    return authorization.removeprefix("Bearer ").removeprefix("bearer ").strip()


async def authenticate(api_key: str) -> KeyOwner:
    """The account behind a virtual key, or a GatewayError (401 unknown key, 403 frozen account, 503 key store
    unreachable)."""
    rt = runtime()
    try:
        owner = await resolve_key(rt.db, rt.key_cache, api_key)
    except Exception as exc:
        if not is_transient(exc):
            raise
        # one line, no traceback: an outage would flood the log
        log.warning("key lookup refused: billing database unreachable (%s)", type(exc).__name__)
        raise billing_unavailable() from None
    if owner is None:
        raise invalid_key(missing=not api_key)
    if owner.frozen:
        raise account_frozen()
    return owner
