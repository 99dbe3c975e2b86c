"""The sidecar's GET /metrics: the token rule, requests counted by route template (never the path's ids),
the database gauges read at scrape time."""

from __future__ import annotations

import httpx
from prometheus_client.parser import text_string_to_metric_families

from gateway.sidecar.app import create_app
from tests.integration.sidecar.conftest import client_for, running

TOKEN = "metrics-token-0123456789"


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def requests_of(scraped: dict, route: str, method: str, status: str) -> float:
    labels = tuple(sorted({"route": route, "method": method, "status": status}.items()))
    return scraped.get(("gateway_sidecar_requests_total", labels), 0.0)


async def scrape(client: httpx.AsyncClient) -> dict:
    answer = await client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/plain")
    return samples(answer.text)


async def test_token_rule_and_requests_by_route_template(make_settings):
    async with running(create_app(make_settings(metrics_bearer_token=TOKEN))) as app, client_for(app) as client:
        for headers in ({}, {"Authorization": "Bearer wrong-token-0123456789"}, {"Authorization": TOKEN}):
            refused = await client.get("/metrics", headers=headers)
            assert refused.status_code == 401 and refused.headers["www-authenticate"] == "Bearer"
        before = await scrape(client)
        assert (await client.get("/api/v1/auth/nonce")).status_code == 200
        assert (await client.get("/api/v1/keys/12345")).status_code in (401, 405)  # a path with an id
        assert (await client.get("/no/such/path/0xabc")).status_code == 404
        after = await scrape(client)
    assert (
        requests_of(after, "/api/v1/auth/nonce", "GET", "200")
        == requests_of(before, "/api/v1/auth/nonce", "GET", "200") + 1
    )
    assert requests_of(after, "unmatched", "GET", "404") >= requests_of(before, "unmatched", "GET", "404") + 1
    routes = {dict(labels).get("route") for name, labels in after if name == "gateway_sidecar_requests_total"}
    assert all(r == "unmatched" or r.startswith("/") for r in routes)
    assert "/api/v1/keys/{key_id}" in routes and not any("12345" in r or "0xabc" in r for r in routes), routes
    assert after[("gateway_metrics_database_up", ())] == 1
    assert ("gateway_holds_open", ()) in after and ("gateway_holds_oldest_open_age_seconds", ()) in after
    assert (("gateway_payments", (("status", "credited"),))) in after


async def test_closed_to_everyone_without_a_token(make_settings):
    async with running(create_app(make_settings(metrics_bearer_token=None))) as app, client_for(app) as client:
        answers = [await client.get("/metrics", headers=h) for h in ({}, {"Authorization": "Bearer "})]
    assert [a.status_code for a in answers] == [401, 401]
    assert all("METRICS_BEARER_TOKEN" in a.text and "gateway_" not in a.text for a in answers)
