"""X-Forwarded-For is trusted only from FORWARDED_ALLOW_IPS: by default from nobody, so a client on the same host
cannot rotate its address past a rate limit; from a configured proxy, its clients are told apart."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest
import uvicorn

from gateway.sidecar.app import uvicorn_config

ASKED = 12  # nonce requests, each from a different X-Forwarded-For, against a limit of 5 per minute


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def serving(make_settings, **overrides) -> Iterator[str]:
    port = _free_port()
    settings = make_settings(
        host="127.0.0.1", sidecar_port=port, siwe_domain=f"127.0.0.1:{port}", rate_limit_nonce="5/minute", **overrides
    )
    server = uvicorn.Server(uvicorn_config(settings))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the sidecar did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


def statuses(base: str) -> list[int]:
    with httpx.Client(base_url=base, timeout=10) as client:
        return [
            client.get("/api/v1/auth/nonce", headers={"X-Forwarded-For": f"203.0.113.{i}"}).status_code
            for i in range(ASKED)
        ]


@pytest.mark.parametrize(("trusted", "limited"), [("", True), ("127.0.0.1", False)])
def test_a_forwarded_address_counts_only_from_a_trusted_proxy(make_settings, trusted, limited, monkeypatch):
    monkeypatch.setenv("FORWARDED_ALLOW_IPS", "127.0.0.1")  # uvicorn's own default must not win over the setting
    with serving(make_settings, forwarded_allow_ips=trusted) as base:
        answers = statuses(base)
    assert set(answers) <= {200, 429}
    assert answers.count(429) == (ASKED - 5 if limited else 0), answers
