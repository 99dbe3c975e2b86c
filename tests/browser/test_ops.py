"""The operator console (/ops) in the browser: an operator signs in with the same SIWE flow, sees the figures of
a seeded range (each checked against a SQL sum), finds an account, grants, freezes (the user's page then says
so), revokes a key, runs reconcile, and sees each action in the audit list; keyboard only too. Any other wallet
gets the 403 page. axe-core on each view; screenshots at 1280 and 360 px (ops-*.png; copies in docs/images/)."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, time, timedelta

import sqlalchemy as sa
from playwright.async_api import Page, expect

from gateway import ledger
from gateway.accounts.wallets import find_account
from gateway.db.ops_schema import ops_audit
from gateway.db.schema import credit_holds, credit_ledger, llm_usage
from tests.browser.conftest import OPERATOR, Ui
from tests.browser.test_keyboard import tab_to
from tests.browser.wallet import TestWallet
from tests.conftest import ledger_on

FIRST = date(2003, 5, 1)  # a range only this module writes calls into
LAST = FIRST + timedelta(days=2)
CALLS = [
    (FIRST, "gpt-4o", 400, 1_000, 2_000),
    (FIRST, "gpt-4o-mini", 30, 90, 2_000),
    (LAST, "gpt-4o", 500, 1_500, 1_000),
]


async def _seed_calls(ui: Ui, wallet: str) -> None:
    """Settled calls dated in FIRST..LAST (the last one above its hold: 500 micros uncollected)."""
    account = await find_account(ui.db, wallet)
    assert account is not None
    await ledger.post_entry(ui.db, account.id, 1_000_000, "admin_grant", f"browser-ops-{account.id}")
    async with ledger_on(ui.db) as book:
        for day, model, cost, price, held in CALLS:
            request_id = f"ops-{uuid.uuid4()}"
            await book.hold(account.id, request_id, held)
            await book.settle(ledger.Usage(request_id, account.id, None, model, 9, 9, cost, price, "2.0"))
            moment = datetime.combine(day, time(9), tzinfo=UTC)
            async with ui.db.begin() as conn:
                await conn.execute(
                    sa.update(llm_usage).where(llm_usage.c.request_id == request_id).values(created_at=moment)
                )
                await conn.execute(
                    sa.update(credit_holds).where(credit_holds.c.request_id == request_id).values(created_at=moment)
                )


async def _sql_charged(ui: Ui) -> int:
    since = datetime.combine(FIRST, time.min, tzinfo=UTC)
    until = datetime.combine(LAST + timedelta(days=1), time.min, tzinfo=UTC)
    u = llm_usage
    async with ui.db.connect() as conn:
        return (
            await conn.execute(
                sa.select(sa.func.sum(u.c.user_price_micros - u.c.uncollected_micros)).where(
                    u.c.created_at >= since, u.c.created_at < until
                )
            )
        ).scalar_one()


async def _balance(ui: Ui, wallet: str) -> int:
    account = await find_account(ui.db, wallet)
    assert account is not None
    async with ui.db.connect() as conn:
        q = sa.select(sa.func.sum(credit_ledger.c.amount_micros)).where(credit_ledger.c.account_id == account.id)
        return (await conn.execute(q)).scalar_one()


async def _open_console(ui: Ui, wallet: TestWallet) -> Page:
    page = await ui.open(wallet)
    await page.goto(f"{ui.sidecar.url}/ops")
    await expect(page.locator("body[data-ready=true]")).to_be_attached()
    return page


async def test_the_operator_console(ui: Ui) -> None:
    user = ui.wallet()
    user_page = await ui.sign_in(user)
    await _seed_calls(ui, user.address)

    page = await _open_console(ui, ui.wallet(account=OPERATOR))
    await expect(page.get_by_role("heading", name="Operator console")).to_be_visible()
    await ui.axe(page)
    await page.get_by_role("button", name="Connect wallet").click()
    await expect(page.locator("#console-view")).to_be_visible()

    # the business of the seeded range: the charged total is the SQL sum, the uncollected 500 micros shown
    await page.locator("#range-first").fill(FIRST.isoformat())
    await page.locator("#range-last").fill(LAST.isoformat())
    await page.get_by_role("button", name="Show").click()
    charged = await _sql_charged(ui)
    await expect(page.locator("#business-totals")).to_have_attribute("data-charged", str(charged))
    assert charged == 1_000 + 90 + 1_000  # the last call was held 1,000 of its 1,500
    totals = page.locator("#business-totals")
    await expect(totals).to_contain_text("Uncollected$0.0005")
    await expect(totals).to_contain_text("Provider cost$0.00093")
    await expect(page.locator("#models-body tr")).to_have_count(2)
    await expect(page.locator("#chart-table")).to_contain_text("gpt-4o-mini")
    await expect(page.locator("#outcomes")).to_contain_text("3 settled")
    await ui.axe(page)

    # find the user's account: balance as the ledger sums it
    await page.locator("#search-wallet").fill(user.address)
    await page.get_by_role("button", name="Search").click()
    await expect(page.locator("#account-figures")).to_have_attribute(
        "data-balance", str(await _balance(ui, user.address))
    )
    await expect(page.locator("#keys-body tr")).to_have_count(1)
    await expect(page.locator("#usage-body tr")).to_have_count(3)

    # grant: refused without a reason, then done once
    await page.locator("#grant-amount").fill("5")
    await page.get_by_role("button", name="Grant credits").click()
    await expect(page.locator("#action-error")).to_contain_text("Give a reason")
    await page.locator("#action-reason").fill("support ticket 42")
    before = await _balance(ui, user.address)
    await page.get_by_role("button", name="Grant credits").click()
    await expect(page.locator("#status")).to_have_text("Granted $5.00.")
    assert await _balance(ui, user.address) == before + 5_000_000
    await expect(page.locator("#account-figures")).to_have_attribute("data-balance", str(before + 5_000_000))

    # freeze: the badge here, and the user's own page says so
    await page.get_by_role("button", name="Freeze account").click()
    await expect(page.locator("#account-frozen")).to_contain_text("Frozen since")
    await ui.goto(user_page)
    await expect(user_page.get_by_role("heading", name="This account is frozen")).to_be_visible()
    await ui.shoot(user_page, "ops-user-frozen")

    # revoke the user's key
    await page.get_by_role("button", name="Revoke").click()
    await expect(page.locator("#keys-body tr").first).to_contain_text("revoked")

    # reconcile now: its findings listed, and in the books
    await page.get_by_role("button", name="Run reconcile now").click()
    await expect(page.locator("#reconcile-result")).to_contain_text("accounts")
    await expect(page.locator("#books-figures")).not_to_contain_text("never from here")

    audit = page.locator("#audit-body")
    for action in ("grant $5.00", "freeze", "revoke key", "reconcile"):
        await expect(audit).to_contain_text(action)
    async with ui.db.connect() as conn:
        rows = (
            (
                await conn.execute(
                    sa.select(ops_audit.c.action).where(ops_audit.c.operator_wallet == OPERATOR.address.lower())
                )
            )
            .scalars()
            .all()
        )
    assert {"grant", "freeze", "revoke_key", "reconcile"} <= set(rows)
    await ui.axe(page)
    await ui.shoot(page, "ops-console")


async def test_a_user_wallet_gets_the_403_page(ui: Ui) -> None:
    ui.expect_statuses(403)
    page = await _open_console(ui, ui.wallet())
    await page.get_by_role("button", name="Connect wallet").click()
    await expect(page.get_by_role("heading", name="403: not an operator")).to_be_visible()
    await expect(page.locator("#console-view")).to_be_hidden()
    await ui.axe(page)
    await ui.shoot(page, "ops-forbidden")
    await page.get_by_role("button", name="Sign out").click()
    await expect(page.get_by_role("button", name="Connect wallet")).to_be_visible()


async def test_the_console_by_keyboard_alone(ui: Ui) -> None:
    user = ui.wallet()
    await ui.sign_in(user)
    page = await _open_console(ui, ui.wallet(account=OPERATOR))
    await tab_to(page, "Connect wallet")
    await page.keyboard.press("Enter")
    await expect(page.locator("#console-view")).to_be_visible()
    await tab_to(page, "#search-wallet", limit=80)
    await page.keyboard.type(user.address)
    await page.keyboard.press("Enter")
    await expect(page.locator("#account")).to_be_visible()
    await tab_to(page, "#action-reason", limit=10)
    await page.keyboard.type("keyboard grant")
    await tab_to(page, "#grant-amount", limit=5)
    await page.keyboard.press("Control+a")
    await page.keyboard.type("1.5")
    await tab_to(page, "Grant credits", limit=2)
    await page.keyboard.press("Enter")
    await expect(page.locator("#status")).to_have_text("Granted $1.50.")
    await expect(page.locator("#audit-body")).to_contain_text("grant $1.50")
