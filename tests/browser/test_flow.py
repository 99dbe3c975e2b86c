"""The credits page end to end, as a wallet user goes through it: connect -> signed in at once -> first key
shown once -> top up $10 -> "confirming n of N" (surviving a reload) -> blocks mined -> credited ->
10,000 credits -> a call through the real proxy with that key -> its usage row -> create and revoke a
key -> sign out. Then the activity chart of those calls (two models).
Screenshots 01-08 of these states, and axe-core on each view."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor

import openai
import pytest
import sqlalchemy as sa
from playwright.async_api import expect

from devtools.fake_upstream import FakeUpstream
from devtools.proxy_process import ProxyProcess, free_port, write_test_config
from gateway.accounts.wallets import find_account
from gateway.config import Settings
from gateway.db.schema import llm_usage
from tests.browser.conftest import Ui, notice
from tests.browser.stack import MIN_CONFIRMATIONS, REDIS_URL


@pytest.fixture(scope="module")
def proxy(pg_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Future[ProxyProcess]]:
    """The real LiteLLM proxy on the run's database, started in the background (it takes a while)."""
    home = tmp_path_factory.mktemp("proxy")
    with FakeUpstream() as upstream, ThreadPoolExecutor(max_workers=1) as pool:
        settings = Settings(
            _env_file=None, gateway_home=home, database_url=pg_url, redis_url=REDIS_URL, proxy_port=free_port(),
            proxy_workers=1, litellm_master_key="sk-admin-browser-test",
        )  # fmt: skip
        process = ProxyProcess(settings, write_test_config(home, upstream.base_url), home / "proxy.log")
        started = pool.submit(process.start)
        yield started
        started.result()
        process.stop()


