"""The account view keeps itself current (every 15 s while visible), pages through long histories, and charts
a month of spend on more models than it has colours for (the top five and "other")."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from playwright.async_api import expect

from gateway import ledger
from gateway.accounts.wallets import get_or_create_account
from gateway.db.schema import llm_usage
from tests.browser.conftest import Ui
from tests.browser.test_flow import formatted_credits
from tests.conftest import ledger_on


async def _grant(ui: Ui, wallet: str, micros: int, reference: str) -> None:
    account = await get_or_create_account(ui.db, wallet)
    await ledger.post_entry(ui.db, account.id, micros, "admin_grant", f"browser-{account.id}-{reference}")


async def test_the_account_refreshes_itself_every_15_seconds(ui: Ui) -> None:
    wallet = ui.wallet()
    page = await ui.sign_in(wallet, clock=True)
    await expect(page.locator("#bal-credits")).to_have_text("0")
    await _grant(ui, wallet.address, 2_500_000, "refresh")
    await page.clock.fast_forward(16_000)
    await expect(page.locator("#bal-credits")).to_have_text("2,500")
    await expect(page.locator("#ledger-body tr").first).to_contain_text("Grant")


async def test_the_ledger_pages_ten_rows_at_a_time(ui: Ui) -> None:
    wallet = ui.wallet()
    page = await ui.sign_in(wallet)
    for n in range(1, 13):
        await _grant(ui, wallet.address, n * 1_000, str(n))
    await page.get_by_role("button", name="Refresh").click()
    pager = page.get_by_role("navigation", name="Ledger pages")
    rows = page.locator("#ledger-body tr")
    await expect(rows).to_have_count(10)
    await expect(rows.first).to_contain_text("+12")
    await expect(pager.get_by_role("button", name="Newer")).to_be_disabled()
    await pager.get_by_role("button", name="Older").click()
    await expect(rows).to_have_count(2)
    await expect(rows.last).to_contain_text("+1")
    await expect(pager).to_contain_text("Page 2")
    await expect(pager.get_by_role("button", name="Older")).to_be_disabled()
    await pager.get_by_role("button", name="Newer").click()
    await expect(rows).to_have_count(10)
    await expect(page.get_by_role("navigation", name="Usage pages")).to_be_hidden()  # one page: no controls


MONTH_MODELS = {"gpt-4o": 9_000, "claude-sonnet": 7_000, "gpt-4o-mini": 3_000, "gemini-flash": 2_000,
                "mistral-small": 1_000, "llama-3-8b": 400, "qwen-small": 300}  # fmt: skip


async def _seed_month(ui: Ui, wallet: str) -> dict[str, int]:
    """30 days of calls on seven models (none on some days): settled as the proxy settles them (usage row and
    ledger debit), then dated back, so the shared database's books stay balanced for every other test."""
    account = await get_or_create_account(ui.db, wallet)
    await _grant(ui, wallet, 5_000_000, "month-funds")  # 5,000 credits
    today = datetime.now(UTC).replace(hour=12, minute=0, second=0, microsecond=0)
    totals = dict.fromkeys(MONTH_MODELS, 0)
    async with ledger_on(ui.db) as book:
        for back in range(30):
            if back % 7 == 3:
                continue  # a quiet day
            for i, (model, price) in enumerate(MONTH_MODELS.items()):
                if (back + i) % 3 == 0:
                    charged = price * (1 + (back * 7 + i) % 5)
                    totals[model] += charged
                    request_id = f"month-{uuid.uuid4()}"
                    prompt, completion = 100 + back, 50 + i
                    call = ledger.Usage(
                        request_id, account.id, None, model, prompt, completion, charged // 2, charged, "2.0"
                    )
                    await book.settle(call)
                    async with ui.db.begin() as conn:
                        when = today - timedelta(days=back)
                        await conn.execute(
                            sa.update(llm_usage).where(llm_usage.c.request_id == request_id).values(created_at=when)
                        )
    return totals


async def test_a_month_of_seven_models_shows_the_top_five_and_other(ui: Ui) -> None:
    wallet = ui.wallet()
    page = await ui.sign_in(wallet)
    totals = await _seed_month(ui, wallet.address)
    await page.get_by_role("button", name="Refresh").click()
    table = page.locator("#chart-table table")
    await expect(table.locator("tbody tr")).to_have_count(30)
    names = (await table.locator("thead th").all_text_contents())[1:-1]
    dearest = sorted(totals, key=lambda m: -totals[m])
    assert names == [*dearest[:5], "other"]
    expected = [totals[m] for m in dearest[:5]] + [sum(totals[m] for m in dearest[5:])]
    assert await table.locator("tfoot td").all_text_contents() == [
        *(formatted_credits(v) for v in expected),
        formatted_credits(sum(totals.values())),
    ]
    await expect(page.locator("#chart-legend li")).to_have_count(6)
    spent = sum(totals.values())
    days_left = (5_000_000 - spent) * 30 // spent
    runway = f"At your last-30-day rate, this lasts about {days_left} days."
    await expect(page.locator("#bal-runway")).to_have_text(runway)
    await page.locator("#chart .hit[tabindex='0']").focus()
    await page.keyboard.press("Home")
    first_day = (await table.locator("tbody th").first.text_content()) or ""
    await expect(page.locator("#chart .hit:focus")).to_have_attribute("data-day", first_day)
    await expect(page.locator("#chart-detail")).to_contain_text(" credits, ")
    await ui.shoot(page, "09-activity-card", part=page.locator("#activity"))
    await ui.shoot(page, "09-activity-month")
    await ui.axe(page)
