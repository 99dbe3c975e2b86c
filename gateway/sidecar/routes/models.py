"""GET /api/v1/models: the public price list (no sign-in): each callable model's user price per 1M input and
output tokens in USD and credits, and its context and output limits. Never provider prices.

It is the snapshot `gateway up` publishes after checking the LiteLLM config (gateway.proxy.catalog, the same
code as the proxy's GET /v1/models): the sidecar does not import litellm. Until one is published, 503.
"""

from __future__ import annotations

import json

from fastapi import APIRouter
from pydantic import BaseModel, Field

from gateway.sidecar.deps import ServicesDep
from gateway.sidecar.errors import ApiError, documented

router = APIRouter(tags=["models"])


class Pricing(BaseModel):
    prompt_usd_per_token: str
    prompt_usd_per_1m_tokens: str
    prompt_credits_per_1m_tokens: str
    completion_usd_per_token: str
    completion_usd_per_1m_tokens: str
    completion_credits_per_1m_tokens: str


class ModelOut(BaseModel):
    id: str
    pricing: Pricing = Field(description="User prices (provider price x markup); a call is rounded up to a micro")
    context_tokens: int | None
    max_output_tokens: int | None
    mode: str | None
    routes: list[str] = Field(
        default_factory=list, description="The API paths that serve the model (/v1/chat/completions, /v1/messages...)"
    )


class ModelList(BaseModel):
    object: str = "list"
    data: list[ModelOut]


@router.get("/models", response_model=ModelList, responses=documented(503))
async def get_models(svc: ServicesDep) -> ModelList:
    """The models users can call and what they cost."""
    try:
        document = json.loads(svc.settings.price_list_path.read_text())
    except (OSError, ValueError):
        raise ApiError(
            503, "price_list_unavailable", "no price list is published yet: `gateway up` publishes it at start"
        ) from None
    return ModelList.model_validate(document)
