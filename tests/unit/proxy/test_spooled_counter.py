"""`gateway_spooled_total{kind}`: a settle or release written to the spool (the database unreachable) is counted,
one that reached the database is not; the alert GatewaySettlesSpooled reads it (deploy/prometheus)."""

from __future__ import annotations

from decimal import Decimal

from gateway.core.money import TokenPrices
from gateway.observability import metrics
from gateway.proxy import call_metrics
from gateway.proxy.inflight import Call


def _count(kind: str) -> float:
    return metrics.SPOOLED.labels(kind)._value.get()


def test_spooled_settles_and_releases_are_counted() -> None:
    prices = TokenPrices(Decimal("0.000001"), Decimal("0.000002"))
    call = Call("req-spool", 1, 2, "gpt-4o-mini", 100, False, False, prices, Decimal(2), charged_micros=40)
    settles, releases = _count("settle"), _count("release")
    call_metrics.settled(call, 10, 40, 0.01, spooled=False)
    call_metrics.released(call, spooled=False)
    assert (_count("settle"), _count("release")) == (settles, releases)
    call_metrics.settled(call, 10, 40, 0.01, spooled=True)
    call_metrics.released(call, spooled=True)
    assert (_count("settle"), _count("release")) == (settles + 1, releases + 1)
