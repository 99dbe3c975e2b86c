"""`litellm_settings.custom_provider_map` entry point: the `demo` model's in-process provider."""

from gateway.proxy.demo_provider import demo_provider

__all__ = ["demo_provider"]
