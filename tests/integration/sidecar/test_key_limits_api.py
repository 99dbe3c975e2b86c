"""Key limits in the sidecar API: set at creation, changed and removed with PATCH /api/v1/keys/{id}, shown with
the key's use this period; another account's key is 404 and bad input is 422 with nothing changed."""

from __future__ import annotations

import uuid

from eth_account import Account

from gateway import ledger
from tests.integration.sidecar.conftest import client_for, sign_in


async def test_create_patch_and_list_a_limited_key(client, wallet, db, book):
    me = await sign_in(client, wallet)
    made = await client.post("/api/v1/keys", json={"label": "batch", "limit_credits": "2.5", "limit_reset": "daily"})
    assert made.status_code == 201, made.text
    key = made.json()
    assert (key["limit_micros"], key["limit_credits"], key["limit_reset"], key["usage_micros"]) == (
        2_500, "2.5", "daily", 0
    )  # fmt: skip
    await ledger.post_entry(db, me["account_id"], 100_000, "admin_grant", f"test-{uuid.uuid4()}")
    await book.hold(me["account_id"], f"req-{uuid.uuid4()}", 1_000, key_id=key["id"])
    listed = next(k for k in (await client.get("/api/v1/keys")).json()["data"] if k["id"] == key["id"])
    assert (listed["usage_micros"], listed["limit_remaining_micros"]) == (1_000, 1_500)

    raised = (await client.patch(f"/api/v1/keys/{key['id']}", json={"limit_credits": "10"})).json()
    assert (raised["limit_micros"], raised["limit_reset"], raised["usage_micros"]) == (10_000, "daily", 1_000)
    monthly = (await client.patch(f"/api/v1/keys/{key['id']}", json={"limit_reset": "monthly"})).json()
    assert (monthly["limit_micros"], monthly["limit_reset"]) == (10_000, "monthly")
    removed = (await client.patch(f"/api/v1/keys/{key['id']}", json={"limit_credits": None})).json()
    assert (removed["limit_micros"], removed["limit_reset"]) == (None, "monthly")


async def test_bad_limits_are_422_and_change_nothing(client, wallet):
    me = await sign_in(client, wallet)
    key_id = me["default_key"]["id"]
    for body in ({"limit_credits": "-1"}, {"limit_credits": "0.0001"}, {"limit_credits": "abc"}, {"limit_credits": 5},
                 {"limit_reset": "hourly"}, {"limit_credits": "1", "extra": 1}):  # fmt: skip
        answer = await client.patch(f"/api/v1/keys/{key_id}", json=body)
        assert answer.status_code == 422, (body, answer.text)
    assert (await client.post("/api/v1/keys", json={"limit_credits": "10000000000000"})).status_code == 422
    key = next(k for k in (await client.get("/api/v1/keys")).json()["data"] if k["id"] == key_id)
    assert (key["limit_micros"], key["limit_reset"]) == (None, "none")


async def test_another_accounts_key_is_404(app, client, wallet):
    await sign_in(client, wallet)
    other = await client.post("/api/v1/keys", json={"label": "mine"})
    async with client_for(app) as bob:
        await sign_in(bob, Account.create())
        answer = await bob.patch(f"/api/v1/keys/{other.json()['id']}", json={"limit_credits": "1"})
        assert answer.status_code == 404 and answer.json()["error"]["code"] == "key_not_found"
