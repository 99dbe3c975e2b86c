"""The operator routes (/api/v1/ops/...): only a wallet in OPERATOR_WALLETS gets in (no session: 401; a user's
session, also with a forged role anywhere in the request: 403), the figures equal SQL sums and what
`gateway usage` / `reconcile` compute, and every action is idempotent on its reference, audited, and
refuses a reused reference with other parameters without changing anything."""

from __future__ import annotations

import random
import uuid
from datetime import UTC, date, datetime, time, timedelta

import httpx
import pytest
import sqlalchemy as sa
from eth_account import Account
from fastapi import FastAPI

from gateway import ledger
from gateway.accounts.history_daily import daily_usage
from gateway.accounts.keys import resolve_key
from gateway.db.engine import get_engine
from gateway.db.migrate import upgrade
from gateway.db.ops_schema import ops_audit
from gateway.db.schema import credit_holds, credit_ledger, llm_usage
from gateway.jobs.reconcile import reconcile
from gateway.sidecar.app import create_app
from tests.integration.sidecar.conftest import client_for, running, sign_in

OPS = "/api/v1/ops"
GETS = ["/me", "/business", "/topups", "/x402", "/books", "/accounts?wallet=0x" + "1" * 40, "/audit"]
ACTION = {"reason": "test", "reference": "ref-00000000"}
POSTS = [
    ("/grants", {**ACTION, "wallet": "0x" + "1" * 40, "amount_micros": 1}),
    ("/keys/1/revoke", ACTION),
    ("/keys/1/limit", {**ACTION, "limit_micros": 1}),
    ("/accounts/1/freeze", ACTION),
    ("/accounts/1/unfreeze", ACTION),
    ("/reconcile", {"reference": "ref-00000000"}),
]


def ref() -> str:
    return f"test-{uuid.uuid4()}"


@pytest.fixture
def operator():
    return Account.create()


@pytest.fixture
async def ops_app(make_settings, operator):
    async with running(create_app(make_settings(operator_wallets=[operator.address]))) as started:
        yield started


@pytest.fixture
async def op(ops_app: FastAPI, operator) -> httpx.AsyncClient:
    async with client_for(ops_app) as c:
        await sign_in(c, operator)
        yield c


@pytest.fixture
async def user(ops_app: FastAPI):
    async with client_for(ops_app) as c:
        me = await sign_in(c, Account.create())
        c.me = me  # type: ignore[attr-defined]
        yield c


async def _all_refused(client: httpx.AsyncClient, status: int, **forged: dict) -> None:
    for path in GETS:
        answer = await client.get(OPS + path, **forged)
        assert answer.status_code == status, (path, answer.text)
        assert answer.json()["error"]["code"] == ("unauthenticated" if status == 401 else "not_operator")
    for path, body in POSTS:
        answer = await client.post(OPS + path, json=body, **forged)
        assert answer.status_code == status, (path, answer.text)


async def test_no_session_is_401_everywhere(ops_app):
    async with client_for(ops_app) as anonymous:
        await _all_refused(anonymous, 401)
        anonymous.cookies.set("gw_session", "forged-" + "x" * 40)
        await _all_refused(anonymous, 401)


async def test_a_users_session_is_403_everywhere_even_with_a_forged_role(user, db):
    before = await _counts(db)
    await _all_refused(user, 403)
    forged = {"headers": {"X-Role": "operator", "X-Operator": "true"}, "params": {"role": "operator", "operator": 1}}
    user.cookies.set("role", "operator")
    await _all_refused(user, 403, **forged)
    assert await _counts(db) == before  # nothing was granted, frozen, revoked or audited


async def test_the_role_is_decided_at_each_request(make_settings, operator, op, ops_app):
    assert (await op.get(f"{OPS}/me")).json()["wallet_address"] == operator.address.lower()
    # the same session, on an app whose OPERATOR_WALLETS no longer lists the wallet: 403 at once
    async with running(create_app(make_settings(operator_wallets=[]))) as other, client_for(other) as same:
        same.cookies = op.cookies
        assert (await same.get(f"{OPS}/me")).status_code == 403
        assert (await same.get("/api/v1/auth/session")).status_code == 200  # still a user


