"""The low-balance signal: the runway at the last 7 days' spend rate in the summary, a threshold the account
sets, one recorded crossing per crossing (however often the sweep runs), re-armed once the balance is back."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from gateway import ledger
from gateway.jobs.low_balance import record_crossings
from tests.integration.sidecar.conftest import sign_in


async def _grant(db, account_id: int, micros: int) -> None:
    await ledger.post_entry(db, account_id, micros, "admin_grant", f"test-{uuid.uuid4()}")


async def _spend(book: ledger.Ledger, account_id: int, price: int) -> None:
    rid = f"req-{uuid.uuid4().hex}"
    await book.hold(account_id, rid, price)
    await book.settle(ledger.Usage(rid, account_id, None, "gpt-x", 10, 10, price // 2, price, "2.0"))


async def test_runway_threshold_and_one_event_per_crossing(client, wallet, db, book):
    me = await sign_in(client, wallet)
    account_id = me["account_id"]
    await _grant(db, account_id, 10_000)
    quiet = (await client.get("/api/v1/credits/summary")).json()["runway"]
    assert (quiet["runway_days"], quiet["low_balance"]) == (None, False)  # nothing spent: no estimate

    await _spend(book, account_id, 3_000)  # 7 days' spend 3,000: 7,000 left lasts 16.3 days
    runway = (await client.get("/api/v1/credits/summary")).json()["runway"]
    assert (runway["spend_7d_micros"], runway["runway_days"]) == (3_000, "16.3")

    put = await client.put("/api/v1/credits/low-balance", json={"threshold_credits": "5"})
    assert put.status_code == 200 and put.json()["low_balance_threshold_micros"] == 5_000
    assert account_id not in await record_crossings(db)  # 7,000 >= 5,000
    await _spend(book, account_id, 3_000)  # 4,000 < 5,000: crosses
    assert account_id in await record_crossings(db)
    assert account_id not in await record_crossings(db)  # still below: no second event
    await _spend(book, account_id, 100)
    assert account_id not in await record_crossings(db)
    state = (await client.get("/api/v1/credits/low-balance")).json()
    assert state["low_balance"] and [c["balance_micros"] for c in state["crossings"]] == [4_000]

    await _grant(db, account_id, 10_000)  # back above: re-armed, then a new crossing is a new event
    assert account_id not in await record_crossings(db)
    assert not (await client.get("/api/v1/credits/low-balance")).json()["low_balance"]
    await _spend(book, account_id, 10_000)
    assert account_id in await record_crossings(db, now=datetime.now(UTC) + timedelta(seconds=1))
    assert len((await client.get("/api/v1/credits/low-balance")).json()["crossings"]) == 2


async def test_bad_thresholds_are_422_and_off_is_null(client, wallet):
    await sign_in(client, wallet)
    for body in (
        {"threshold_credits": "-1"},
        {"threshold_credits": "x"},
        {},
        {"threshold_credits": "1", "y": 2},
        {"threshold_credits": 1},
    ):
        assert (await client.put("/api/v1/credits/low-balance", json=body)).status_code == 422, body
    off = await client.put("/api/v1/credits/low-balance", json={"threshold_credits": None})
    assert off.status_code == 200 and off.json()["low_balance_threshold_micros"] is None
