"""Key-limit periods (UTC): where each starts, when it resets, and what a stale period's use counts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from gateway.core.limits import EPOCH, next_reset, period_start, used_in_period

WED = datetime(2026, 12, 30, 15, 30, tzinfo=UTC)


@pytest.mark.parametrize(
    ("reset", "start", "end"),
    [
        ("daily", datetime(2026, 12, 30, tzinfo=UTC), datetime(2026, 12, 31, tzinfo=UTC)),
        ("weekly", datetime(2026, 12, 28, tzinfo=UTC), datetime(2027, 1, 4, tzinfo=UTC)),
        ("monthly", datetime(2026, 12, 1, tzinfo=UTC), datetime(2027, 1, 1, tzinfo=UTC)),
        ("none", EPOCH, None),
    ],
)
def test_periods_start_and_end_on_utc_boundaries(reset, start, end):
    assert period_start(reset, WED) == start
    assert next_reset(reset, WED) == end


def test_a_non_utc_clock_is_read_in_utc():
    tokyo = WED.astimezone(timezone(timedelta(hours=9)))  # already Thursday there
    assert period_start("daily", tokyo) == datetime(2026, 12, 30, tzinfo=UTC)


def test_use_counted_in_an_ended_period_is_zero():
    assert used_in_period(500, datetime(2026, 12, 30, tzinfo=UTC), "daily", WED) == 500
    assert used_in_period(500, datetime(2026, 12, 29, tzinfo=UTC), "daily", WED) == 0
    assert used_in_period(500, None, "daily", WED) == 0
    assert used_in_period(500, EPOCH, "none", WED) == 500


def test_an_unknown_period_is_refused():
    with pytest.raises(ValueError):
        period_start("hourly", WED)
