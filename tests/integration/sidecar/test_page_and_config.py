"""The credits page as served (strict CSP, caching, no inline code, shipped in the package), the public
GET /api/v1/config, and keys' "last used" time."""

from __future__ import annotations

import re
import tomllib
import uuid
from decimal import Decimal
from fnmatch import fnmatch
from html.parser import HTMLParser

from gateway import ledger
from gateway.config import REPO_ROOT
from gateway.sidecar.app import create_app
from gateway.sidecar.routes.page import CONTENT_SECURITY_POLICY, STATIC_DIR
from tests.integration.sidecar.conftest import client_for, running, sign_in


async def test_the_page_is_served_with_a_strict_policy_and_revalidated(client):
    page = await client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    csp = page.headers["content-security-policy"]
    assert csp == CONTENT_SECURITY_POLICY
    for directive in ("default-src 'none'", "script-src 'self'", "style-src 'self'", "connect-src 'self'",
                      "base-uri 'none'", "form-action 'none'", "frame-ancestors 'none'"):  # fmt: skip
        assert directive in csp
    assert "unsafe" not in csp
    assert page.headers["x-content-type-options"] == "nosniff"
    assert page.headers["referrer-policy"] == "no-referrer"
    assert page.headers["cache-control"] == "no-cache"  # cacheable, revalidated
    again = await client.get("/", headers={"If-None-Match": page.headers["etag"]})
    assert again.status_code == 304 and again.headers["content-security-policy"] == csp
    script = await client.get("/static/js/main.js")
    assert script.status_code == 200 and "javascript" in script.headers["content-type"]
    assert script.headers["cache-control"] == "no-cache"


async def test_the_api_stays_no_store_and_unknown_files_are_404(client):
    assert (await client.get("/api/v1/config")).headers["cache-control"] == "no-store"
    for path in ("/static/nope.js", "/static/../../pyproject.toml", "/static/%2e%2e/app.py"):
        missing = await client.get(path)
        assert missing.status_code == 404, path
        assert missing.json()["error"]["code"] == "not_found"


class _InlineCode(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.problems: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        names = {name for name, _ in attrs}
        if tag == "script" and "src" not in names:
            self.problems.append("an inline <script>")
        if tag == "style":
            self.problems.append("a <style> element")
        self.problems += [f"{tag} {name}=" for name in names if name == "style" or name.startswith("on")]


def test_no_inline_code_that_the_policy_would_block():
    for page in ("index.html", "ops.html"):
        checker = _InlineCode()
        checker.feed((STATIC_DIR / page).read_text())
        assert checker.problems == [], page
    for module in (STATIC_DIR / "js").rglob("*.js"):
        source = module.read_text()
        assert not re.search(r"innerHTML|outerHTML|insertAdjacentHTML|document\.write|eval\(|new Function", source), (
            module
        )


def test_every_page_file_ships_in_the_package():
    config = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
    patterns = config["tool"]["setuptools"]["package-data"]["gateway.sidecar"]
    files = [p.relative_to(STATIC_DIR.parent).as_posix() for p in STATIC_DIR.rglob("*") if p.is_file()]
    assert "static/index.html" in files
    assert [f for f in files if not any(fnmatch(f, pattern) for pattern in patterns)] == []


async def test_config_says_what_the_page_needs(make_settings):
    settings = make_settings(
        chain_id=84532, chain_rpc_url="http://127.0.0.1:1", dao_wallet_address="0x" + "ab" * 20,
        min_topup_usd=Decimal("2.5"), max_topup_usd=Decimal("30"), min_confirmations=7,
        user_price_markup_factor=Decimal("1.5"), price_list_url="https://example.com/prices",
    )  # fmt: skip
    async with running(create_app(settings)) as app, client_for(app) as client:
        config = (await client.get("/api/v1/config")).json()
    assert config == {
        "chain_id": 84532, "usdc_address": settings.usdc_address, "usdc_decimals": 6,
        "dao_wallet_address": "0x" + "ab" * 20, "payments_enabled": True,
        "min_topup_micros": 2_500_000, "max_topup_micros": 30_000_000, "topup_presets_micros": [10_000_000, 25_000_000],
        "min_confirmations": 7, "micros_per_credit": 1000, "credits_per_usd": 1000, "markup": "1.5",
        "siwe_domain": "localhost:8000", "siwe_statement": config["siwe_statement"], "siwe_version": "1",
        "api_base_url": "http://localhost:4000/v1", "price_list_url": "https://example.com/prices",
    }  # fmt: skip
    assert config["siwe_statement"] and "\n" not in config["siwe_statement"]


async def test_config_without_payments_and_in_openapi(client):
    config = (await client.get("/api/v1/config")).json()
    assert config["payments_enabled"] is False and config["dao_wallet_address"] is None
    schema = (await client.get("/api/v1/openapi.json")).json()
    response = schema["paths"]["/api/v1/config"]["get"]["responses"]["200"]
    assert response["content"]["application/json"]["schema"]["$ref"].endswith("/ConfigOut")
    assert "/" not in schema["paths"]


async def test_keys_show_when_they_were_last_used(client, wallet, db, book):
    me = await sign_in(client, wallet)
    key_id = me["default_key"]["id"]
    assert (await client.get("/api/v1/keys")).json()["data"][0]["last_used_at"] is None
    await ledger.post_entry(db, me["account_id"], 1_000_000, "admin_grant", f"test-{uuid.uuid4()}")
    for _ in range(2):
        usage = ledger.Usage(f"req-{uuid.uuid4()}", me["account_id"], key_id, "m", 1, 1, 5, 10, "2.0")
        await book.settle(usage)
    other = (await client.post("/api/v1/keys", json={"label": "unused"})).json()
    keys = {k["id"]: k for k in (await client.get("/api/v1/keys")).json()["data"]}
    assert keys[key_id]["last_used_at"] is not None and keys[other["id"]]["last_used_at"] is None


async def test_usage_daily_is_the_sessions_own_spend(client, wallet, db, make_settings, book):
    assert (await client.get("/api/v1/usage/daily")).status_code == 401
    me = await sign_in(client, wallet)
    await ledger.post_entry(db, me["account_id"], 1_000_000, "admin_grant", f"test-{uuid.uuid4()}")
    for model, price in (("b-model", 10), ("a-model", 2_500), ("b-model", 5)):
        call = ledger.Usage(f"req-{uuid.uuid4()}", me["account_id"], None, model, 3, 4, 1, price, "2.0")
        await book.settle(call)
    daily = (await client.get("/api/v1/usage/daily", params={"days": 7})).json()
    assert len(daily["days"]) == 7 and daily["days"][-1]["day"] == daily["last_day"]
    assert [d["calls"] for d in daily["days"][:-1]] == [0] * 6
    today = daily["days"][-1]
    figures = (today["calls"], today["prompt_tokens"], today["completion_tokens"], today["charged_micros"])
    assert figures == (3, 9, 12, 2_515)
    models = [(m["model"], m["charged_micros"], m["calls"]) for m in today["models"]]
    assert models == [("a-model", 2_500, 1), ("b-model", 15, 2)]
    assert daily["total"]["charged_credits"] == "2.515"
    assert [m["model"] for m in daily["models"]] == ["a-model", "b-model"]
    for bad in ("0", "367", "x"):
        assert (await client.get("/api/v1/usage/daily", params={"days": bad})).status_code == 422
