"""Run the real LiteLLM proxy with this repo's hooks and config (model list pointed at a fake upstream)."""

from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path

import httpx
import yaml

from gateway.cli.master_key import ensure_master_key
from gateway.cli.supervisor import child_env, proxy_argv
from gateway.config import REPO_ROOT, Settings


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_test_config(folder: Path, upstream_base_url: str) -> Path:
    """The repo's litellm_config.yaml (hooks, settings, demo model) plus models served by the fake upstream."""
    config = yaml.safe_load((REPO_ROOT / "litellm_config.yaml").read_text())
    fake = {"api_base": upstream_base_url, "api_key": "fake-provider-key"}
    config["model_list"] += [
        {"model_name": "gpt-4o-mini", "litellm_params": {"model": "openai/gpt-4o-mini", **fake}},
        {"model_name": "text-embedding-3-small", "litellm_params": {"model": "openai/text-embedding-3-small", **fake}},
        {"model_name": "unpriced", "litellm_params": {"model": "openai/my-private-model", **fake}},
        {  # LiteLLM appends /v1/messages to an Anthropic api_base
            "model_name": "claude-haiku-4-5",
            "litellm_params": {
                "model": "anthropic/claude-haiku-4-5",
                "api_base": upstream_base_url.removesuffix("/v1"),
                "api_key": "fake-provider-key",
            },
        },
        {
            "model_name": "gpt-3.5-turbo-instruct",
            "litellm_params": {"model": "text-completion-openai/gpt-3.5-turbo-instruct", **fake},
        },
    ]
    path = folder / "litellm_config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


class ProxyProcess:
    def __init__(self, settings: Settings, config: Path, log_path: Path, extra_env: dict[str, str] | None = None):
        self.settings = settings
        self.config = config
        self.log_path = log_path
        self.extra_env = extra_env or {}  # settings child_env does not pass on (the proxy reads them itself)
        self.master_key = ensure_master_key(settings)
        self.proc: subprocess.Popen | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.settings.proxy_port}/v1"

    def start(self, timeout: float = 90) -> ProxyProcess:
        log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            proxy_argv(self.settings, self.config),
            env={**child_env(self.settings, self.master_key), **self.extra_env},
            cwd=str(REPO_ROOT),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"proxy exited with {self.proc.returncode}:\n{self.log_path.read_text()[-3000:]}")
            try:
                if (
                    httpx.get(f"http://127.0.0.1:{self.settings.proxy_port}/health/liveliness", timeout=1).status_code
                    == 200
                ):
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        self.stop()
        raise RuntimeError(f"proxy did not start in {timeout}s:\n{self.log_path.read_text()[-3000:]}")

    def stop(self) -> None:
        if self.proc:
            stop_process(self.proc)


def stop_process(proc: subprocess.Popen, timeout: float = 15) -> None:
    """Terminate a child process (kill it if it does not exit within `timeout`) and reap it."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
