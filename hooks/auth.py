"""`general_settings.custom_auth` entry point: the virtual-key check lives in gateway.proxy.auth."""

from gateway.proxy.auth import user_api_key_auth

__all__ = ["user_api_key_auth"]
