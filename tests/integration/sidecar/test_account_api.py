"""Account routes: keys, credits summary, ledger and usage pages; isolation between accounts; CSRF."""

from __future__ import annotations

import uuid

from eth_account import Account

from gateway import ledger
from gateway.accounts.keys import resolve_key
from tests.integration.sidecar.conftest import client_for, row_counts, sign_in


async def _grant(db, account_id: int, micros: int) -> None:
    await ledger.post_entry(db, account_id, micros, "admin_grant", f"test-{uuid.uuid4()}")


async def _settle_call(book: ledger.Ledger, account_id: int, model: str, price: int) -> None:
    usage = ledger.Usage(f"req-{uuid.uuid4()}", account_id, None, model, 10, 20, price // 2, price, "2.0")
    await book.settle(usage)


async def test_summary_shows_integer_micros_and_exact_credits(client, wallet, db, book):
    me = await sign_in(client, wallet)
    await _grant(db, me["account_id"], 1_500_000)
    await book.hold(me["account_id"], f"req-{uuid.uuid4()}", 2_500)
    summary = (await client.get("/api/v1/credits/summary")).json()
    assert (summary["balance_micros"], summary["held_micros"], summary["available_micros"]) == (
        1_500_000,
        2_500,
        1_497_500,
    )
    assert (summary["balance_credits"], summary["held_credits"], summary["available_credits"]) == (
        "1500",
        "2.5",
        "1497.5",
    )
    assert [e["amount_credits"] for e in summary["recent"]] == ["1500"]


async def test_recent_entries_are_the_last_ten(client, wallet, db):
    me = await sign_in(client, wallet)
    for i in range(12):
        await _grant(db, me["account_id"], i + 1)
    recent = (await client.get("/api/v1/credits/summary")).json()["recent"]
    assert [e["amount_micros"] for e in recent] == list(range(12, 2, -1))


async def test_ledger_pages_and_filters(client, wallet, db, book):
    me = await sign_in(client, wallet)
    for i in range(5):
        await _grant(db, me["account_id"], 1_000 * (i + 1))
    await _settle_call(book, me["account_id"], "gpt-x", 400)

    seen, cursor = [], None
    while True:
        params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = (await client.get("/api/v1/credits/ledger", params=params)).json()
        seen += [e["amount_micros"] for e in page["data"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [-400, 5_000, 4_000, 3_000, 2_000, 1_000]

    usage_only = (await client.get("/api/v1/credits/ledger", params={"reason": "llm_usage"})).json()["data"]
    assert [e["reason"] for e in usage_only] == ["llm_usage"]
    assert (await client.get("/api/v1/credits/ledger", params={"until": "2000-01-01"})).json()["data"] == []
    assert (
        len(
            (await client.get("/api/v1/credits/ledger", params={"since": "2000-01-01", "until": "9999-12-31"})).json()[
                "data"
            ]
        )
        == 6
    )


async def test_usage_pages_and_filters(client, wallet, db, book):
    me = await sign_in(client, wallet)
    await _grant(db, me["account_id"], 1_000_000)
    for model in ("a", "b", "a"):
        await _settle_call(book, me["account_id"], model, 1_000)
    first = (await client.get("/api/v1/usage", params={"limit": 2})).json()
    assert [u["model"] for u in first["data"]] == ["a", "b"] and first["next_cursor"]
    rest = (await client.get("/api/v1/usage", params={"limit": 2, "cursor": first["next_cursor"]})).json()
    assert [u["model"] for u in rest["data"]] == ["a"] and rest["next_cursor"] is None
    only_a = (await client.get("/api/v1/usage", params={"model": "a"})).json()["data"]
    assert len(only_a) == 2 and only_a[0]["price_micros"] == 1_000 and only_a[0]["price_credits"] == "1"


async def test_page_size_is_capped(client, wallet):
    await sign_in(client, wallet)
    for limit in (0, 101):
        response = await client.get("/api/v1/usage", params={"limit": limit})
        assert response.status_code == 422 and response.json()["error"]["code"] == "invalid_request"


async def test_accounts_are_isolated(app, db, book):
    async with client_for(app) as alice, client_for(app) as bob:
        a = await sign_in(alice, Account.create())
        b = await sign_in(bob, Account.create())
        await _grant(db, b["account_id"], 7_000)
        await _settle_call(book, b["account_id"], "secret-model", 1_000)
        bobs_key = b["default_key"]

        assert [k["id"] for k in (await alice.get("/api/v1/keys")).json()["data"]] == [a["default_key"]["id"]]
        assert (await alice.get("/api/v1/credits/ledger")).json()["data"] == []
        assert (await alice.get("/api/v1/usage")).json()["data"] == []
        assert (await alice.get("/api/v1/credits/summary")).json()["balance_micros"] == 0

        before = await row_counts(db)
        revoke = await alice.delete(f"/api/v1/keys/{bobs_key['id']}")
        missing = await alice.delete("/api/v1/keys/999999999")  # the same answer as for a key that does not exist
        assert revoke.status_code == missing.status_code == 404
        assert revoke.json()["error"] == {
            "code": "key_not_found",
            "message": f"no key {bobs_key['id']} on this account",
        }
        assert missing.json()["error"] == {"code": "key_not_found", "message": "no key 999999999 on this account"}
        assert await row_counts(db) == before
        assert await resolve_key(db, app.state.services.key_cache, bobs_key["key"]) is not None
        assert len((await bob.get("/api/v1/usage")).json()["data"]) == 1


async def test_revoking_a_key_stops_it_resolving(client, app, wallet, db):
    me = await sign_in(client, wallet)
    key = me["default_key"]
    cache = app.state.services.key_cache
    assert await resolve_key(db, cache, key["key"]) is not None  # now cached
    revoked = await client.delete(f"/api/v1/keys/{key['id']}")
    assert revoked.status_code == 200 and revoked.json()["active"] is False
    assert await resolve_key(db, cache, key["key"]) is None
    again = await client.delete(f"/api/v1/keys/{key['id']}")
    assert again.status_code == 200 and again.json()["revoked_at"] == revoked.json()["revoked_at"]


async def test_writes_from_a_foreign_origin_are_refused_and_change_nothing(client, wallet, db):
    me = await sign_in(client, wallet)
    before = await row_counts(db)
    for headers in ({"Origin": "https://evil.example"}, {"Origin": "null"}):
        created = await client.post("/api/v1/keys", json={"label": "csrf"}, headers=headers)
        assert created.status_code == 403 and created.json()["error"]["code"] == "cross_origin"
        revoked = await client.delete(f"/api/v1/keys/{me['default_key']['id']}", headers=headers)
        assert revoked.status_code == 403
        assert (await client.post("/api/v1/auth/logout", headers=headers)).status_code == 403
    del client.headers["Origin"]
    assert (await client.post("/api/v1/keys", json={"label": "no-origin"})).status_code == 403
    assert await row_counts(db) == before
    assert (await client.get("/api/v1/auth/session")).status_code == 200  # logout was refused too


async def test_bad_key_requests_are_422_and_change_nothing(client, wallet, db):
    await sign_in(client, wallet)
    before = await row_counts(db)
    for body in (
        {"label": "x" * 101},
        {"label": "tab\there"},
        {"label": 5},
        {"label": "ok", "account_id": 1},
        [],
        None,
    ):
        response = await client.post("/api/v1/keys", json=body)
        assert response.status_code == 422, (body, response.text)
        assert response.json()["error"]["code"] == "invalid_request"
    assert await row_counts(db) == before
