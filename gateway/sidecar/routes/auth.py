"""Routes under /api/v1/auth: a nonce, SIWE verify (-> session cookie), logout and the current session."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from gateway.auth.sessions import Session, revoke_session
from gateway.onboarding import sign_in
from gateway.sidecar.deps import SESSION_COOKIE, ServicesDep, SessionDep, SessionIdDep, limit_per_ip
from gateway.sidecar.errors import documented
from gateway.sidecar.schemas import NewKeyOut

router = APIRouter(prefix="/auth", tags=["auth"])


class NonceOut(BaseModel):
    nonce: str = Field(description="Put it in the SIWE message's Nonce field; single use")
    expires_at: datetime


class VerifyIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    message: str = Field(min_length=1, max_length=4096, description="The EIP-4361 message, exactly as signed")
    signature: str = Field(
        pattern=r"^0x[0-9a-fA-F]{2,2000}$", description="The wallet's signature (EOA, ERC-1271 or EIP-6492), 0x hex"
    )


class SessionOut(BaseModel):
    wallet_address: str
    account_id: int
    expires_at: datetime

    @classmethod
    def of(cls, session: Session) -> SessionOut:
        return cls(wallet_address=session.wallet_address, account_id=session.account_id, expires_at=session.expires_at)


class VerifyOut(SessionOut):
    default_key: NewKeyOut | None = Field(
        description="On the wallet's first sign-in only: its first API key, raw, shown this once"
    )


def _cookie_attributes(request: Request) -> dict[str, Any]:
    return {"path": "/", "httponly": True, "samesite": "lax", "secure": request.url.scheme == "https"}


@router.get("/nonce", response_model=NonceOut, responses=documented(429), dependencies=[Depends(limit_per_ip("nonce"))])
async def nonce(svc: ServicesDep) -> NonceOut:
    """A fresh single-use nonce for a SIWE message; it expires in 10 minutes."""
    issued = await svc.nonces.issue()
    return NonceOut(nonce=issued.nonce, expires_at=issued.expires_at)


@router.post(
    "/verify",
    response_model=VerifyOut,
    responses=documented(400, 401, 403, 422, 429),
    dependencies=[Depends(limit_per_ip("verify"))],
)
async def verify(body: VerifyIn, request: Request, response: Response, svc: ServicesDep) -> VerifyOut:
    """Sign in: check the signed SIWE message, open a session (cookie) and, on first sign-in, create the account."""
    ttl = timedelta(seconds=svc.settings.session_ttl_seconds)
    signed_in = await sign_in(svc.db, svc.nonces, svc.policy, body.message, body.signature, ttl)
    response.set_cookie(
        SESSION_COOKIE, signed_in.session_id, max_age=svc.settings.session_ttl_seconds, **_cookie_attributes(request)
    )
    default_key = NewKeyOut.of_new(signed_in.default_key) if signed_in.default_key else None
    return VerifyOut(**SessionOut.of(signed_in.session).model_dump(), default_key=default_key)


@router.post("/logout", status_code=204, response_class=Response, responses=documented(401, 403))
async def logout(request: Request, svc: ServicesDep, _: SessionDep, session_id: SessionIdDep) -> Response:
    """End the session on the server; the cookie stops working everywhere at once."""
    if session_id:  # always: SessionDep has answered 401 without a live session cookie
        await revoke_session(svc.db, session_id)
    response = Response(status_code=204)
    response.delete_cookie(SESSION_COOKIE, **_cookie_attributes(request))
    return response


@router.get("/session", response_model=SessionOut, responses=documented(401))
async def session(current: SessionDep) -> SessionOut:
    """The signed-in wallet, its account id and when the session expires."""
    return SessionOut.of(current)
