"""Browser tests of the credits page: one headless Debian chromium and one real sidecar (on the run's
PostgreSQL, Redis and anvil) for this package, both gone when its last test ends, and per test a fresh
browser context with injected test wallets, a fresh wallet key (so tests share the database without
seeing each other) and the `chain` snapshot.

`ui` is the per-test handle: open the page with wallets, sign in, take screenshots at 1280 and 360 px
(under $BROWSER_SHOTS_DIR, default .test-output/screenshots), run axe-core, and at the end check that the
page logged no console error other than the HTTP statuses the test said it expects.
"""

from __future__ import annotations

import itertools
import os
import re
import secrets
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from eth_account import Account
from playwright.async_api import Browser, BrowserContext, Locator, Page, async_playwright, expect
from sqlalchemy.ext.asyncio import AsyncEngine
from web3 import Web3

from devtools.chain.anvil import Anvil
from devtools.forwarder import TcpForwarder
from tests.browser.stack import REPO_ROOT, Sidecar, start_sidecar
from tests.browser.wallet import TestWallet, install

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 360, "height": 780}
USDC = 1_000_000
SHOTS_DIR = Path(os.environ.get("BROWSER_SHOTS_DIR", REPO_ROOT / ".test-output" / "screenshots"))
AXE_SOURCE = (REPO_ROOT / "node_modules" / "axe-core" / "axe.min.js").read_text()
_NETWORK_ERROR = re.compile(r"^Failed to load resource: the server responded with a status of (\d{3})")
_SIDEWAYS = "document.documentElement.scrollWidth - document.documentElement.clientWidth"
_NEXT_FRAMES = "new Promise((done) => requestAnimationFrame(() => requestAnimationFrame(done)))"
_client_ips = (f"198.51.100.{n}" for n in itertools.cycle(range(1, 255)))  # TEST-NET-2: a header value only

OPERATOR = Account.create()  # the one wallet in the test sidecar's OPERATOR_WALLETS

os.environ.setdefault("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")


@pytest.fixture(scope="package")
async def browser() -> AsyncIterator[Browser]:
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"{CHROMIUM} is missing: `make test` installs it (apt-get install chromium)")
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield launched
        await launched.close()


@pytest.fixture(scope="package")
def sidecar(pg_url: str, anvil: Anvil, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sidecar]:
    dao = Web3.to_checksum_address("0x" + secrets.token_hex(20))
    with TcpForwarder("127.0.0.1", anvil.port) as rpc:
        home = tmp_path_factory.mktemp("sidecar")
        started = start_sidecar(pg_url, anvil, rpc, home, dao, operators=(OPERATOR.address,))
        yield started
        started.stop()


class Ui:
    def __init__(self, browser: Browser, sidecar: Sidecar, chain: Anvil, db: AsyncEngine):
        self.browser = browser
        self.sidecar = sidecar
        self.chain = chain
        self.db = db
        self.expected_statuses: set[int] = set()
        self.console_errors: list[str] = []
        self.contexts: list[BrowserContext] = []

    def wallet(self, usdc: int = 500, **fields: Any) -> TestWallet:
        """A new test wallet holding ETH for gas and `usdc` whole test USDC."""
        return TestWallet(self.chain, **fields).fund(usdc * USDC)

    async def open(self, *wallets: TestWallet, viewport: dict[str, int] = DESKTOP, clock: bool = False) -> Page:
        """The page in a fresh context (its own cookies, storage and client IP) with these wallets injected;
        `clock`: with Playwright's controllable clock installed (then `page.clock.fast_forward`)."""
        context = await self.browser.new_context(
            viewport=viewport, extra_http_headers={"X-Forwarded-For": next(_client_ips)}
        )
        await context.grant_permissions(["clipboard-read", "clipboard-write"], origin=self.sidecar.url)
        self.contexts.append(context)
        if wallets:
            await install(context, list(wallets))
        if clock:
            await context.clock.install()
        page = await context.new_page()
        page.on("console", lambda message: message.type == "error" and self.console_errors.append(message.text))
        page.on("pageerror", lambda error: self.console_errors.append(f"uncaught: {error}"))
        await self.goto(page)
        return page

    async def goto(self, page: Page) -> None:
        await page.goto(self.sidecar.url)
        await expect(page.locator("body[data-ready=true]")).to_be_attached()

    async def sign_in(self, wallet: TestWallet, clock: bool = False) -> Page:
        """Open the page with `wallet`, connect and sign in, and put the first key away."""
        page = await self.open(wallet, clock=clock)
        await page.get_by_role("button", name="Connect wallet").click()
        await expect(page.locator("#newkey")).to_be_visible()
        await page.get_by_role("button", name="I have saved it").click()
        return page

    def expect_statuses(self, *statuses: int) -> None:
        """HTTP error statuses the test provokes: their "Failed to load resource" console lines are expected."""
        self.expected_statuses.update(statuses)

    async def shoot(self, page: Page, name: str, part: Locator | None = None) -> None:
        """Screenshots `name-1280.png` and `name-360.png` (the full page, or one `part` of it); at 360 px
        nothing may scroll sideways."""
        SHOTS_DIR.mkdir(parents=True, exist_ok=True)  # noqa: ASYNC240 (a test's folder, once: not worth a thread)
        original = page.viewport_size
        for size in (DESKTOP, PHONE):
            await page.set_viewport_size(size)
            await page.evaluate(_NEXT_FRAMES)  # the page's resize observers (the chart) redraw first
            overflow = await page.evaluate(_SIDEWAYS)
            assert overflow <= 0, f"{name}: the page scrolls sideways by {overflow}px at {size['width']}px"
            path = SHOTS_DIR / f"{name}-{size['width']}.png"
            await (part.screenshot(path=path) if part else page.screenshot(path=path, full_page=True))
        await page.set_viewport_size(original)

    async def axe(self, page: Page) -> None:
        """axe-core on the page as it is now: no serious or critical violation."""
        await page.evaluate(AXE_SOURCE)
        violations = await page.evaluate(
            """async () => (await axe.run(document, { resultTypes: ["violations"] })).violations
                .filter((v) => v.impact === "serious" || v.impact === "critical")
                .map((v) => `${v.id}: ${v.help} (${v.nodes.map((n) => n.target.join(" ")).join(", ")})`)"""
        )
        assert violations == [], violations

    def unexpected_console_errors(self) -> list[str]:
        def expected(text: str) -> bool:
            match = _NETWORK_ERROR.match(text)
            return bool(match) and int(match.group(1)) in self.expected_statuses

        return [text for text in self.console_errors if not expected(text)]


@pytest.fixture
async def ui(browser: Browser, sidecar: Sidecar, chain: Anvil, db: AsyncEngine) -> AsyncIterator[Ui]:
    handle = Ui(browser, sidecar, chain, db)
    try:
        yield handle
    finally:
        for context in handle.contexts:
            await context.close()
        sidecar.rpc.restore()
    assert handle.unexpected_console_errors() == [], "the page logged console errors"


def notice(page: Page) -> Locator:
    return page.locator("#notice-text")
