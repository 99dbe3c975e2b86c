"""`gateway sidecar`: run the sidecar (FastAPI, uvicorn) alone on HOST:SIDECAR_PORT, e.g. in a deployment.

It does not migrate the database; run `gateway migrate` first (as `gateway up` does).
"""

from __future__ import annotations

from gateway.config import get_settings
from gateway.sidecar.app import serve


def sidecar() -> None:
    """Serve the sign-in, keys and credits API on HOST:SIDECAR_PORT."""
    serve(get_settings())
