"""The Prometheus files in deploy/prometheus, checked by Debian's promtool (`make test` installs it): the rules
are valid, their unit tests pass (every alert fires on trouble and stays quiet on a healthy stack), the unit
tests catch a broken rule, the scrape config is valid, and every series the rules read is one the gateway
exports."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from gateway.config import REPO_ROOT
from tests.unit.deploy.test_compose import REQUIRED, compose

HERE = REPO_ROOT / "deploy" / "prometheus"
GATEWAY_SOURCES = [*(REPO_ROOT / "gateway" / "observability").glob("*.py")]


def promtool(*args: str, cwd: Path = HERE) -> subprocess.CompletedProcess:
    binary = shutil.which("promtool")
    if binary is None:
        pytest.fail("promtool is missing: `make test` installs it (apt-get install prometheus)")
    return subprocess.run([binary, *args], cwd=cwd, capture_output=True, text=True, timeout=120)


def alerts() -> list[dict]:
    return [rule for group in yaml.safe_load((HERE / "alerts.yml").read_text())["groups"] for rule in group["rules"]]


def test_the_rules_are_valid() -> None:
    proc = promtool("check", "rules", "alerts.yml")
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_the_rule_unit_tests_pass() -> None:
    proc = promtool("test", "rules", "alerts_test.yml")
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_every_alert_is_tested_firing_and_quiet() -> None:
    tests = yaml.safe_load((HERE / "alerts_test.yml").read_text())["tests"]
    cases = [case for test in tests for case in test["alert_rule_test"]]
    for rule in alerts():
        mine = [case for case in cases if case["alertname"] == rule["alert"]]
        assert any(case["exp_alerts"] for case in mine), f"{rule['alert']} is never tested firing"
        assert any(not case["exp_alerts"] for case in mine), f"{rule['alert']} is never tested quiet"


def test_the_unit_tests_catch_a_broken_rule(tmp_path: Path) -> None:
    broken = (
        (HERE / "alerts.yml")
        .read_text()
        .replace(
            "/ sum(rate(gateway_proxy_calls_total[5m])) > 0.01", "/ sum(rate(gateway_proxy_calls_total[5m])) > 0.1"
        )
    )
    assert broken != (HERE / "alerts.yml").read_text()
    (tmp_path / "alerts.yml").write_text(broken)
    shutil.copy(HERE / "alerts_test.yml", tmp_path)
    proc = promtool("test", "rules", "alerts_test.yml", cwd=tmp_path)
    assert proc.returncode != 0 and "GatewayProxy5xx" in proc.stdout + proc.stderr


def test_the_scrape_config_is_valid() -> None:
    proc = promtool("check", "config", "--syntax-only", "prometheus.yml")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    jobs = {job["job_name"] for job in yaml.safe_load((HERE / "prometheus.yml").read_text())["scrape_configs"]}
    assert jobs == {"gateway-proxy", "gateway-sidecar"}


def test_every_series_the_rules_read_is_exported() -> None:
    code = "\n".join(path.read_text() for path in GATEWAY_SOURCES)
    exported = set(re.findall(r'"(gateway_[a-z0-9_]+)"', code))
    read = {name for rule in alerts() for name in re.findall(r"\bgateway_[a-z0-9_]+", rule["expr"])}
    base = {re.sub(r"_(total|bucket)$", "", name) for name in read}
    assert base and base <= exported, sorted(base - exported)


def test_the_monitoring_profile_runs_prometheus_built_from_debian() -> None:
    proc = compose("config", "--format", "json", COMPOSE_PROFILES="monitoring", **REQUIRED)
    assert proc.returncode == 0, proc.stderr
    service = yaml.safe_load(proc.stdout)["services"]["prometheus"]
    assert service["profiles"] == ["monitoring"]
    assert Path(service["build"]["context"]) == HERE
    assert {v["target"] for v in service["volumes"]} == {"/etc/prometheus", "/prometheus"}
    assert "debian:bookworm" in (HERE / "Dockerfile").read_text()
    hadolint = Path(sys.executable).with_name("hadolint")
    lint = subprocess.run([str(hadolint), "--no-color", str(HERE / "Dockerfile")], capture_output=True, text=True)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    assert "prometheus" not in compose("config", "--services", **REQUIRED).stdout.split()  # only with the profile
