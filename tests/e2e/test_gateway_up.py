"""`gateway up` as a user runs it: one command serves the proxy and the sidecar; Ctrl-C stops both, SIGHUP reloads,
and its children never outlive it."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import openai
import pytest
import yaml

from devtools.proxy_process import free_port
from gateway.config import REPO_ROOT
from gateway.proxy import loaded

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


def _env(home, **settings: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"DATABASE_URL", "GATEWAY_DATABASE_URL", "REDIS_URL", "CHAIN_RPC_URL", "SIWE_DOMAIN"}
    }
    return env | {"GATEWAY_HOME": str(home), **settings}


def _gateway(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "gateway", *args], env=env, capture_output=True, text=True, timeout=60)


def _demo_calls(proxy_port: int, env: dict[str, str]) -> None:
    """A newcomer's first calls to the demo model, as the README's walk-through makes them."""
    wallet = "0x1111111111111111111111111111111111111111"
    granted = _gateway(env, "credits", "grant", "--wallet", wallet, "--credits", "1000", "--reference", "first-grant")
    assert granted.returncode == 0, granted.stderr
    key = json.loads(_gateway(env, "keys", "create", "--wallet", wallet, "--json").stdout)["key"]
    client = openai.OpenAI(base_url=f"http://127.0.0.1:{proxy_port}/v1", api_key=key, max_retries=0, timeout=60)
    hi = [{"role": "user", "content": "hi"}]
    assert "credit-gateway demo" in client.chat.completions.create(model="demo", messages=hi).choices[0].message.content
    short = client.chat.completions.create(model="demo", messages=hi, max_tokens=3)
    assert short.usage.completion_tokens == 3 and short.choices[0].finish_reason == "length"
    chunks = list(client.chat.completions.create(model="demo", messages=hi, max_tokens=2, stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)


def test_up_serves_proxy_and_sidecar_and_ctrl_c_stops_both(tmp_path):
    """Ports of one's own without SIWE_DOMAIN: the page's domain follows SIDECAR_PORT, the output names the page
    and the GATEWAY_HOME the next steps need; the demo model's first calls leave `gateway reconcile` clean."""
    proxy_port, sidecar_port = free_port(), free_port()
    env = _env(tmp_path, PROXY_PORT=str(proxy_port), SIDECAR_PORT=str(sidecar_port), PROXY_WORKERS="1")
    proc = subprocess.Popen(
        [sys.executable, "-m", "gateway", "up"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        _wait_for(f"http://127.0.0.1:{proxy_port}/health/liveliness", proc)
        _wait_for(f"http://127.0.0.1:{sidecar_port}/readyz", proc)
        assert (tmp_path / "gateway.db").exists() and (tmp_path / "master_key").exists()
        config = httpx.get(f"http://127.0.0.1:{sidecar_port}/api/v1/config", timeout=10).json()
        assert config["siwe_domain"] == f"localhost:{sidecar_port}"
        _demo_calls(proxy_port, env)
        proc.send_signal(signal.SIGINT)
        output, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, output[-2000:]
    assert "payments are not configured" in output and "next steps" in output
    assert f"credits page: http://localhost:{sidecar_port}/" in output
    assert f"GATEWAY_HOME={tmp_path.resolve()} .venv/bin/gateway credits grant" in output, output
    reconciled = _gateway(env, "reconcile", "--json")
    assert reconciled.returncode == 0, reconciled.stdout + reconciled.stderr
    report = json.loads(reconciled.stdout)
    assert report["ok"] and report["uncollected"]["total_micros"] == 0, report["uncollected"]
    for port in (proxy_port, sidecar_port):
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"http://127.0.0.1:{port}/", timeout=1)


def test_up_refuses_a_busy_port_and_a_domain_that_cannot_sign_in(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        refused = _gateway(_env(tmp_path, PROXY_PORT=str(busy), SIDECAR_PORT=str(free_port())), "up")
    assert refused.returncode == 2 and f"port {busy} busy: set PROXY_PORT" in refused.stderr, refused.stderr
    sidecar_port = free_port()
    mismatch = _gateway(_env(tmp_path, SIDECAR_PORT=str(sidecar_port), SIWE_DOMAIN="localhost:8000"), "up")
    assert mismatch.returncode == 2 and mismatch.stderr.count("\n") == 1, mismatch.stderr
    assert f"SIWE_DOMAIN localhost:8000 does not match SIDECAR_PORT {sidecar_port}" in mismatch.stderr
    assert not (tmp_path / "gateway.db").exists()  # refused before anything was created


def _descendants(pid: int) -> set[int]:
    """Every process below `pid` (from /proc: each task's children)."""
    found: set[int] = set()
    todo = [pid]
    while todo:
        parent = todo.pop()
        for task in Path(f"/proc/{parent}/task").glob("*"):
            try:
                children = {int(c) for c in (task / "children").read_text().split()}
            except OSError:
                continue
            todo.extend(children - found)
            found |= children
    return found


def _alive(pids: set[int]) -> set[int]:
    return {pid for pid in pids if Path(f"/proc/{pid}").exists() and "Z" not in _state(pid)}


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "Z"


def test_up_config_path_reload_on_sighup_and_no_orphans_when_killed(tmp_path):
    """`gateway up --config PATH`: the sidecar's price list is PATH's; SIGHUP reloads it in the proxy and the
    price list follows; a SIGKILLed supervisor takes every child down (PR_SET_PDEATHSIG, then their drain)."""
    config = tmp_path / "my_config.yaml"
    document = yaml.safe_load((REPO_ROOT / "litellm_config.yaml").read_text())
    document["model_list"][0]["model_name"] = "my-demo"
    config.write_text(yaml.safe_dump(document))
    proxy_port, sidecar_port = free_port(), free_port()
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"DATABASE_URL", "GATEWAY_DATABASE_URL", "REDIS_URL", "CHAIN_RPC_URL", "GATEWAY_LITELLM_CONFIG"}
    }
    env.update(
        GATEWAY_HOME=str(tmp_path), PROXY_PORT=str(proxy_port), SIDECAR_PORT=str(sidecar_port), PROXY_WORKERS="2"
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "gateway", "up", "--config", str(config)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    children: set[int] = set()
    try:
        _wait_for(f"http://127.0.0.1:{proxy_port}/health/liveliness", proc)
        _wait_for(f"http://127.0.0.1:{sidecar_port}/readyz", proc)
        models = f"http://127.0.0.1:{sidecar_port}/api/v1/models"
        assert [m["id"] for m in httpx.get(models, timeout=5).json()["data"]] == ["my-demo"]

        deadline = time.monotonic() + 120
        while len(loaded.read_all(tmp_path)) < 2:  # each worker registers once its hooks load
            assert time.monotonic() < deadline
            time.sleep(0.3)
        document["model_list"][0]["litellm_params"]["input_cost_per_token"] = 0.000001
        config.write_text(yaml.safe_dump(document))
        proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 5
        while httpx.get(models, timeout=5).json()["data"][0]["pricing"]["prompt_usd_per_token"] != "0.000002":
            assert time.monotonic() < deadline, "the price list did not follow the reload within 5 s"
            time.sleep(0.2)
        assert proc.poll() is None  # SIGHUP no longer kills the supervisor

        children = _descendants(proc.pid)
        assert len(children) >= 4  # the proxy's parent, its two workers, the sidecar
        proc.kill()
        proc.wait()
        deadline = time.monotonic() + 60
        while _alive(children):
            assert time.monotonic() < deadline, f"orphans left: {_alive(children)}"
            time.sleep(0.5)
    finally:
        if proc.poll() is None:
            proc.kill()
        for pid in _alive(children):
            os.kill(pid, signal.SIGKILL)
