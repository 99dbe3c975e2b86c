"""The web pages: the credits page `/` (index.html), the operator console `/ops` (ops.html; its data needs an
operator's session) and `/static/...` (CSS, ES modules, icon), shipped in the package.

Every page file is sent with a strict Content-Security-Policy (only this origin's own scripts, styles and
API; no inline code, no frames, no forms posting elsewhere), `nosniff` and no Referer. Page files may be
cached but are revalidated on every use (ETag / Last-Modified), so an upgrade reaches browsers at once;
the API's answers stay `no-store` (gateway.sidecar.app).
"""

from __future__ import annotations

import os
from pathlib import Path

from fastapi import APIRouter, FastAPI, Request, Response
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

STATIC_DIR = Path(__file__).resolve().parents[1] / "static"  # gateway/sidecar/static, shipped as package data
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
PAGE_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-cache",  # cacheable, but revalidated before each use
}


class PageFiles(StaticFiles):
    """Static files with the page's security and caching headers (on 200 and 304 alike)."""

    def file_response(
        self, full_path: str | os.PathLike[str], stat_result: os.stat_result, scope: Scope, status_code: int = 200
    ) -> Response:
        response = super().file_response(full_path, stat_result, scope, status_code)
        response.headers.update(PAGE_HEADERS)
        return response


files = PageFiles(directory=STATIC_DIR)
router = APIRouter(include_in_schema=False)


@router.api_route("/", methods=["GET", "HEAD"])
async def index(request: Request) -> Response:
    """The page itself."""
    return await files.get_response("index.html", request.scope)


@router.api_route("/ops", methods=["GET", "HEAD"])
async def ops(request: Request) -> Response:
    """The operator console (its API answers 403 to anyone but an operator)."""
    return await files.get_response("ops.html", request.scope)


def install(app: FastAPI) -> None:
    app.include_router(router)
    app.mount("/static", files, name="static")
