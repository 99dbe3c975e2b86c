"""Pydantic types shared by more than one route module: key views and the text/cursor constraints.

Constraints are expressed in the JSON schema (lengths, patterns) so the OpenAPI document says exactly
what is accepted.
"""

from __future__ import annotations

import re
from datetime import datetime
from decimal import Decimal
from typing import Annotated

from pydantic import AfterValidator, BaseModel, Field

from gateway.accounts.keys import KeyInfo, NewKey
from gateway.core.limits import Reset
from gateway.core.money import MICROS_PER_CREDIT

MAX_ID = 2**63 - 1  # BIGINT
CURSOR_PATTERN = r"^[0-9]{1,18}$"


def iso_day(value: object) -> object:
    """Only YYYY-MM-DD: pydantic alone would also take a number as a Unix timestamp (a BeforeValidator)."""
    if value is not None and not (isinstance(value, str) and re.fullmatch(r"\d{4}-\d{2}-\d{2}", value)):
        raise ValueError("expected a day as YYYY-MM-DD")
    return value


def _encodable(value: str) -> str:
    value.encode("utf-8")  # lone surrogates cannot be stored; UnicodeEncodeError is a ValueError -> 422
    return value


PlainText = Annotated[str, Field(pattern=r"^[^\x00-\x1f\x7f]*$"), AfterValidator(_encodable)]
# a key limit (or threshold) in credits, as a decimal string: at most 3 decimals (one micro), below 1e12 credits
LimitCredits = Annotated[
    str, Field(pattern=r"^[0-9]{1,12}(\.[0-9]{1,3})?$", description="Credits as a decimal string (1 = $0.001)")
]


def limit_micros(credits: str | None) -> int | None:
    return None if credits is None else int(Decimal(credits) * MICROS_PER_CREDIT)


class KeyOut(BaseModel):
    id: int
    prefix: str = Field(description="The first characters of the key, to tell keys apart")
    label: str
    active: bool
    created_at: datetime | None
    revoked_at: datetime | None
    limit_micros: int | None = Field(description="Most the key may hold or spend per period (null: no limit)")
    limit_credits: str | None
    limit_reset: Reset = Field(description="When the key's period use starts again, UTC")
    usage_micros: int = Field(description="What the key holds or spent in the current period")
    usage_credits: str
    limit_remaining_micros: int | None
    limit_remaining_credits: str | None
    resets_at: datetime | None = Field(description="When the current period ends (null: it does not)")
    last_used_at: datetime | None = Field(default=None, description="The key's latest billed call; null if none")

    @classmethod
    def of(cls, info: KeyInfo, last_used_at: datetime | None = None) -> KeyOut:
        return cls(
            id=info.id,
            prefix=info.prefix,
            label=info.label,
            active=info.active,
            created_at=info.created_at,
            revoked_at=info.revoked_at,
            last_used_at=last_used_at,
            **info.limit.as_doc(),
        )


class NewKeyOut(KeyOut):
    key: str = Field(description="The raw API key. Shown only in this response: store it now")

    @classmethod
    def of_new(cls, new: NewKey) -> NewKeyOut:
        return cls(**KeyOut.of(new.info).model_dump(), key=new.raw_key)
