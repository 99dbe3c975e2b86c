"""Settings: every knob the gateway reads from the environment (or `.env`), validated once at start-up.

A bad value stops start-up with one line naming the setting (see `load_settings`).
"""

from __future__ import annotations

import functools
import os
import re
from decimal import Decimal
from pathlib import Path
from typing import Literal

import limits
from pydantic import AliasChoices, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# the project folder: alembic.ini, migrations/, hooks/ and litellm_config.yaml live beside the package
REPO_ROOT = Path(__file__).resolve().parents[1]
BASE_USDC_ADDRESS = "0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913"
DEFAULT_HOME = Path(".gateway")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore", case_sensitive=False)

    gateway_home: Path = Field(default=DEFAULT_HOME)
    # GATEWAY_DATABASE_URL wins: `gateway up` hands the URL to LiteLLM under that name, because LiteLLM
    # itself treats DATABASE_URL as its own (Prisma) database.
    database_url: str | None = Field(
        default=None, validation_alias=AliasChoices("GATEWAY_DATABASE_URL", "DATABASE_URL")
    )
    # GATEWAY_REDIS_URL wins, for the same reason: LiteLLM takes REDIS_URL as its own "coordination" Redis
    # and then makes Redis calls on every request (bench/RESULTS.md: ~4 ms of CPU per call at concurrency 16).
    redis_url: str | None = Field(default=None, validation_alias=AliasChoices("GATEWAY_REDIS_URL", "REDIS_URL"))
    # Redis is optional at run time too (gateway/redis_link.py): a call may take this long (connecting, the
    # answer) before it falls back; after a failure a process skips Redis for the back-off, then tries again.
    redis_timeout_seconds: float = Field(default=0.25, gt=0, le=5)
    redis_backoff_seconds: float = Field(default=5.0, gt=0, le=300)
    redis_max_connections: int = Field(default=100, ge=1)  # per process; more concurrent calls wait for one
    user_price_markup_factor: Decimal = Decimal("2.0")
    litellm_master_key: str | None = None
    key_cache_ttl_seconds: float = Field(default=2.0, gt=0, le=5)
    hold_ttl_seconds: int = Field(default=900, gt=0)
    # what a hold counts for one image part: a provider bills an image by its pixels, which the gateway does
    # not see (gpt-4o-mini bills up to ~48,200 tokens for one high-detail image, gpt-4o ~1,450)
    hold_tokens_per_image: int = Field(default=50_000, ge=0)
    proxy_max_body_bytes: int = Field(default=32 * 1024 * 1024, gt=0)  # larger requests get 413 before being read
    spool_dir: Path | None = None  # settles the database could not take wait here (default $GATEWAY_HOME/spool)
    spool_replay_seconds: float = Field(default=2.0, gt=0)
    # the sweeper expires a hold only this long after its TTL, so that spooled settles are applied first
    hold_sweep_grace_seconds: int = Field(default=3600, ge=0)
    # SIGTERM to a proxy: calls in flight (streams too) get this long to finish and settle before it exits
    shutdown_grace_seconds: int = Field(default=30, ge=0)

    # the LiteLLM config `gateway up` checks and runs (`gateway up --config PATH` wins); default: the repo's
    litellm_config: Path | None = Field(default=None, validation_alias=AliasChoices("GATEWAY_LITELLM_CONFIG"))

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
    chain_rpc_timeout_seconds: float = Field(default=10.0, gt=0)
    watcher_batch_blocks: int = Field(default=2000, gt=0)  # blocks per eth_getLogs request
    watcher_poll_seconds: float = Field(default=2.0, gt=0)
    watcher_start_block: int | None = Field(default=None, ge=0)  # None: the confirmed head at first start
    siwe_domain: str = "localhost:8000"
    # what the credits page tells users: where to use their keys (default: this host's proxy) and a price list
    public_api_base_url: str | None = None
    price_list_url: str | None = None
    session_ttl_seconds: int = Field(default=7 * 24 * 3600, gt=0)
    # sidecar rate limits, in the `limits` notation ("10/minute", "5 per 2 seconds"), moving window
    rate_limit_nonce: str = "30/minute"  # GET /auth/nonce, per client IP
    rate_limit_verify: str = "10/minute"  # POST /auth/verify, per client IP
    rate_limit_key_create: str = "20/hour"  # POST /keys, per client IP and per account
    rate_limit_payment_confirm: str = "30/minute"  # POST /payments/credits/confirm, per account
    sidecar_redis_prefix: str = Field(default="gw:sidecar", min_length=1)  # namespace of nonces and limits in Redis
    sidecar_max_body_bytes: int = Field(default=64 * 1024, gt=0)  # larger request bodies get 413 before being read
    # GET /metrics on the proxy and the sidecar needs this bearer; unset, /metrics is off (it shows revenue, provider
    # cost and losses, and the proxy's port is every client's)
    metrics_bearer_token: str | None = Field(default=None, min_length=16)
    # addresses whose X-Forwarded-For/-Proto the servers trust (uvicorn's setting, passed to the sidecar and the
    # proxy explicitly): none by default, else a client on the same host could rotate its address at will
    forwarded_allow_ips: str = ""
    log_format: Literal["auto", "json", "console"] = "auto"  # auto: console on a terminal, JSON lines otherwise
    # x402 pay-per-call on the proxy (gateway/x402/): off by default; needs the chain settings and a gas wallet
    x402_enabled: bool = False
    x402_gas_wallet_key: SecretStr | None = None  # hex private key of the wallet that pays the gas of settlements
    x402_gas_wallet_key_file: Path | None = None  # or a file holding it
    x402_max_timeout_seconds: int = Field(default=60, gt=0, le=3600)  # advertised; also the wait for a receipt
    x402_erc6492_factories: list[str] = []  # factories trusted to deploy counterfactual smart wallets (JSON list)
    usdc_eip712_name: str = "USD Coin"  # USDC's EIP-712 domain on Base
    usdc_eip712_version: str = "2"
    # the operator console (/ops, /api/v1/ops): these wallets (JSON list) sign in as operators
    operator_wallets: list[str] = []
    # a block explorer's transaction page, "{tx}" replaced by the hash (e.g. https://basescan.org/tx/{tx})
    explorer_tx_url: str | None = None

    @field_validator("database_url")
    @classmethod
    def _supported_database(cls, value: str | None) -> str | None:
        if not value:
            return value
        from sqlalchemy.engine import make_url
        from sqlalchemy.exc import ArgumentError

        try:
            driver = make_url(value).drivername
        except ArgumentError:
            raise ValueError("is not a database URL like 'postgresql+asyncpg://user@host/db'") from None
        if driver not in ("postgresql+asyncpg", "sqlite+aiosqlite"):
            raise ValueError(
                f"{driver}:// is not supported: use postgresql+asyncpg://user@host/db or sqlite+aiosqlite:///path"
            )
        return value

    @field_validator("redis_url")
    @classmethod
    def _redis_scheme(cls, value: str | None) -> str | None:
        if value and value.partition("://")[0] not in ("redis", "rediss", "unix"):
            raise ValueError("must be a redis://, rediss:// or unix:// URL")
        return value

    @field_validator("user_price_markup_factor")
    @classmethod
    def _markup_at_least_one(cls, value: Decimal) -> Decimal:
        if not value.is_finite() or value < 1:
            raise ValueError("must be a number >= 1.0 (we never sell below provider cost)")
        return value

    @field_validator("siwe_domain")
    @classmethod
    def _domain_is_an_authority(cls, value: str) -> str:
        if not re.fullmatch(r"[^\s/?#@]+", value):
            raise ValueError(f"{value!r} must be a host[:port] like 'credits.example.com' (no scheme, no path)")
        return value.lower()

    @field_validator("public_api_base_url", "price_list_url")
    @classmethod
    def _web_url(cls, value: str | None) -> str | None:
        if value and not re.fullmatch(r"https?://[^\s\"'<>]+", value):
            raise ValueError(f"{value!r} must be an http:// or https:// URL")
        return value

    @field_validator("rate_limit_nonce", "rate_limit_verify", "rate_limit_key_create", "rate_limit_payment_confirm")
    @classmethod
    def _rate_limit_notation(cls, value: str) -> str:
        try:
            limits.parse(value)
        except ValueError:
            raise ValueError(f"{value!r} is not a rate limit like '10/minute' or '5 per 2 seconds'") from None
        return value

    @model_validator(mode="after")
    def _siwe_domain_follows_the_sidecar(self) -> Settings:
        """Unset, SIWE_DOMAIN is where `gateway up` serves the credits page: localhost:SIDECAR_PORT. Set to a loopback
        name on another port while the sidecar itself listens on loopback, sign-in cannot work (the page at
        localhost:SIDECAR_PORT signs messages for its own host): refuse to start, naming both settings."""
        if "siwe_domain" not in self.model_fields_set:
            self.siwe_domain = f"localhost:{self.sidecar_port}"
            return self
        host, sep, port = self.siwe_domain.rpartition(":")
        if not sep or not port.isdigit():
            host, port = self.siwe_domain, "80"
        if self.sidecar_port and _is_loopback(self.host) and _is_loopback(host) and int(port) != self.sidecar_port:
            raise ValueError(
                f"SIWE_DOMAIN {self.siwe_domain} does not match SIDECAR_PORT {self.sidecar_port}: the credits page "
                f"(http://localhost:{self.sidecar_port}/) could not sign in; "
                f"set SIWE_DOMAIN=localhost:{self.sidecar_port} or leave it unset"
            )
        return self

    @model_validator(mode="after")
    def _x402_needs_chain_and_gas_wallet(self) -> Settings:
        if self.x402_enabled and not (self.chain_rpc_url and self.dao_wallet_address):
            raise ValueError("X402_ENABLED needs CHAIN_RPC_URL and DAO_WALLET_ADDRESS")
        if self.x402_enabled and not (self.x402_gas_wallet_key or self.x402_gas_wallet_key_file):
            raise ValueError("X402_ENABLED needs X402_GAS_WALLET_KEY or X402_GAS_WALLET_KEY_FILE")
        return self

    @field_validator("x402_erc6492_factories", "operator_wallets")
    @classmethod
    def _addresses(cls, value: list[str]) -> list[str]:
        """Addresses, stored lower-case; a mixed-case one must carry a valid EIP-55 checksum (a typo guard)."""
        from eth_utils.address import is_checksum_address

        bad = [address for address in value if not re.fullmatch(r"0x[0-9a-fA-F]{40}", address)]
        if bad:
            raise ValueError(f"{bad[0]!r} is not an address (0x followed by 40 hex digits)")
        typo = [a for a in value if a[2:] not in (a[2:].lower(), a[2:].upper()) and not is_checksum_address(a)]
        if typo:
            raise ValueError(f"{typo[0]!r} has a wrong EIP-55 checksum (a mistyped address?)")
        return [address.lower() for address in value]

    @field_validator("explorer_tx_url")
    @classmethod
    def _explorer_template(cls, value: str | None) -> str | None:
        if value and not re.fullmatch(r"https?://[^\s\"'<>{}]*\{tx\}[^\s\"'<>{}]*", value):
            raise ValueError(f"{value!r} must be an http(s) URL containing {{tx}}, e.g. https://basescan.org/tx/{{tx}}")
        return value

    def is_operator(self, wallet: str) -> bool:
        """Whether `wallet` (any case) is one of OPERATOR_WALLETS."""
        return wallet.lower() in self.operator_wallets

    @property
    def effective_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.gateway_home / 'gateway.db').resolve()}"

    @property
    def effective_api_base_url(self) -> str:
        return self.public_api_base_url or f"http://{self.siwe_domain.rsplit(':', 1)[0]}:{self.proxy_port}/v1"

    @property
    def effective_spool_dir(self) -> Path:
        return self.spool_dir or self.gateway_home / "spool"

    @property
    def effective_litellm_config(self) -> Path:
        return (self.litellm_config or REPO_ROOT / "litellm_config.yaml").resolve()

    @property
    def price_list_path(self) -> Path:
        """The price list `gateway up` publishes for the sidecar's GET /api/v1/models."""
        return self.gateway_home / "price_list.json"

    @property
    def is_embedded(self) -> bool:
        return self.effective_database_url.startswith("sqlite")


def _is_loopback(host: str) -> bool:
    return host.strip("[]").lower() in {"localhost", "127.0.0.1", "::1"}


class SettingsError(SystemExit):
    """Raised with one human line when the environment holds an invalid setting."""


def load_settings() -> Settings:
    try:
        return Settings()
    except ValidationError as exc:
        first = exc.errors()[0]
        message = first["msg"].removeprefix("Value error, ")
        if not first["loc"]:  # a rule across settings: its message names them
            raise SettingsError(f"invalid settings: {message}") from None
        raise SettingsError(f"invalid setting {str(first['loc'][0]).upper()}: {message}") from None


@functools.lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings (read once)."""
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    # LiteLLM counts a Llama/Mistral-family model's tokens with a Hugging Face tokenizer it downloads at
    # first use (retrying for ~30 s without internet, on the call's path); offline, it uses a local copy or
    # falls back to tiktoken at once. The hold's prompt bound errs high either way (gateway.proxy.pricing).
    # Set here, the one place every gateway process (the proxy's hooks included) reads its settings first.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    return load_settings()
