"""X-Forwarded-For is trusted only from FORWARDED_ALLOW_IPS: by default from nobody, so a client on the same host
cannot rotate its address past a rate limit; from a configured proxy, its clients are told apart."""

from __future__ import annotations

import httpx
import pytest

from tests.integration.sidecar.conftest import free_port, served

ASKED = 12  # nonce requests, each from a different X-Forwarded-For, against a limit of 5 per minute


def statuses(base: str) -> list[int]:
    with httpx.Client(base_url=base, timeout=10) as client:
        return [
            client.get("/api/v1/auth/nonce", headers={"X-Forwarded-For": f"203.0.113.{i}"}).status_code
            for i in range(ASKED)
        ]


@pytest.mark.parametrize(("trusted", "limited"), [("", True), ("127.0.0.1", False)])
def test_a_forwarded_address_counts_only_from_a_trusted_proxy(make_settings, trusted, limited, monkeypatch):
    monkeypatch.setenv("FORWARDED_ALLOW_IPS", "127.0.0.1")  # uvicorn's own default must not win over the setting
    port = free_port()
    settings = make_settings(
        host="127.0.0.1",
        sidecar_port=port,
        siwe_domain=f"127.0.0.1:{port}",
        rate_limit_nonce="5/minute",
        forwarded_allow_ips=trusted,
    )
    with served(settings) as base:
        answers = statuses(base)
    assert set(answers) <= {200, 429}
    assert answers.count(429) == (ASKED - 5 if limited else 0), answers
