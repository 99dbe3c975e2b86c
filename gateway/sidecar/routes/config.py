"""GET /api/v1/config (public): what the credits page needs to sign in and take a top-up.

Everything here is already public (chain, token and DAO addresses, bounds, prices): it is read from the
settings on each request, so it always matches what the other routes enforce.
"""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel, Field

from gateway.core.money import MICROS_PER_CREDIT, MICROS_PER_USD
from gateway.payments.service import topup_bounds_micros
from gateway.sidecar.deps import ServicesDep
from gateway.sidecar.errors import documented

router = APIRouter(tags=["config"])
PUBLIC_PRICE_LIST = "/api/v1/models"  # the sidecar's own price list (gateway/sidecar/routes/models.py)

SIWE_STATEMENT = "Sign in to credit-gateway to manage your credits and API keys."
USDC_DECIMALS = 6
TOPUP_PRESETS_USD = (1, 10, 25, 50, 100)


class ConfigOut(BaseModel):
    chain_id: int = Field(description="The chain top-ups are paid on and sign-in messages must name (EIP-155)")
    usdc_address: str = Field(description="The USDC token contract on that chain")
    usdc_decimals: int = Field(description="USDC base units per USDC: 10**decimals (one base unit = one micro)")
    dao_wallet_address: str | None = Field(description="Where top-ups are sent; null when payments are off")
    payments_enabled: bool = Field(description="Whether this gateway takes top-ups (RPC and DAO wallet set)")
    min_topup_micros: int = Field(description="The smallest top-up accepted, in USD micros (= USDC base units)")
    max_topup_micros: int = Field(description="The largest top-up accepted, in USD micros")
    topup_presets_micros: list[int] = Field(description="Suggested amounts within the bounds, in micros")
    min_confirmations: int = Field(description="Blocks a transfer needs (its own included) before it is credited")
    micros_per_credit: int = Field(description="1 credit = this many USD micros")
    credits_per_usd: int = Field(description="Credits bought by 1 USD (= 1 USDC)")
    markup: str = Field(description="User price = provider cost x markup, exact decimal")
    siwe_domain: str = Field(description="The domain (host[:port]) a sign-in message must be for")
    siwe_statement: str = Field(description="The statement the page puts in its sign-in message")
    siwe_version: str = Field(description="The EIP-4361 message version")
    api_base_url: str = Field(description="The OpenAI-compatible base URL to use API keys with")
    price_list_url: str = Field(
        description="Where prices per model are listed: PRICE_LIST_URL, else GET /api/v1/models"
    )


@router.get("/config", response_model=ConfigOut, responses=documented())
async def config(svc: ServicesDep) -> ConfigOut:
    """Public settings for the credits page: chain, token, DAO wallet, top-up bounds and SIWE fields."""
    settings = svc.settings
    low, high = topup_bounds_micros(settings)
    presets = [usd * MICROS_PER_USD for usd in TOPUP_PRESETS_USD if low <= usd * MICROS_PER_USD <= high]
    return ConfigOut(
        chain_id=settings.chain_id,
        usdc_address=settings.usdc_address,
        usdc_decimals=USDC_DECIMALS,
        dao_wallet_address=settings.dao_wallet_address,
        payments_enabled=bool(settings.chain_rpc_url and settings.dao_wallet_address),
        min_topup_micros=low,
        max_topup_micros=high,
        topup_presets_micros=presets,
        min_confirmations=settings.min_confirmations,
        micros_per_credit=MICROS_PER_CREDIT,
        credits_per_usd=MICROS_PER_USD // MICROS_PER_CREDIT,
        markup=str(settings.user_price_markup_factor),
        siwe_domain=settings.siwe_domain,
        siwe_statement=SIWE_STATEMENT,
        siwe_version="1",
        api_base_url=settings.effective_api_base_url,
        price_list_url=settings.price_list_url or PUBLIC_PRICE_LIST,
    )
