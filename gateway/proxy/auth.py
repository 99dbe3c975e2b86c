"""LiteLLM `custom_auth`: bearer virtual key -> billing account (cached), master key -> admin routes only.

LiteLLM sends *every* request here, the master key included. The master key exists only because LiteLLM
refuses to start without one: it keeps LiteLLM's admin routes, and never makes a billed call. Virtual keys
were confined to the allowed routes by `gateway.proxy.guard` before LiteLLM saw the request; importing
this module (LiteLLM does, at start-up) installs that guard and starts the spool replay (`_plug_in`).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import uuid

from fastapi import Request
from litellm.proxy import proxy_server
from litellm.proxy._types import LitellmUserRoles, UserAPIKeyAuth

from gateway.observability.logging import configure as configure_logging
from gateway.proxy import admission, guard, reload, x402_gate
from gateway.proxy.bearer import authenticate
from gateway.proxy.errors import GatewayError, admin_key_refused, internal_error, not_admitted
from gateway.proxy.runtime import runtime

log = logging.getLogger("gateway.proxy.auth")


async def user_api_key_auth(request: Request, api_key: str | None) -> UserAPIKeyAuth:
    api_key = api_key or ""  # LiteLLM passes None for a request without any key
    master = runtime().settings.litellm_master_key
    route = admission.ROUTES.get(request.url.path)
    if master and secrets.compare_digest(api_key.encode(), master.encode()):
        if route is not None and route[0] != admission.MODELS:
            raise admin_key_refused()
        return UserAPIKeyAuth(api_key=api_key, user_role=LitellmUserRoles.PROXY_ADMIN)
    if not request.scope.get(guard.ADMITTED):  # the guard admits every billed call it lets through
        raise not_admitted()
    paid = x402_gate.paid(request.scope)
    if paid is not None:  # paid with x402 by the guard: billed to the paying wallet's account
        settled, planned = paid
        return UserAPIKeyAuth(
            token=f"gw-x402-{settled.account_id}",
            user_id=f"account-{settled.account_id}",
            metadata={
                "gateway_account_id": settled.account_id,
                "gateway_key_id": None,
                "gateway_request_id": request.scope.get(guard.REQUEST_ID),
                "gateway_plan": planned,  # the hold it paid for (the pre-call hook does not plan it again)
            },
        )
    try:
        owner = await authenticate(api_key)
    except GatewayError:
        raise
    except Exception:
        request_id = uuid.uuid4().hex
        log.exception("key check failed for %s", request_id)
        raise internal_error(request_id) from None
    return UserAPIKeyAuth(
        token=f"gw-key-{owner.key_id}",
        user_id=f"account-{owner.account_id}",
        metadata={
            "gateway_account_id": owner.account_id,
            "gateway_key_id": owner.key_id,
            "gateway_request_id": request.scope.get(guard.REQUEST_ID),
        },
    )


def _plug_in() -> None:
    """What each proxy process starts with when LiteLLM loads this hook (inside its async start-up): the
    guard in front of the app, the gateway's log format, config reloads on a signal (gateway.proxy.reload),
    and the replay of settles spooled while the database was unreachable (including those a killed
    predecessor left on this host)."""
    guard.install(proxy_server.app)
    x402_gate.prepare()
    rt = runtime()
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:  # imported outside a running proxy (tests, tools): nothing to replay into
        return
    configure_logging(rt.settings.log_format)
    reload.install(loop)
    _background.add(loop.create_task(rt.spool.replay_forever(rt.ledger, rt.settings.spool_replay_seconds)))


_background: set[asyncio.Task[None]] = set()
_plug_in()
