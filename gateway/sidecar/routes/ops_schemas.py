"""Pydantic shapes of the operator routes (/api/v1/ops/...): what they answer and what the actions take.

Every amount is an integer of USD micros (never a float, never credits); an action's body carries the
operator's idempotency `reference` and the `reason` recorded in the audit trail.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, StrictInt

from gateway.accounts.wallets import normalize_wallet
from gateway.core.limits import Reset
from gateway.ledger import MAX_ENTRY_MICROS
from gateway.sidecar.errors import ErrorResponse, documented
from gateway.sidecar.schemas import PlainText

Reference = Annotated[
    str,
    Field(
        pattern=r"^[A-Za-z0-9._:-]{8,100}$",
        description="Idempotency reference (8-100 of A-Z a-z 0-9 . _ : -): the same request with it is done once; "
        "reusing it for another request is refused (409)",
    ),
]
Reason = Annotated[PlainText, Field(min_length=3, max_length=500, description="Why: kept in the audit trail")]
Wallet = Annotated[
    str,
    Field(pattern=r"^0x[0-9a-fA-F]{40}$", description="A wallet address, 0x hex (mixed case: a valid EIP-55 checksum)"),
    AfterValidator(normalize_wallet),  # a mixed-case typo is refused (422), as the CLI and sign-in refuse it
]


def _whole_number(value: object) -> object:
    """JSON's 2.0 is the integer 2 (as JSON Schema says); 2.5, "2" and true are not amounts of micros."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


LimitMicros = Annotated[StrictInt, Field(ge=0, le=MAX_ENTRY_MICROS), BeforeValidator(_whole_number)]
GrantMicros = Annotated[StrictInt, Field(gt=0, le=MAX_ENTRY_MICROS), BeforeValidator(_whole_number)]
NOT_OPERATOR = {"model": ErrorResponse, "description": "Signed in, but the wallet is not in OPERATOR_WALLETS"}


def ops_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """`documented(...)` for an operator route: 401 (no session) and 403 (not an operator) always."""
    out = documented(401, *(s for s in statuses if s != 409))
    out[403] = NOT_OPERATOR
    if 409 in statuses:
        out[409] = {"model": ErrorResponse, "description": "The reference was used for another request"}
    return out


class ActionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: Reason
    reference: Reference


class GrantIn(ActionIn):
    wallet: Wallet
    amount_micros: GrantMicros = Field(description="Credit to add, USD micros (integer)")


class LimitIn(ActionIn):
    limit_micros: LimitMicros | None = Field(description="The key's new limit in USD micros; null clears it")
    limit_reset: Reset = Field(default=Reset.NONE, description="When the key's period use starts again (UTC)")


class ReconcileIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: Reason = "run from the operator console"
    reference: Reference


class AuditOut(BaseModel):
    id: int
    created_at: datetime
    operator_wallet: str
    action: str
    reference: str
    account_id: int | None
    key_id: int | None
    params: dict[str, Any]
    reason: str
    result: dict[str, Any]
    replayed: bool = Field(description="True when this answers a replay of an earlier request")


class AuditList(BaseModel):
    data: list[AuditOut]


class OperatorOut(BaseModel):
    wallet_address: str
    operator: bool
    explorer_tx_url: str | None


class Figures(BaseModel):
    calls: int
    prompt_tokens: int
    completion_tokens: int
    revenue_micros: int = Field(description="The calls' user price")
    charged_micros: int = Field(description="What accounts paid: revenue less uncollected")
    provider_cost_micros: int
    uncollected_micros: int = Field(description="Priced but not collected: operator loss")
    margin_micros: int = Field(description="charged - provider cost")


class ModelFigures(Figures):
    model: str


class HoldOutcomes(BaseModel):
    pending: int = Field(description="In flight")
    posted: int = Field(description="Settled")
    voided: int = Field(description="Released: the call failed, nothing charged")
    expired: int = Field(description="Its settle was lost; expired by the sweeper")


class DayFigures(Figures):
    day: date
    holds: HoldOutcomes
    models: list[ModelFigures]


class TotalFigures(Figures):
    holds: HoldOutcomes


class BusinessOut(BaseModel):
    first_day: date
    last_day: date
    days: list[DayFigures] = Field(description="Every UTC day of the range, oldest first")
    models: list[ModelFigures]
    total: TotalFigures
    note: str = Field(
        default="Calls refused before a hold (401, 402, 403, other 4xx/5xx) leave no database row: see "
        "gateway_proxy_calls_total{outcome} in Prometheus."
    )


class StatusFigures(BaseModel):
    count: int
    amount_micros: int


class MoneyRow(BaseModel):
    id: int
    status: str
    amount_micros: int = Field(description="Token base units (USDC: USD micros)")
    payer: str
    tx_hash: str | None
    tx_url: str | None = Field(description="EXPLORER_TX_URL with the hash, when set")
    account_id: int | None
    reason: str | None
    created_at: datetime
    updated_at: datetime
    age_seconds: int


class MoneyInOut(BaseModel):
    by_status: dict[str, StatusFigures]
    data: list[MoneyRow]


class SpoolOut(BaseModel):
    path: str
    pending: int
    failed: int


class BooksOut(BaseModel):
    holds_open: int
    holds_open_micros: int
    oldest_open_hold_at: datetime | None
    oldest_open_hold_age_seconds: int | None
    holds_open_past_ttl: int
    holds_expired_unsettled: int = Field(description="Expired by the sweeper, never settled: lost settles")
    holds_expired_unsettled_micros: int
    spool: SpoolOut | None = Field(description="This host's settle spool; null when no proxy spools here")
    last_reconcile: AuditOut | None


class OpsKeyOut(BaseModel):
    id: int
    prefix: str
    label: str
    active: bool
    created_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None
    limit_micros: int | None
    limit_reset: Reset
    usage_micros: int
    limit_remaining_micros: int | None
    resets_at: datetime | None


class OpsLedgerOut(BaseModel):
    id: int
    amount_micros: int
    balance_after_micros: int
    reason: str
    reference: str
    created_at: datetime


class OpsUsageOut(BaseModel):
    id: int
    request_id: str
    key_id: int | None
    model: str
    prompt_tokens: int
    completion_tokens: int
    user_price_micros: int
    charged_micros: int
    provider_cost_micros: int
    created_at: datetime


class AccountOut(BaseModel):
    account_id: int
    wallet_address: str
    balance_micros: int
    held_micros: int
    available_micros: int
    frozen_at: datetime | None
    last_activity_at: datetime | None
    keys: list[OpsKeyOut]
    ledger: list[OpsLedgerOut] = Field(description="The latest entries, newest first")
    usage: list[OpsUsageOut] = Field(description="The latest calls, newest first")
    audit: list[AuditOut]


class GrantOut(AuditOut):
    wallet_address: str
