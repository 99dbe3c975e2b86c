"""Keyboard-only use of the credits page: connect, copy the first key, top up, create and revoke a key and
sign out with Tab, Shift+Tab and Enter alone; every control reached shows a visible focus outline."""

from __future__ import annotations

from playwright.async_api import Page, expect

from tests.browser.conftest import Ui
from tests.browser.stack import MIN_CONFIRMATIONS

FOCUSED = """() => {
  const el = document.activeElement;
  const style = getComputedStyle(el);
  return { text: (el.getAttribute("aria-label") || el.textContent || el.value || "").trim(), id: el.id,
           outline: style.outlineStyle !== "none" && parseFloat(style.outlineWidth) >= 2 };
}"""


async def focused(page: Page) -> dict:
    return await page.evaluate(FOCUSED)


async def tab_to(page: Page, text: str, limit: int = 40) -> None:
    """Press Tab until the focused control's name (or id, as #id) starts with `text`; it must show its focus."""
    for _ in range(limit):
        await page.keyboard.press("Tab")
        now = await focused(page)
        if now["text"].startswith(text) or f"#{now['id']}" == text:
            assert now["outline"], f"{text!r} has focus but no visible focus outline"
            return
    raise AssertionError(f"Tab never reached {text!r}; now at {now}")


async def test_keyboard_only(ui: Ui) -> None:
    page = await ui.open(ui.wallet())
    await page.keyboard.press("Tab")
    assert (await focused(page))["text"] == "Skip to content"
    await tab_to(page, "Connect wallet")
    await page.keyboard.press("Enter")
    await expect(page.locator("#newkey")).to_be_visible()
    assert (await focused(page))["id"] == "newkey-value"  # the key itself, selected, ready to copy
    await tab_to(page, "Copy", limit=1)
    await page.keyboard.press("Enter")
    await expect(page.locator("#newkey-copied")).to_have_text("Copied to the clipboard.")
    await tab_to(page, "I have saved it", limit=2)
    await page.keyboard.press("Enter")
    assert (await focused(page))["id"] == "key-label"

    await page.keyboard.press("Shift+Tab")  # back up into the page, then forward to the top-up amounts
    await tab_to(page, "$25")
    await page.keyboard.press("Enter")
    await tab_to(page, "Pay 25.00 USDC", limit=4)  # past $50, $100 and the amount field
    await page.keyboard.press("Enter")
    await expect(page.locator("#topup-state")).to_have_text(f"Confirming: 1 of {MIN_CONFIRMATIONS} confirmations.")

    await tab_to(page, "#key-label")
    await page.keyboard.type("keyboard")
    await page.keyboard.press("Enter")
    await expect(page.get_by_role("heading", name="Your new API key")).to_be_visible()
    await tab_to(page, "I have saved it", limit=3)
    await page.keyboard.press("Enter")
    await expect(page.locator("#keys-body tr")).to_have_count(2)
    await tab_to(page, "Revoke key sk-cg-")  # the default key's row comes first
    assert (await focused(page))["text"].endswith("default")
    await tab_to(page, "Revoke key sk-cg-", limit=1)
    assert (await focused(page))["text"].endswith("keyboard")
    async with page.expect_response("**/api/v1/keys"):  # a refresh (as every 15 s) must not take the focus away
        await page.evaluate("document.getElementById('refresh').click()")
    await expect(page.locator("[data-key-id]:focus")).to_have_count(1)
    assert (await focused(page))["text"].endswith("keyboard")
    await page.keyboard.press("Enter")
    dialog = page.get_by_role("dialog", name="Revoke this key?")
    await expect(dialog).to_be_visible()
    await tab_to(page, "Revoke key", limit=3)
    await page.keyboard.press("Enter")
    await expect(page.locator("#keys-body tr", has_text="keyboard")).to_contain_text("Revoked")

    await page.keyboard.press("Shift+Tab")
    for _ in range(60):  # back to the header's Sign out
        if (await focused(page))["text"] == "Sign out":
            break
        await page.keyboard.press("Shift+Tab")
    await page.keyboard.press("Enter")
    await expect(page.get_by_role("button", name="Connect wallet")).to_be_visible()