async def test_every_ops_route_is_in_openapi_with_401_and_403(ops_app):
    async with client_for(ops_app) as c:
        paths = (await c.get("/api/v1/openapi.json")).json()["paths"]
    ops = {p: ops for p, ops in paths.items() if p.startswith(OPS)}
    assert len(ops) == len(GETS) + len(POSTS)
    for path, methods in ops.items():
        for method, spec in methods.items():
            assert {"401", "403"} <= set(spec["responses"]), (method, path)


async def _counts(db) -> tuple[int, ...]:
    async with db.connect() as conn:
        return tuple(
            [
                (await conn.execute(sa.select(sa.func.count()).select_from(t))).scalar_one()
                for t in (ops_audit, credit_ledger)
            ]
            + [
                (
                    await conn.execute(sa.text("SELECT count(*) FROM billing_accounts WHERE frozen_at IS NOT NULL"))
                ).scalar_one()
            ]
        )


async def _ledger_rows(db, account_id: int) -> list:
    async with db.connect() as conn:
        q = sa.select(credit_ledger.c.amount_micros, credit_ledger.c.reason, credit_ledger.c.reference)
        return (await conn.execute(q.where(credit_ledger.c.account_id == account_id))).all()


async def test_grant_is_idempotent_on_its_reference_and_in_integer_micros(op, operator, db):
    wallet = Account.create().address
    body = {"wallet": wallet, "amount_micros": 2_500_001, "reason": "launch promo", "reference": ref()}
    first = await op.post(f"{OPS}/grants", json=body)
    assert first.status_code == 200, first.text
    again = await op.post(f"{OPS}/grants", json=body)
    assert again.status_code == 200 and again.json()["replayed"] is True and first.json()["replayed"] is False
    assert again.json()["id"] == first.json()["id"]
    account_id = first.json()["account_id"]
    rows = await _ledger_rows(db, account_id)
    assert rows == [(2_500_001, "admin_grant", f"ops:{operator.address.lower()}:{body['reference']}")]
    assert first.json()["result"]["balance_after_micros"] == 2_500_001
    assert isinstance(first.json()["result"]["amount_micros"], int)

    before = await _counts(db)
    for changed in ({"amount_micros": 2_500_002}, {"wallet": Account.create().address}, {"reason": "other"}):
        answer = await op.post(f"{OPS}/grants", json={**body, **changed})
        assert answer.status_code == 409 and answer.json()["error"]["code"] == "reference_reused", answer.text
    for bad in (2.5, "2500", True, 0, -1, 10**15 + 1, None):
        answer = await op.post(f"{OPS}/grants", json={**body, "reference": ref(), "amount_micros": bad})
        assert answer.status_code == 422, (bad, answer.text)
    assert (await op.post(f"{OPS}/grants", json={**body, "reference": "short"})).status_code == 422
    assert (await op.post(f"{OPS}/grants", json={**body, "reference": ref(), "extra": 1})).status_code == 422
    miscased = "0x5AAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"  # EIP-55's example with one letter's case flipped
    for answer in (
        await op.post(f"{OPS}/grants", json={**body, "reference": ref(), "wallet": miscased}),
        await op.get(f"{OPS}/accounts", params={"wallet": miscased}),
    ):
        assert answer.status_code == 422 and "EIP-55" in answer.text, answer.text  # as the CLI and sign-in refuse it
    assert await _counts(db) == before
    assert await _ledger_rows(db, account_id) == rows


