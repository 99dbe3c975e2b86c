"""Every message of issue 11's point 7, reached in the browser against the real sidecar and anvil: no wallet,
signature rejected, transaction rejected, wrong network (and the switch), not enough USDC, a payment the
gateway refuses (with its reason), the chain RPC down (503, then recovery), rate limited (429, with when
to retry) and an expired session. Also: several wallets announcing, and window.ethereum alone."""

from __future__ import annotations

import re

import sqlalchemy as sa
from playwright.async_api import expect

from gateway.db.auth_schema import sessions
from tests.browser.conftest import USDC, Ui, notice
from tests.browser.stack import MIN_CONFIRMATIONS, NONCES_PER_MINUTE

CONNECT = {"name": "Connect wallet"}


async def test_no_wallet_installed(ui: Ui) -> None:
    page = await ui.open()
    await page.get_by_role("button", **CONNECT).click()
    await expect(notice(page)).to_contain_text("No Ethereum wallet was found in this browser")
    await ui.shoot(page, "10-no-wallet")
    await ui.axe(page)


async def test_several_wallets_let_the_user_pick_one(ui: Ui) -> None:
    first, second = ui.wallet(name="Alpha Wallet"), ui.wallet(name="Beta Wallet")
    page = await ui.open(first, second)
    await page.get_by_role("button", **CONNECT).click()
    choices = page.get_by_role("group", name="Choose a wallet").get_by_role("button")
    await expect(choices).to_have_text(["Alpha Wallet", "Beta Wallet"])
    await ui.shoot(page, "11-pick-a-wallet")
    await choices.nth(1).click()
    await expect(page.locator("#who-wallet")).to_have_attribute("title", second.address)
    assert "personal_sign" in second.calls and "personal_sign" not in first.calls


async def test_window_ethereum_alone_is_used(ui: Ui) -> None:
    wallet = ui.wallet(legacy=True)
    page = await ui.open(wallet)
    await page.get_by_role("button", **CONNECT).click()
    await expect(page.locator("#who-wallet")).to_have_attribute("title", wallet.address)


async def test_signature_rejected(ui: Ui) -> None:
    wallet = ui.wallet(refuse={"personal_sign"})
    page = await ui.open(wallet)
    await page.get_by_role("button", **CONNECT).click()
    await expect(notice(page)).to_contain_text("You declined the sign-in signature, so you are not signed in.")
    await expect(page.get_by_role("button", **CONNECT)).to_be_visible()
    await ui.shoot(page, "12-signature-rejected")
    wallet.refuse.clear()  # the person changes their mind
    await page.get_by_role("button", **CONNECT).click()
    await expect(page.locator("#newkey")).to_be_visible()


async def test_wrong_network_offers_the_switch(ui: Ui) -> None:
    wallet = ui.wallet(chain_id=1)
    page = await ui.open(wallet)
    await page.get_by_role("button", **CONNECT).click()
    await expect(notice(page)).to_contain_text("Your wallet is on Ethereum (chain 1).")
    await expect(notice(page)).to_contain_text("on Base (chain 8453) only")
    await ui.shoot(page, "13-wrong-network")
    wallet.refuse.add("wallet_switchEthereumChain")
    await page.get_by_role("button", name="Switch to Base (chain 8453)").click()
    await expect(notice(page)).to_contain_text("The network switch was declined.")
    wallet.refuse.clear()
    await page.get_by_role("button", **CONNECT).click()
    await page.get_by_role("button", name="Switch to Base (chain 8453)").click()
    await expect(page.locator("#newkey")).to_be_visible()  # switched, then signed in at once
    assert wallet.chain_id == 8453


async def test_transaction_rejected(ui: Ui) -> None:
    wallet = ui.wallet(refuse={"eth_sendTransaction"})
    page = await ui.sign_in(wallet)
    await page.get_by_role("button", name="Pay 10.00 USDC").click()
    await expect(notice(page)).to_contain_text("You rejected the transaction in your wallet. No USDC was sent")
    await expect(page.locator("#topup-progress")).to_be_hidden()
    await ui.shoot(page, "14-transaction-rejected")


async def test_not_enough_usdc(ui: Ui) -> None:
    wallet = ui.wallet(usdc=5)
    page = await ui.sign_in(wallet)
    await page.get_by_role("button", name="Pay 10.00 USDC").click()
    await expect(notice(page)).to_contain_text(
        "Not enough USDC: this wallet holds 5.00 USDC on Base (chain 8453), and this top-up needs 10.00 USDC."
    )
    assert "eth_sendTransaction" not in wallet.calls
    await ui.shoot(page, "15-not-enough-usdc")


async def test_amount_outside_the_bounds_is_refused_on_the_page(ui: Ui) -> None:
    page = await ui.sign_in(ui.wallet())
    await page.get_by_label("Amount in US dollars").fill("100.01")
    await expect(page.locator("#topup-error")).to_have_text("Choose an amount from $1.00 to $100.00.")
    await page.get_by_label("Amount in US dollars").fill("ten")
    await expect(page.locator("#topup-error")).to_contain_text("Enter an amount in US dollars")
    await page.get_by_role("button", name="Pay in USDC").click()
    await expect(page.get_by_label("Amount in US dollars")).to_be_focused()


