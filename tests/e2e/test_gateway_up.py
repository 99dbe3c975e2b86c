"""`gateway up` as a user runs it: one command serves the proxy and the sidecar; Ctrl-C stops both."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import httpx
import pytest

from devtools.proxy_process import free_port

pytestmark = pytest.mark.timeout(180)


def _wait_for(url: str, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"gateway up exited early with {proc.returncode}"
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise AssertionError(f"{url} did not come up")


def test_up_serves_proxy_and_sidecar_and_ctrl_c_stops_both(tmp_path):
    proxy_port, sidecar_port = free_port(), free_port()
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"DATABASE_URL", "GATEWAY_DATABASE_URL", "REDIS_URL", "CHAIN_RPC_URL"}
    }
    env.update(
        GATEWAY_HOME=str(tmp_path), PROXY_PORT=str(proxy_port), SIDECAR_PORT=str(sidecar_port), PROXY_WORKERS="1"
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "gateway", "up"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        _wait_for(f"http://127.0.0.1:{proxy_port}/health/liveliness", proc)
        _wait_for(f"http://127.0.0.1:{sidecar_port}/readyz", proc)
        assert (tmp_path / "gateway.db").exists() and (tmp_path / "master_key").exists()
        proc.send_signal(signal.SIGINT)
        output, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, output[-2000:]
    assert "payments are not configured" in output and "next steps" in output
    for port in (proxy_port, sidecar_port):
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"http://127.0.0.1:{port}/", timeout=1)
