"""LiteLLM `custom_auth`: bearer virtual key -> billing account (cached), master key -> admin-only routes.

LiteLLM sends *every* request here, the master key included. The master key exists only because LiteLLM
refuses to start without one: it may read health and model listings, never make a billed call.
"""

from __future__ import annotations

import logging
import secrets

from fastapi import Request
from litellm.proxy._types import LitellmUserRoles, UserAPIKeyAuth

from gateway.keys import resolve_key
from gateway.proxy.errors import admin_key_refused, billing_unavailable, invalid_key
from gateway.proxy.failures import INFRASTRUCTURE_ERRORS
from gateway.proxy.runtime import runtime

log = logging.getLogger("gateway.proxy.auth")

_ADMIN_READ_PREFIXES = ("/health", "/models", "/v1/models", "/model/info", "/v1/model/info")


async def user_api_key_auth(request: Request, api_key: str) -> UserAPIKeyAuth:
    rt = runtime()
    master = rt.settings.litellm_master_key
    if master and secrets.compare_digest(api_key.encode(), master.encode()):
        if request.url.path.startswith(_ADMIN_READ_PREFIXES):
            return UserAPIKeyAuth(api_key=api_key, user_role=LitellmUserRoles.PROXY_ADMIN)
        raise admin_key_refused()
    try:
        owner = await resolve_key(rt.db, rt.key_cache, api_key)
    except INFRASTRUCTURE_ERRORS:
        log.exception("key lookup failed: billing database or cache unreachable")
        raise billing_unavailable() from None
    if owner is None:
        raise invalid_key()
    return UserAPIKeyAuth(
        token=f"gw-key-{owner.key_id}",
        user_id=f"account-{owner.account_id}",
        metadata={"gateway_account_id": owner.account_id, "gateway_key_id": owner.key_id},
    )