async def test_freeze_revoke_and_limit_are_audited_and_take_effect(op, user, operator, ops_app, db):
    account_id = user.me["account_id"]
    raw = user.me["default_key"]["key"]
    key_id = user.me["default_key"]["id"]
    cache = ops_app.state.services.key_cache
    assert (await resolve_key(db, cache, raw)).frozen is False  # cached now: the freeze must drop it

    frozen = await op.post(f"{OPS}/accounts/{account_id}/freeze", json={"reason": "abuse report", "reference": ref()})
    assert frozen.status_code == 200, frozen.text
    assert (await resolve_key(db, cache, raw)).frozen is True
    summary = (await user.get("/api/v1/credits/summary")).json()
    assert summary["frozen_at"] is not None
    # a frozen account's top-ups and grants are still credited
    grant = {"wallet": user.me["wallet_address"], "amount_micros": 5, "reason": "still credited", "reference": ref()}
    assert (await op.post(f"{OPS}/grants", json=grant)).status_code == 200
    thawed = await op.post(f"{OPS}/accounts/{account_id}/unfreeze", json={"reason": "resolved", "reference": ref()})
    assert thawed.json()["result"]["frozen_at"] is None
    assert (await resolve_key(db, cache, raw)).frozen is False

    limit = {"limit_micros": 1_000, "limit_reset": "daily", "reason": "cap", "reference": ref()}
    limited = await op.post(f"{OPS}/keys/{key_id}/limit", json=limit)
    assert limited.status_code == 200 and limited.json()["result"]["limit_micros"] == 1_000
    cleared = await op.post(f"{OPS}/keys/{key_id}/limit", json={**limit, "limit_micros": None, "reference": ref()})
    assert cleared.json()["result"]["limit_micros"] is None
    revoke = {"reason": "leaked", "reference": ref()}
    assert (await op.post(f"{OPS}/keys/{key_id}/revoke", json=revoke)).status_code == 200
    assert await resolve_key(db, cache, raw) is None
    assert (await op.post(f"{OPS}/keys/{key_id}/revoke", json=revoke)).json()["replayed"] is True
    assert (await op.post(f"{OPS}/keys/{10**12}/revoke", json={**revoke, "reference": ref()})).status_code == 404
    assert (await op.post(f"{OPS}/accounts/{10**12}/freeze", json={**revoke, "reference": ref()})).status_code == 404

    audit = (await op.get(f"{OPS}/audit", params={"account_id": account_id})).json()["data"]
    assert [a["action"] for a in audit] == [
        "revoke_key", "set_key_limit", "set_key_limit", "unfreeze", "grant", "freeze"
    ]  # fmt: skip
    assert {a["operator_wallet"] for a in audit} == {operator.address.lower()}
    assert audit[-1]["reason"] == "abuse report"
    seen = (await op.get(f"{OPS}/accounts", params={"wallet": user.me["wallet_address"]})).json()
    assert seen["frozen_at"] is None and seen["keys"][0]["active"] is False and len(seen["audit"]) == 6


async def test_the_audit_table_is_append_only(op, db):
    await op.post(f"{OPS}/reconcile", json={"reference": ref()})
    for statement in ("UPDATE ops_audit SET reason = 'rewritten'", "DELETE FROM ops_audit"):
        with pytest.raises(sa.exc.DBAPIError, match="append-only"):
            async with db.begin() as conn:
                await conn.execute(sa.text(statement))


async def _seed_day(book: ledger.Ledger, day: date, account_id: int, calls: list[tuple[str, int, int, int]]) -> None:
    """Settled calls (model, provider cost, price, held) dated `day`, plus one released hold."""
    db = book.db
    moment = datetime.combine(day, time(12), tzinfo=UTC)
    ids = []
    for model, cost, price, held in calls:
        request_id = f"req-{uuid.uuid4()}"
        await book.hold(account_id, request_id, held)
        await book.settle(ledger.Usage(request_id, account_id, None, model, 7, 11, cost, price, "2.0"))
        ids.append(request_id)
    released = f"req-{uuid.uuid4()}"
    await book.hold(account_id, released, 10)
    await book.release(released)
    async with db.begin() as conn:
        await conn.execute(sa.update(llm_usage).where(llm_usage.c.request_id.in_(ids)).values(created_at=moment))
        await conn.execute(
            sa.update(credit_holds).where(credit_holds.c.request_id.in_([*ids, released])).values(created_at=moment)
        )


