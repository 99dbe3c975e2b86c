"""T's `litellm_settings.callbacks`: a pre-call hook that returns the request unchanged (no billing)."""

from typing import Any

from litellm.integrations.custom_logger import CustomLogger


class NoopCallback(CustomLogger):
    async def async_pre_call_hook(
        self, user_api_key_dict: Any, cache: Any, data: dict[str, Any], call_type: str
    ) -> dict[str, Any]:
        return data


proxy_handler_instance = NoopCallback()
