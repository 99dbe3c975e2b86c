"""`litellm_settings.callbacks` entry point: hold/settle/release live in gateway.proxy.callbacks."""

from gateway.proxy.callbacks import proxy_handler_instance

__all__ = ["proxy_handler_instance"]
