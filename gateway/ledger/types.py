"""The ledger's vocabulary: what its operations take and return, and the errors they raise.

As in TigerBeetle: a *grant* credits an account (payment, admin grant, refund); a *hold* is a pending debit
that reserves credit for one request; a *settle* posts it (records `llm_usage`, debits the user price,
closes the hold); a *release* voids it; the sweeper *expires* a hold whose settle was lost.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, get_args

from gateway.db.schema import HoldStatus as HoldStatus  # the column's vocabulary, owned by the schema

Reason = Literal["adjustment", "admin_grant", "llm_usage", "onchain_payment", "refund"]  # sorted: the API's enum
REASONS = frozenset(get_args(Reason))
# $1e9 a write: far above any real top-up, far below BIGINT (SQLite would silently turn an overflow into a float)
MAX_ENTRY_MICROS = 10**15
MAX_MODEL_CHARS = 200  # the width of the model columns


class UnknownAccount(LookupError):
    pass


@dataclass(frozen=True)
class Balance:
    account_id: int
    balance_micros: int
    held_micros: int

    @property
    def available_micros(self) -> int:
        return self.balance_micros - self.held_micros


@dataclass(frozen=True)
class LedgerEntry:
    id: int
    account_id: int
    amount_micros: int
    balance_after_micros: int
    reason: str
    reference: str
    replayed: bool = False


class ReferenceReused(ValueError):
    """An idempotent write replayed with other parameters: its `(reason, reference)` already names `existing`,
    a write to another account or of another amount. An error, never the first write's result (Stripe answers a
    reused idempotency key the same way): the caller meant a new write and must choose a new reference."""

    def __init__(self, existing: LedgerEntry, account_id: int, amount_micros: int) -> None:
        super().__init__(
            f"reference {existing.reference!r} was already used for {existing.reason} of {existing.amount_micros} "
            f"micros to account {existing.account_id} (not {amount_micros} micros to account {account_id})"
        )
        self.existing = existing


@dataclass(frozen=True)
class Hold:
    request_id: str
    account_id: int
    amount_micros: int
    balance_micros: int
    held_micros: int  # account's total held after this hold


@dataclass(frozen=True)
class Usage:
    """What a finished call cost: the facts `settle` records."""

    request_id: str
    account_id: int
    key_id: int | None
    model: str
    prompt_tokens: int
    completion_tokens: int
    provider_cost_micros: int
    user_price_micros: int
    markup: str
    streamed: bool = False
    cost_source: str = "litellm"
    route: str | None = None  # the billed API; None in settles spooled before it was recorded

    def row(self, uncollected_micros: int) -> dict[str, Any]:
        """The `llm_usage` row that records this call (both ledger implementations insert exactly this)."""
        return {
            "request_id": self.request_id,
            "account_id": self.account_id,
            "key_id": self.key_id,
            "model": self.model[:MAX_MODEL_CHARS],
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.prompt_tokens + self.completion_tokens,
            "provider_cost_micros": self.provider_cost_micros,
            "user_price_micros": self.user_price_micros,
            "uncollected_micros": uncollected_micros,
            "markup": self.markup,
            "streamed": self.streamed,
            "cost_source": self.cost_source,
            "route": self.route,
        }


@dataclass(frozen=True)
class Settlement:
    request_id: str
    user_price_micros: int  # what the call cost at user prices
    balance_after_micros: int
    replayed: bool
    uncollected_micros: int = 0  # the part of the price above what the account could be charged (operator loss)

    @property
    def charged_micros(self) -> int:
        return self.user_price_micros - self.uncollected_micros


@dataclass(frozen=True, slots=True)
class HoldRequest:
    """One hold to place, as `Ledger.hold` hands it to its backend: `amount` (or, with a `floor`, as much of it
    as is available, at least `floor`), counted in the period of `now` of a key with a limit."""

    account_id: int
    request_id: str
    amount: int
    floor: int | None
    expires_at: datetime
    key_id: int | None
    model: str
    now: datetime
