"""T's `general_settings.custom_auth`: accepts any key (LiteLLM's custom-auth path, no lookup)."""

from fastapi import Request
from litellm.proxy._types import UserAPIKeyAuth


async def user_api_key_auth(request: Request, api_key: str | None) -> UserAPIKeyAuth:
    return UserAPIKeyAuth(api_key=api_key or "")
