"""GET /api/v1/generation?id= on the sidecar: the session's own call with the figures of its llm_usage row (any
key of the account), a call still in flight as pending, another account's id 404, a bad id 422."""

from __future__ import annotations

import uuid

from eth_account import Account

from gateway import ledger
from tests.integration.sidecar.conftest import client_for, sign_in


async def test_the_owner_finds_its_call_and_nobody_else_does(app, client, wallet, db, book):
    me = await sign_in(client, wallet)
    account_id, key_id = me["account_id"], me["default_key"]["id"]
    await ledger.post_entry(db, account_id, 100_000, "admin_grant", f"test-{uuid.uuid4()}")
    done, running = f"req-{uuid.uuid4().hex}", f"req-{uuid.uuid4().hex}"
    await book.hold(account_id, done, 5_000, key_id=key_id, model="gpt-x")
    await book.hold(account_id, running, 3_000, key_id=key_id, model="gpt-x")
    await book.settle(ledger.Usage(done, account_id, key_id, "gpt-x", 12, 34, 900, 1_800, "2.0", streamed=True))

    call = (await client.get("/api/v1/generation", params={"id": done})).json()["data"]
    assert (call["status"], call["model"], call["tokens_prompt"], call["tokens_completion"]) == (
        "settled",
        "gpt-x",
        12,
        34,
    )
    assert (call["charged_micros"], call["charged_credits"], call["held_micros"], call["streamed"]) == (
        1_800, "1.8", 5_000, True
    )  # fmt: skip
    assert "provider_cost_micros" not in call
    pending = (await client.get("/api/v1/generation", params={"id": running})).json()["data"]
    assert (pending["status"], pending["charged_micros"], pending["tokens_prompt"]) == ("pending", 0, None)

    async with client_for(app) as bob:
        await sign_in(bob, Account.create())
        answer = await bob.get("/api/v1/generation", params={"id": done})
        assert answer.status_code == 404 and answer.json()["error"]["code"] == "generation_not_found"
    assert (await client.get("/api/v1/generation", params={"id": "x" * 101})).status_code == 422
    assert (await client.get("/api/v1/generation")).status_code == 422


async def test_without_a_session_it_is_401(client):
    assert (await client.get("/api/v1/generation", params={"id": "req-1"})).status_code == 401
