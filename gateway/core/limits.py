"""Per-key credit limits, free of any database: reset periods (UTC), when a period starts and ends, what a
key has used in the current period, and the error a hold over the limit raises.

A key's limit counts everything it holds or spends in a period: a hold adds its amount, a settle below the
hold gives the difference back, a release gives the whole hold back. The ledger writes the counter in the
same conditional write as the hold (gateway/ledger/), so concurrent calls never pass the limit; it counts only
for a key with a limit (the use of one without is read from its calls: gateway/accounts/keys.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from gateway.core.money import micros_to_credits


class Reset(StrEnum):
    """`virtual_keys.limit_reset`: how often a key's period use starts again from zero (UTC boundaries)."""

    NONE = "none"
    DAILY = "daily"
    WEEKLY = "weekly"  # Monday 00:00 UTC
    MONTHLY = "monthly"  # the 1st, 00:00 UTC


# The one period of a key whose limit never resets (and of keys without a limit).
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class PeriodStarts:
    """The start of the current period for each reset kind, at one instant: what the ledger's statements pick
    from by the key's `limit_reset` (one clock for the whole write)."""

    daily: datetime
    weekly: datetime
    monthly: datetime
    none: datetime = EPOCH

    @classmethod
    def at(cls, now: datetime) -> PeriodStarts:
        day = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        return cls(daily=day, weekly=day - timedelta(days=day.weekday()), monthly=day.replace(day=1))

    def of(self, reset: str) -> datetime:
        return {Reset.DAILY: self.daily, Reset.WEEKLY: self.weekly, Reset.MONTHLY: self.monthly}.get(
            Reset(reset), self.none
        )


def period_start(reset: str, now: datetime) -> datetime:
    return PeriodStarts.at(now).of(reset)


def next_reset(reset: str, now: datetime) -> datetime | None:
    """When the current period ends (None: it never does)."""
    start = period_start(reset, now)
    if reset == Reset.DAILY:
        return start + timedelta(days=1)
    if reset == Reset.WEEKLY:
        return start + timedelta(days=7)
    if reset == Reset.MONTHLY:
        return (
            start.replace(year=start.year + 1, month=1) if start.month == 12 else start.replace(month=start.month + 1)
        )
    return None


def used_in_period(used_micros: int, counted_since: datetime | None, reset: str, now: datetime) -> int:
    """A key's stored period use, or 0 when it was counted in a period that has ended."""
    if counted_since is None:
        return 0
    return used_micros if counted_since.astimezone(UTC) == period_start(reset, now) else 0


@dataclass(frozen=True)
class KeyLimit:
    """A key's limit as seen at one instant."""

    limit_micros: int | None
    reset: str
    used_micros: int
    resets_at: datetime | None

    @property
    def remaining_micros(self) -> int | None:
        return None if self.limit_micros is None else max(self.limit_micros - self.used_micros, 0)

    def as_doc(self) -> dict[str, Any]:
        """The limit as the CLI, the sidecar and the proxy's GET /v1/key show it (micros and credits)."""
        remaining = self.remaining_micros
        return {
            "limit_micros": self.limit_micros,
            "limit_credits": None if self.limit_micros is None else micros_to_credits(self.limit_micros),
            "limit_reset": self.reset,
            "usage_micros": self.used_micros,
            "usage_credits": micros_to_credits(self.used_micros),
            "limit_remaining_micros": remaining,
            "limit_remaining_credits": None if remaining is None else micros_to_credits(remaining),
            "resets_at": self.resets_at.isoformat() if self.resets_at else None,
        }


def key_limit(
    limit_micros: int | None, reset: str, used_micros: int, counted_since: datetime | None, now: datetime
) -> KeyLimit:
    return KeyLimit(limit_micros, reset, used_in_period(used_micros, counted_since, reset, now), next_reset(reset, now))


class KeyLimitExceeded(Exception):
    """The key's limit for this period does not cover the requested hold."""

    def __init__(self, limit: KeyLimit, requested_micros: int) -> None:
        self.limit = limit
        self.requested_micros = requested_micros
        super().__init__(limit_message(limit, requested_micros))


def limit_message(limit: KeyLimit, requested_micros: int) -> str:
    assert limit.limit_micros is not None
    per = "" if limit.reset == Reset.NONE else f" per {_PERIOD_NAMES[Reset(limit.reset)]}"
    resets = f"it resets at {limit.resets_at.isoformat()}" if limit.resets_at else "it does not reset"
    return (
        f"This key's credit limit is {micros_to_credits(limit.limit_micros)} credits{per}; "
        f"{micros_to_credits(limit.used_micros)} credits are used (held or spent) this period and this call "
        f"needs up to {micros_to_credits(requested_micros)} credits; {resets}. "
        "Raise the limit with `gateway keys set-limit` or PATCH /api/v1/keys/{id}, lower max_tokens, or wait."
    )


_PERIOD_NAMES = {Reset.DAILY: "day (UTC)", Reset.WEEKLY: "week (from Monday, UTC)", Reset.MONTHLY: "month (UTC)"}
