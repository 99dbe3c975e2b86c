"""`gateway usage --daily`: an account's spend per UTC day as a rich table with a bar per day (the
sparkline of the activity chart, in the terminal). The JSON form is gateway.history_daily.as_document."""

from __future__ import annotations

from rich.table import Table

from gateway.accounts.history_daily import DailyUsage
from gateway.core.money import micros_to_credits

BAR_WIDTH = 24
_EIGHTHS = " ▏▎▍▌▋▊▉█"


def bar(value: int, largest: int, width: int = BAR_WIDTH) -> str:
    """`value` of `largest` as a bar of `width` cells, to an eighth of a cell (any spend shows at least that)."""
    if value <= 0 or largest <= 0:
        return ""
    eighths = max(1, value * width * 8 // largest)
    return "█" * (eighths // 8) + (_EIGHTHS[eighths % 8] if eighths % 8 else "")


def daily_table(usage: DailyUsage) -> Table:
    days = len(usage.days)
    average = micros_to_credits(usage.total.charged_micros // days)
    table = Table(
        title=f"Spend per day, {usage.first_day} to {usage.last_day}",
        caption=f"total {micros_to_credits(usage.total.charged_micros)} credits in {usage.total.calls} calls; "
        f"average {average} credits a day over {days} days",
    )  # fmt: skip
    table.add_column("day (UTC)")
    for heading in ("calls", "prompt", "completion", "credits"):
        table.add_column(heading, justify="right")
    table.add_column("")
    largest = max((d.total.charged_micros for d in usage.days), default=0)
    for day in usage.days:
        spend = day.total
        table.add_row(
            day.day.isoformat(), str(spend.calls), str(spend.prompt_tokens), str(spend.completion_tokens),
            micros_to_credits(spend.charged_micros), bar(spend.charged_micros, largest),
        )  # fmt: skip
    return table
