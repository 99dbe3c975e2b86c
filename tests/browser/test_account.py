"""The account view keeps itself current (every 15 s while visible) and pages through long histories."""

from __future__ import annotations

from playwright.async_api import expect

from gateway import ledger
from gateway.accounts import get_or_create_account
from tests.browser.conftest import Ui


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
