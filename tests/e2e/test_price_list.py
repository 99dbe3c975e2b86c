"""The price list is the proxy's: the catalog of the config the proxy runs (gateway.proxy.catalog, what `gateway
models`, `gateway check` and the sidecar's GET /api/v1/models show) prices every model exactly as the proxy's
GET /v1/models does, and a call is charged its tokens at those prices, rounded up to a micro."""

from __future__ import annotations

import math
from decimal import Decimal

import httpx
import sqlalchemy as sa

from gateway.config import Settings
from gateway.db.schema import llm_usage
from gateway.proxy.catalog import load, publish
from gateway.sidecar.app import create_app
from tests.e2e.calls import CHAT
from tests.integration.sidecar.conftest import client_for, running


async def test_catalog_sidecar_and_proxy_agree_and_calls_are_charged_at_the_listed_price(
    db, proxy, make_customer, tmp_path
):
    catalog = load(proxy.config, proxy.settings.user_price_markup_factor)
    customer = await make_customer()
    async with httpx.AsyncClient(headers={"Authorization": f"Bearer {customer.key.raw_key}"}, timeout=30) as http:
        served = (await http.get(f"{proxy.base_url}/models")).json()["data"]
    assert {m["id"]: m["pricing"] for m in served} == {m.id: m.pricing for m in catalog.models}
    assert {m["id"]: m["routes"] for m in served} == {m.id: m.routes for m in catalog.models}

    settings = Settings(_env_file=None, gateway_home=tmp_path, database_url=proxy.settings.database_url)
    async with running(create_app(settings)) as app, client_for(app) as anyone:
        assert (await anyone.get("/api/v1/models")).status_code == 503  # nothing published yet
        publish(catalog, settings.price_list_path)
        listed = (await anyone.get("/api/v1/models")).json()["data"]
    assert listed == [m.public() for m in catalog.models]
    assert "provider" not in str(listed)

    mini = next(m for m in listed if m["id"] == "gpt-4o-mini")["pricing"]
    raw = customer.client.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=CHAT, max_tokens=20)
    async with db.connect() as conn:
        row = (
            await conn.execute(
                sa.select(llm_usage).where(llm_usage.c.request_id == raw.headers["x-gateway-request-id"])
            )
        ).one()
    listed_price = (
        row.prompt_tokens * Decimal(mini["prompt_usd_per_token"])
        + row.completion_tokens * Decimal(mini["completion_usd_per_token"])
    ) * 1_000_000
    assert row.user_price_micros == math.ceil(listed_price)