async def test_the_whole_flow(ui: Ui, proxy: Future[ProxyProcess]) -> None:
    wallet = ui.wallet()
    page = await ui.open(wallet)
    await expect(page.get_by_role("heading", name="Prepaid credits for LLM calls")).to_be_visible()
    await ui.shoot(page, "01-connect")
    await ui.axe(page)

    # connect: signed in at once, the first key shown once with a copy button
    await page.get_by_role("button", name="Connect wallet").click()
    await expect(page.get_by_role("heading", name="Your first API key")).to_be_visible()
    await expect(page.locator("#who-wallet")).to_have_text(f"{wallet.address[:6]}…{wallet.address[-4:]}")
    key = await page.locator("#newkey-value").input_value()
    assert key.startswith("sk-cg-")
    await page.get_by_role("button", name="Copy").click()
    await expect(page.locator("#newkey-copied")).to_have_text("Copied to the clipboard.")
    assert await page.evaluate("navigator.clipboard.readText()") == key
    await expect(page.locator("#bal-credits")).to_have_text("0")
    await ui.shoot(page, "02-signed-in-first-key")
    await ui.axe(page)
    await page.get_by_role("button", name="I have saved it").click()
    await expect(page.locator("#newkey")).to_be_hidden()
    await expect(page.locator("#keys-body tr")).to_have_count(1)

    # top up $10: the wallet sends the USDC transfer, the page confirms it
    await page.get_by_role("button", name="$10", exact=True).click()
    await expect(page.locator("#topup-amount")).to_have_value("10")
    await page.get_by_role("button", name="Pay 10.00 USDC").click()
    await expect(page.locator("#topup-state")).to_have_text(f"Confirming: 1 of {MIN_CONFIRMATIONS} confirmations.")
    tx = await page.locator("#topup-tx").text_content()
    assert tx and tx.startswith("0x") and len(tx) == 66
    await expect(page.get_by_role("button", name="Pay 10.00 USDC")).to_be_disabled()  # one top-up at a time
    await ui.shoot(page, "03-top-up-confirming")

    # a reload keeps the session and resumes confirming the same transaction
    await ui.goto(page)
    await expect(page.locator("#who-wallet")).to_be_visible()
    await expect(page.locator("#topup-state")).to_have_text(f"Confirming: 1 of {MIN_CONFIRMATIONS} confirmations.")
    await expect(page.locator("#topup-tx")).to_have_text(tx)
    ui.chain.mine(MIN_CONFIRMATIONS - 1)
    await expect(page.locator("#topup-state")).to_have_text("Credited: 10,000 credits from 10.00 USDC.")
    await expect(page.locator("#bal-credits")).to_have_text("10,000")
    await expect(page.get_by_role("button", name="Pay 10.00 USDC")).to_be_enabled()
    await expect(page.locator("#bal-usd")).to_have_text("$10.00 at 1,000 credits per USD")
    await expect(page.locator("#ledger-body tr").first).to_contain_text("USDC top-up")
    assert await page.evaluate("Object.keys(localStorage).filter((k) => k.startsWith('cg.topup.'))") == []
    await ui.shoot(page, "04-credited")

    # a call through the proxy with the first key; the page shows its usage row at its next refresh
    await expect(page.locator("#activity-empty")).to_contain_text("No calls in the last 30 days yet.")
    client = openai.AsyncOpenAI(base_url=(await asyncio.wrap_future(proxy)).base_url, api_key=key, max_retries=0)
    for model in ("gpt-4o-mini", "demo", "gpt-4o-mini"):
        await client.chat.completions.create(model=model, messages=[{"role": "user", "content": "hi"}], max_tokens=20)
    await page.get_by_role("button", name="Refresh").click()
    await expect(page.locator("#usage-body tr")).to_have_count(3)
    await expect(page.locator("#usage-body tr").first).to_contain_text("gpt-4o-mini")
    await expect(page.locator("#keys-body tr").first).not_to_contain_text("Never")

    # the activity chart: two series whose totals are what the calls were charged
    charged = await _charged_per_model(ui, wallet.address)
    assert set(charged) == {"gpt-4o-mini", "demo"}
    table = page.locator("#chart-table table")
    names = await table.locator("thead th").all_text_contents()
    assert sorted(names[1:-1]) == ["demo", "gpt-4o-mini"]
    totals = await table.locator("tfoot td").all_text_contents()
    assert dict(zip(names[1:-1], totals[:-1], strict=True)) == {m: formatted_credits(v) for m, v in charged.items()}
    assert totals[-1] == formatted_credits(sum(charged.values()))
    await expect(page.locator("#chart-legend li")).to_have_count(2)
    await expect(page.locator("#chart-summary")).to_contain_text("in 3 calls over the last 30 days")
    await expect(page.locator("#bal-runway")).to_have_text("At your last-30-day rate, this lasts more than ten years.")
    await page.locator("#chart .hit[tabindex='0']").focus()  # today's bar, where the keyboard enters
    day_total = formatted_credits(sum(charged.values()))
    await expect(page.locator("#chart-detail")).to_contain_text(f"{day_total} credits, 3 calls")
    await page.keyboard.press("ArrowLeft")
    await expect(page.locator("#chart-detail")).to_contain_text("0 credits, 0 calls")
    await ui.shoot(page, "05-usage-and-activity")
    await ui.axe(page)

    # create a key: shown once, then revoke it after confirming
    await page.get_by_label("Label for a new key").fill("laptop")
    await page.get_by_role("button", name="Create key").click()
    await expect(page.get_by_role("heading", name="Your new API key")).to_be_visible()
    assert (await page.locator("#newkey-value").input_value()).startswith("sk-cg-")
    await expect(page.locator("#keys-body tr")).to_have_count(2)
    await ui.shoot(page, "06-new-key")
    await page.get_by_role("button", name="I have saved it").click()
    await page.locator("#keys-body tr", has_text="laptop").get_by_role("button", name="Revoke").click()
    dialog = page.get_by_role("dialog", name="Revoke this key?")
    await expect(dialog).to_be_visible()
    await ui.shoot(page, "07-revoke-confirm")
    await ui.axe(page)
    await dialog.get_by_role("button", name="Revoke key").click()
    await expect(page.locator("#keys-body tr", has_text="laptop")).to_contain_text("Revoked")
    await expect(page.locator("#keys-body tr", has_text="default")).to_contain_text("Active")

    # sign out: back to connect, and a reload stays signed out without an error
    await page.get_by_role("button", name="Sign out").click()
    await expect(page.get_by_role("button", name="Connect wallet")).to_be_visible()
    await ui.goto(page)
    await expect(page.get_by_role("button", name="Connect wallet")).to_be_visible()
    await expect(notice(page)).to_be_hidden()
    await ui.shoot(page, "08-signed-out")


async def _charged_per_model(ui: Ui, wallet: str) -> dict[str, int]:
    account = await find_account(ui.db, wallet)
    async with ui.db.connect() as conn:
        rows = await conn.execute(
            sa.select(llm_usage.c.model, sa.func.sum(llm_usage.c.user_price_micros - llm_usage.c.uncollected_micros))
            .where(llm_usage.c.account_id == account.id)
            .group_by(llm_usage.c.model)
        )
        return {model: int(total) for model, total in rows}


def formatted_credits(micros: int) -> str:
    """Credits as the page writes them: grouped thousands, up to 3 decimals, no trailing zeros."""
    whole, fraction = divmod(micros, 1000)
    return f"{whole:,}" + (f".{fraction:03d}".rstrip("0") if fraction else "")