async def test_business_figures_equal_sql_sums_usage_and_reconcile(op, user, make_settings, db, book):
    account_id = user.me["account_id"]
    await ledger.post_entry(db, account_id, 1_000_000, "admin_grant", ref())
    first = date(2001, 1, 1) + timedelta(days=random.randrange(7000))  # a range no other test writes
    await _seed_day(book, first, account_id, [("m-a", 100, 250, 1_000), ("m-b", 40, 90, 1_000)])
    await _seed_day(book, first + timedelta(days=2), account_id, [("m-a", 300, 700, 500)])  # 200 uncollected
    last = first + timedelta(days=2)
    doc = (await op.get(f"{OPS}/business", params={"first_day": str(first), "last_day": str(last)})).json()

    since = datetime.combine(first, time.min, tzinfo=UTC)
    until = datetime.combine(last + timedelta(days=1), time.min, tzinfo=UTC)
    u = llm_usage
    async with db.connect() as conn:
        sums = (
            await conn.execute(
                sa.select(sa.func.count(), sa.func.sum(u.c.user_price_micros), sa.func.sum(u.c.provider_cost_micros),
                          sa.func.sum(u.c.uncollected_micros))
                .where(u.c.created_at >= since, u.c.created_at < until)
            )
        ).one()  # fmt: skip
    total = doc["total"]
    assert (total["calls"], total["revenue_micros"], total["provider_cost_micros"], total["uncollected_micros"]) == (
        tuple(sums)
    )
    assert total == {**total, "calls": 3, "revenue_micros": 1_040, "provider_cost_micros": 440,
                     "uncollected_micros": 200, "charged_micros": 840, "margin_micros": 400}  # fmt: skip
    assert total["holds"] == {"pending": 0, "posted": 3, "voided": 2, "expired": 0}
    assert [d["day"] for d in doc["days"]] == [str(first + timedelta(days=n)) for n in range(3)]
    assert doc["days"][1]["calls"] == 0 and [m["model"] for m in doc["days"][0]["models"]] == ["m-a", "m-b"]
    # what `gateway usage --daily` shows for the account over the same days
    spend = await daily_usage(db, account_id, 3, today=last)
    assert spend.total.charged_micros == total["charged_micros"] and spend.total.calls == total["calls"]
    for day, seen in zip(spend.days, doc["days"], strict=True):
        assert (day.total.charged_micros, day.total.calls) == (seen["charged_micros"], seen["calls"])
    # reconcile's uncollected total equals the console's over all time
    everything = await op.get(f"{OPS}/business", params={"first_day": "2000-01-01", "last_day": "2000-12-31"})
    assert everything.status_code == 200
    report = await reconcile(db, make_settings())
    async with db.connect() as conn:
        all_uncollected = (await conn.execute(sa.select(sa.func.sum(u.c.uncollected_micros)))).scalar_one()
    assert report.uncollected_micros == all_uncollected
    backwards = {"first_day": "2001-01-02", "last_day": "2001-01-01"}
    too_long = {"first_day": "2000-01-01", "last_day": "2002-01-01"}
    for bad in (backwards, too_long, {"first_day": "1700000000"}):
        assert (await op.get(f"{OPS}/business", params=bad)).status_code == 422, bad


