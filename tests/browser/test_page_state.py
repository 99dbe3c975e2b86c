"""The page's own behaviour around its state: the pager moves only once a page loaded and handles a failed
load and a 401 like every other action; refreshes never overlap; what the status line and the disabled Pay
button show; the signed-out page links the price list."""

from __future__ import annotations

import asyncio

from playwright.async_api import Route, expect

from tests.browser.conftest import Ui, notice
from tests.browser.test_account import _grant
from tests.browser.test_messages import _expire_sessions


async def _two_pages_of_ledger(ui: Ui):
    wallet = ui.wallet()
    page = await ui.sign_in(wallet)
    for n in range(1, 13):
        await _grant(ui, wallet.address, n * 1_000, f"pager-{n}")
    await page.get_by_role("button", name="Refresh").click()
    await expect(page.locator("#ledger-body tr")).to_have_count(10)
    return wallet, page, page.get_by_role("navigation", name="Ledger pages")


async def test_a_page_that_fails_to_load_leaves_the_pager_where_it_was(ui: Ui) -> None:
    ui.expect_statuses(503)
    _, page, pager = await _two_pages_of_ledger(ui)

    async def unavailable(route: Route) -> None:
        await route.fulfill(status=503, json={"error": {"code": "unavailable", "message": "down"}})

    await page.route("**/api/v1/credits/ledger?*cursor=*", unavailable)
    await pager.get_by_role("button", name="Older").click()
    await expect(notice(page)).to_have_text("The gateway is temporarily unavailable. Try again in a moment.")
    await expect(pager).to_contain_text("Page 1")  # not "Page 2" over page 1's rows
    await expect(page.locator("#ledger-body tr")).to_have_count(10)
    await expect(pager.get_by_role("button", name="Older")).to_be_enabled()
    await page.unroute("**/api/v1/credits/ledger?*cursor=*")
    await pager.get_by_role("button", name="Older").click()
    await expect(pager).to_contain_text("Page 2")
    await expect(page.locator("#ledger-body tr")).to_have_count(2)


async def test_a_401_while_paging_asks_to_sign_in_again(ui: Ui) -> None:
    ui.expect_statuses(401)
    wallet, page, pager = await _two_pages_of_ledger(ui)
    await _expire_sessions(ui, wallet.address)
    await pager.get_by_role("button", name="Older").click()
    await expect(notice(page)).to_have_text("Your session has expired. Connect your wallet to sign in again.")
    await expect(page.get_by_role("button", name="Sign in again")).to_be_visible()
    await expect(page.locator("#account-view")).to_be_hidden()


async def test_refreshes_never_overlap(ui: Ui) -> None:
    page = await ui.sign_in(ui.wallet())
    in_flight, most = 0, 0

    async def slow(route: Route) -> None:
        nonlocal in_flight, most
        in_flight += 1
        most = max(most, in_flight)
        await asyncio.sleep(0.5)
        await route.continue_()
        in_flight -= 1

    await page.route("**/api/v1/credits/summary", slow)
    for _ in range(4):  # clicks, visibility changes and the timer alike call the one refresh
        await page.get_by_role("button", name="Refresh").click()
    await page.wait_for_timeout(2_500)
    assert most == 1


async def test_after_sign_in_the_status_line_is_empty_and_takes_no_room(ui: Ui) -> None:
    page = await ui.sign_in(ui.wallet())
    status = page.locator("#status")
    await expect(status).to_have_text("")
    assert (await status.bounding_box())["height"] == 0
    await expect(page.locator("#who")).to_contain_text("Signed in as")


async def test_the_disabled_pay_button_keeps_its_colours_under_the_pointer(ui: Ui) -> None:
    page = await ui.sign_in(ui.wallet())
    pay = page.locator("#topup-pay")
    await pay.evaluate("(button) => { button.disabled = true; }")
    colours = "(b) => [getComputedStyle(b).backgroundColor, getComputedStyle(b).color]"
    before = await pay.evaluate(colours)
    await pay.hover(force=True)
    assert await pay.evaluate(colours) == before == ["rgb(228, 228, 231)", "rgb(82, 82, 91)"]


async def test_the_signed_out_page_links_the_price_list(ui: Ui) -> None:
    page = await ui.open(ui.wallet())
    link = page.get_by_role("link", name="the price list")
    await expect(link).to_be_visible()
    assert (await link.get_attribute("href")).endswith("/api/v1/models")
