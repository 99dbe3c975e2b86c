"""OpenAI-shaped errors for proxy clients: `{"error": {"message", "type", "param", "code"}}` with a status.

LiteLLM's ProxyException puts the HTTP status into `code`; OpenAI clients expect a machine-readable code
there (`insufficient_credits`, `invalid_api_key`), so `to_dict` is overridden to send that instead. Each one
carries the `x-gateway-error` header (LiteLLM keeps a ProxyException's headers on the way out): it tells
`gateway.proxy.exposure` that the body is the gateway's own, so only upstream error text is replaced.
"""

from __future__ import annotations

from litellm.proxy._types import ProxyException

from gateway.proxy.pricing import model_names

ERROR_MARK = b"x-gateway-error"


class GatewayError(ProxyException):
    def __init__(
        self, status: int, code: str, message: str, type_: str = "invalid_request_error", param: str | None = None
    ) -> None:
        super().__init__(
            message=message, type=type_, param=param, code=status, openai_code=code, headers={ERROR_MARK.decode(): code}
        )
        self.status_code = status

    def to_dict(self) -> dict[str, str | int | None]:
        return {"message": self.message, "type": self.type, "param": self.param, "code": self.openai_code}


def route_not_allowed(path: str) -> GatewayError:
    return GatewayError(
        403,
        "route_not_allowed",
        f"'{path}' is not available to virtual keys: they reach chat completions, Responses, Anthropic Messages, "
        "text completions, embeddings and the model list only.",
        "permission_error",
    )


def not_admitted() -> GatewayError:
    return GatewayError(
        503,
        "gateway_misconfigured",
        "The gateway's request guard is not installed; the call was refused (nothing was charged).",
        "service_unavailable",
    )


def invalid_key(missing: bool = False) -> GatewayError:
    """401 to a client that sent no key, or one the gateway does not know (or revoked): what to send instead."""
    message = (
        "No API key: send your gateway key as `Authorization: Bearer sk-cg-...` (OpenAI SDKs: api_key). "
        "Get one on the gateway's credits page."
        if missing
        else "Invalid API key: it is unknown, revoked or malformed. Check the key you sent (sk-cg-...); a key is "
        "shown once, when it is created on the credits page, so create a new one there if it is lost."
    )
    return GatewayError(401, "invalid_api_key", message, "authentication_error")


def account_frozen() -> GatewayError:
    return GatewayError(
        403,
        "account_frozen",
        "This account is frozen by the gateway's operator: its calls are refused (nothing was charged). "
        "Top-ups are still credited; contact the operator.",
        "permission_error",
    )


def admin_key_refused() -> GatewayError:
    return GatewayError(
        401,
        "admin_key_not_billable",
        "The admin (master) key cannot make billed calls; use a virtual key (sk-cg-...).",
        "authentication_error",
    )


def billing_unavailable(request_id: str | None = None) -> GatewayError:
    quote = f" (request id {request_id})" if request_id else ""
    return GatewayError(
        503,
        "billing_unavailable",
        f"The billing database is unreachable, so the call was refused (nothing was charged){quote}. Retry shortly.",
        "service_unavailable",
    )


def internal_error(request_id: str) -> GatewayError:
    return GatewayError(
        500,
        "internal_error",
        f"The gateway failed on this call (nothing was charged; request id {request_id}). "
        "Retry, or report it with the request id.",
        "server_error",
    )


def insufficient_credits(message: str) -> GatewayError:
    return GatewayError(402, "insufficient_credits", message, "insufficient_quota")


def key_limit_exceeded(message: str) -> GatewayError:
    return GatewayError(402, "key_limit_exceeded", message, "insufficient_quota")


MODELS_NAMED = 20  # a model_not_found message names at most this many models


def unpriced_model(model: str) -> GatewayError:
    """A model the hold cannot price: one the gateway does not serve is OpenAI's 404 `model_not_found`, naming the
    models it serves; a configured model without a price is the operator's to fix (400)."""
    served = model_names()
    if model not in served:
        shown = ", ".join(served[:MODELS_NAMED]) + (", ..." if len(served) > MODELS_NAMED else "")
        return GatewayError(
            404,
            "model_not_found",
            f"The model '{model}' does not exist on this gateway. Its models: {shown or 'none'} "
            "(GET /v1/models lists them).",
        )
    return GatewayError(
        400,
        "model_not_priced",
        f"Model '{model}' has no known price, so the gateway refuses to call it. "
        "Ask the operator to set input_cost_per_token/output_cost_per_token for it in litellm_config.yaml.",
    )


def unsupported_call(call_type: str) -> GatewayError:
    return GatewayError(
        400,
        "unsupported_endpoint",
        "This gateway bills chat completions, embeddings, Responses, Anthropic Messages and text completions only, "
        f"not '{call_type}'.",
    )


def model_route_refused(model: str, route: str) -> GatewayError:
    return GatewayError(
        400,
        "model_not_available_on_route",
        f"Model '{model}' does not serve {route} (GET /v1/models lists the routes each model serves).",
        param="model",
    )


def prompt_too_long(model: str, prompt_tokens: int, max_input_tokens: int) -> GatewayError:
    return GatewayError(
        400,
        "context_length_exceeded",
        f"This request's prompt (or one of its inputs) counts up to {prompt_tokens} tokens (an upper bound: the "
        f"exact count, or a text's UTF-8 byte length above 1,000,000 characters), more than model '{model}' "
        f"accepts ({max_input_tokens} input tokens). Shorten it; nothing was charged.",
    )


def upstream_error(status: int, request_id: str | None) -> GatewayError:
    """What a client is told when the provider (or LiteLLM on its behalf) answered with an error: its status and
    our words, never the provider's text (it names the operator's account, limits and usage)."""
    quote = f" (request id {request_id})" if request_id else ""
    if status == 429:
        return GatewayError(
            429,
            "upstream_rate_limited",
            f"The model provider is rate-limiting this gateway{quote}. Retry shortly.",
            "rate_limit_error",
        )
    if status < 500:
        return GatewayError(
            status,
            "upstream_refused",
            f"The model provider refused this request (HTTP {status}){quote}. "
            "Check the request's parameters, or report it with the request id.",
        )
    return GatewayError(
        status,
        "upstream_error",
        f"The model provider failed on this call (HTTP {status}){quote}. Retry, or report it with the request id.",
        "server_error",
    )
