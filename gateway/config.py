"""Settings: every knob the gateway reads from the environment (or `.env`), validated once at start-up.

A bad value stops start-up with one line naming the setting (see `load_settings`).
"""

from __future__ import annotations

import functools
import os
from decimal import Decimal
from pathlib import Path

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

BASE_USDC_ADDRESS = "0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore", case_sensitive=False)

    gateway_home: Path = Field(default=Path(".gateway"))
    database_url: str | None = None
    redis_url: str | None = None
    user_price_markup_factor: Decimal = Decimal("2.0")
    litellm_master_key: str | None = None
    key_cache_ttl_seconds: float = Field(default=2.0, gt=0, le=5)
    hold_ttl_seconds: int = Field(default=900, gt=0)

    host: str = "127.0.0.1"
    proxy_port: int = 4000
    sidecar_port: int = 8000
    proxy_workers: int = Field(default=0, ge=0)  # 0 = pick from the number of cores

    chain_id: int = 8453
    chain_rpc_url: str | None = None
    usdc_address: str = BASE_USDC_ADDRESS
    dao_wallet_address: str | None = None
    min_confirmations: int = Field(default=30, ge=0)
    min_topup_usd: Decimal = Decimal("1")
    max_topup_usd: Decimal = Decimal("10000")
    session_secret: str | None = None
    siwe_domain: str = "localhost:8000"
    session_ttl_seconds: int = Field(default=7 * 24 * 3600, gt=0)

    @field_validator("user_price_markup_factor")
    @classmethod
    def _markup_at_least_one(cls, value: Decimal) -> Decimal:
        if not value.is_finite() or value < 1:
            raise ValueError("must be a number >= 1.0 (we never sell below provider cost)")
        return value

    @property
    def effective_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.gateway_home / 'gateway.db').resolve()}"

    @property
    def is_embedded(self) -> bool:
        return self.effective_database_url.startswith("sqlite")


class SettingsError(SystemExit):
    """Raised with one human line when the environment holds an invalid setting."""


def load_settings() -> Settings:
    try:
        return Settings()
    except ValidationError as exc:
        first = exc.errors()[0]
        name = str(first["loc"][0]).upper() if first["loc"] else "settings"
        raise SettingsError(f"invalid setting {name}: {first['msg']}") from None


@functools.lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings (read once)."""
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    return load_settings()