async def test_payment_refused_by_the_server_shows_its_reason(ui: Ui) -> None:
    """A transfer below the minimum, sent outside the page and resumed from localStorage: 422 with why."""
    ui.expect_statuses(422)
    wallet = ui.wallet()
    page = await ui.sign_in(wallet)
    tx = "0x" + ui.chain.usdc_transfer(wallet.account.key, ui.sidecar.dao, USDC // 2).hex()
    await page.evaluate(
        "([key, tx]) => localStorage.setItem(key, JSON.stringify({ tx, micros: '500000' }))",
        [f"cg.topup.{wallet.address.lower()}", tx],
    )
    await ui.goto(page)
    await expect(notice(page)).to_contain_text(
        "The gateway refused this payment: amount 0.5 USDC is outside the top-up bounds [1, 100] USDC."
    )
    await expect(page.locator("#topup-state")).to_have_text("This top-up was refused.")
    await ui.shoot(page, "16-payment-refused")


async def test_chain_rpc_down_then_back(ui: Ui) -> None:
    ui.expect_statuses(503)
    page = await ui.sign_in(ui.wallet())
    ui.sidecar.rpc.cut()
    await page.get_by_role("button", name="Pay 10.00 USDC").click()
    await expect(notice(page)).to_contain_text("The gateway cannot reach the blockchain right now")
    await expect(notice(page)).to_contain_text("this page tries again in 5 s")
    await ui.shoot(page, "17-chain-rpc-down")
    ui.sidecar.rpc.restore()
    ui.chain.mine(MIN_CONFIRMATIONS - 1)
    await expect(page.locator("#topup-state")).to_have_text("Credited: 10,000 credits from 10.00 USDC.", timeout=15_000)
    await expect(notice(page)).to_be_hidden()


async def test_rate_limited_says_when_to_retry(ui: Ui) -> None:
    ui.expect_statuses(429)
    page = await ui.open(ui.wallet())
    for _ in range(NONCES_PER_MINUTE):  # this browser's IP spends its nonces
        assert (await page.request.get(f"{ui.sidecar.url}/api/v1/auth/nonce")).ok
    await page.get_by_role("button", **CONNECT).click()
    await expect(notice(page)).to_have_text(re.compile(r"^Too many requests: please wait \d+ s, then try again\.$"))
    await ui.shoot(page, "18-rate-limited")


async def _expire_sessions(ui: Ui, wallet: str) -> None:
    async with ui.db.begin() as conn:
        await conn.execute(
            sa.update(sessions).where(sessions.c.wallet_address == wallet.lower()).values(expires_at=sa.func.now())
        )


async def test_session_expired_asks_to_sign_in_again(ui: Ui) -> None:
    ui.expect_statuses(401)
    wallet = ui.wallet()
    page = await ui.sign_in(wallet)
    expired = "Your session has expired. Connect your wallet to sign in again."
    await _expire_sessions(ui, wallet.address)
    await page.get_by_role("button", name="Refresh").click()  # while the page is open
    await expect(notice(page)).to_have_text(expired)
    await expect(page.locator("#account-view")).to_be_hidden()
    await ui.shoot(page, "19-session-expired")
    await page.get_by_role("button", name="Sign in again").click()
    await expect(page.locator("#account-view")).to_be_visible()
    await expect(page.locator("#newkey")).to_be_hidden()  # not a first sign-in: no new key
    await _expire_sessions(ui, wallet.address)
    await ui.goto(page)  # at the next visit
    await expect(notice(page)).to_have_text(expired)
    await expect(page.get_by_role("button", **CONNECT)).to_be_visible()


async def test_a_page_opened_at_another_host_says_where_to_open_it(ui: Ui) -> None:
    page = await ui.open(ui.wallet())
    domain = ui.sidecar.url.removeprefix("http://")
    await page.goto(ui.sidecar.url.replace("127.0.0.1", "localhost"))
    await expect(page.locator("body[data-ready=true]")).to_be_attached()
    await page.get_by_role("button", **CONNECT).click()
    await expect(notice(page)).to_have_text(
        f"This page must be opened at {domain} (the gateway's SIWE_DOMAIN) to sign in: open it there."
    )


async def test_paying_from_another_account_than_the_signed_in_one_is_stopped(ui: Ui) -> None:
    wallet = ui.wallet()
    page = await ui.sign_in(wallet)
    signed_in = wallet.address
    wallet.account = ui.wallet().account  # the person switches accounts in the wallet
    await page.get_by_role("button", name="Pay 10.00 USDC").click()
    await expect(notice(page)).to_have_text(
        f"Your wallet is using {wallet.address[:6]}…{wallet.address[-4:]}, but you are signed in as "
        f"{signed_in[:6]}…{signed_in[-4:]}. Switch to that account in your wallet, or sign out and sign in with "
        "this one."
    )
    assert "eth_sendTransaction" not in wallet.calls