async def test_books_money_in_and_reconcile_now(op, user, db, book):
    account_id = user.me["account_id"]
    await ledger.post_entry(db, account_id, 10_000, "admin_grant", ref())
    await book.hold(account_id, f"req-{uuid.uuid4()}", 1_234)
    books = (await op.get(f"{OPS}/books")).json()
    async with db.connect() as conn:
        open_holds = (
            await conn.execute(sa.select(sa.func.count()).where(credit_holds.c.status == "pending"))
        ).scalar_one()
    assert books["holds_open"] == open_holds >= 1 and books["oldest_open_hold_age_seconds"] >= 0
    run = await op.post(f"{OPS}/reconcile", json={"reason": "check", "reference": ref()})
    assert run.status_code == 200, run.text
    assert set(run.json()["result"]) >= {"ok", "mismatch_count", "mismatches", "uncollected_micros"}
    assert (await op.get(f"{OPS}/books")).json()["last_reconcile"]["id"] == run.json()["id"]
    topups = (await op.get(f"{OPS}/topups", params={"status": "pending"})).json()
    assert set(topups["by_status"]) == {"pending", "unclaimed", "credited", "rejected", "reorged"}
    assert (await op.get(f"{OPS}/topups", params={"status": "bogus"})).status_code == 422
    assert set((await op.get(f"{OPS}/x402")).json()["by_status"]) == {"claimed", "submitted", "settled", "failed"}


async def test_the_console_page_is_served_with_the_strict_policy(ops_app):
    async with client_for(ops_app) as anonymous:
        page = await anonymous.get("/ops")
    assert page.status_code == 200 and 'src="/static/js/ops/main.js"' in page.text
    assert page.headers["content-security-policy"].startswith("default-src 'none'; script-src 'self';")
    assert "<script>" not in page.text and "style=" not in page.text  # no inline code


async def test_the_console_on_the_embedded_sqlite_default(make_settings, operator, tmp_path):
    url = f"sqlite+aiosqlite:///{tmp_path / 'gateway.db'}"
    upgrade(url)
    settings = make_settings(database_url=url, redis_url=None, operator_wallets=[operator.address])
    async with running(create_app(settings)) as app, client_for(app) as op, client_for(app) as user:
        await sign_in(op, operator)
        me = await sign_in(user, Account.create())
        db = get_engine(url)
        book = ledger.open_ledger(db)  # SQLite: nothing to close
        grant = {"wallet": me["wallet_address"], "amount_micros": 9_000, "reason": "sqlite", "reference": ref()}
        assert (await op.post(f"{OPS}/grants", json=grant)).json()["result"]["balance_after_micros"] == 9_000
        assert (await op.post(f"{OPS}/grants", json=grant)).json()["replayed"] is True
        await _seed_day(book, date(2004, 2, 29), me["account_id"], [])  # a released hold only
        request_id = f"req-{uuid.uuid4()}"
        await book.hold(me["account_id"], request_id, 1_000)
        await book.settle(ledger.Usage(request_id, me["account_id"], None, "m", 1, 1, 100, 300, "2.0"))
        business = (await op.get(f"{OPS}/business")).json()["total"]
        assert (business["revenue_micros"], business["charged_micros"], business["margin_micros"]) == (300, 300, 200)
        leap = (await op.get(f"{OPS}/business", params={"first_day": "2004-02-28", "last_day": "2004-03-01"})).json()
        assert [d["holds"]["voided"] for d in leap["days"]] == [0, 1, 0]
        freeze = {"reason": "sqlite freeze", "reference": ref()}
        assert (await op.post(f"{OPS}/accounts/{me['account_id']}/freeze", json=freeze)).status_code == 200
        assert (await resolve_key(db, app.state.services.key_cache, me["default_key"]["key"])).frozen is True
        books = (await op.get(f"{OPS}/books")).json()
        assert books["holds_open"] == 0 and books["spool"] is None
        assert [a["action"] for a in (await op.get(f"{OPS}/audit")).json()["data"]] == ["freeze", "grant"]
        with pytest.raises(sa.exc.DBAPIError, match="append-only"):
            async with db.begin() as conn:
                await conn.execute(sa.text("UPDATE ops_audit SET reason = 'x'"))
