"""The LiteLLM admin (master) key: from LITELLM_MASTER_KEY, or generated once and kept in $GATEWAY_HOME."""

from __future__ import annotations

import os
import secrets

from gateway.config import Settings


def ensure_master_key(settings: Settings) -> str:
    if settings.litellm_master_key:
        return settings.litellm_master_key
    path = settings.gateway_home / "master_key"
    if path.exists():
        return path.read_text().strip()
    settings.gateway_home.mkdir(parents=True, exist_ok=True)
    key = "sk-admin-" + secrets.token_urlsafe(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(key + "\n")
    return key
