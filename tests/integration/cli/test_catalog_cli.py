"""`gateway models` and `gateway check` as a subprocess against configs with priced, map-priced, unpriced and
broken models, and `gateway up` refusing an unpriced model in one line before anything starts."""

from __future__ import annotations

import json

import pytest

from tests.fixtures.configs import (
    MAP_PRICED,
    MISSING_ENV,
    NO_OUTPUT_LIMIT,
    NOT_A_NUMBER,
    PRICED,
    UNPRICED,
    write_config,
)
from tests.integration.cli.test_cli_errors import gateway

pytestmark = pytest.mark.timeout(120)


def test_the_price_list_shows_user_prices_and_provider_prices_only_on_request(tmp_path):
    config = write_config(tmp_path, PRICED, MAP_PRICED, UNPRICED)
    listed = gateway(tmp_path, "models", "--config", str(config), "--json")
    assert listed.returncode == 0, listed.stderr
    models = {m["id"]: m for m in json.loads(listed.stdout)["data"]}
    assert set(models) == {"house", "gpt-4o-mini"}  # the unpriced model cannot be called: not offered
    assert models["house"]["pricing"] == {
        "prompt_usd_per_token": "0.000002",
        "prompt_usd_per_1m_tokens": "2",
        "prompt_credits_per_1m_tokens": "2000",
        "completion_usd_per_token": "0.000006",
        "completion_usd_per_1m_tokens": "6",
        "completion_credits_per_1m_tokens": "6000",
    }  # fmt: skip  (markup 2.0)
    assert models["house"]["max_output_tokens"] == 2048
    assert models["gpt-4o-mini"]["pricing"]["prompt_usd_per_1m_tokens"] == "0.3"  # $0.15 in LiteLLM's map x 2
    assert (models["gpt-4o-mini"]["context_tokens"], models["gpt-4o-mini"]["max_output_tokens"]) == (128000, 16384)
    assert "provider" not in listed.stdout and "0.00000015" not in listed.stdout
    operator = json.loads(gateway(tmp_path, "models", "--config", str(config), "--json", "--provider-prices").stdout)
    mini = next(m for m in operator["data"] if m["id"] == "gpt-4o-mini")
    assert mini["provider_input_usd_per_token"] == "0.00000015"


def test_check_reports_every_problem_and_fails_on_errors(tmp_path):
    config = write_config(tmp_path, PRICED, MAP_PRICED, NO_OUTPUT_LIMIT, UNPRICED, NOT_A_NUMBER, MISSING_ENV)
    checked = gateway(tmp_path, "check", "--config", str(config), "--json")
    assert checked.returncode == 1, checked.stderr
    report = json.loads(checked.stdout)
    problems = {(p["severity"], p["model"]): p["message"] for p in report["problems"]}
    assert "no price" in problems["error", "private"] and "input_cost_per_token" in problems["error", "private"]
    assert "'0.000O1', not a price" in problems["error", "typo"]
    assert "GATEWAY_TEST_MISSING_PROVIDER_KEY" in problems["error", "needs-key"]
    assert "output limit unknown" in problems["warning", "open-ended"]
    assert len(problems) == 4 and not report["ok"]
    assert {m["id"] for m in report["models"]} == {"house", "gpt-4o-mini", "open-ended", "needs-key"}

    fine = gateway(tmp_path, "check", "--config", str(write_config(tmp_path, PRICED, name="ok.yaml")), "--json")
    assert fine.returncode == 0 and json.loads(fine.stdout)["ok"]
    missing = gateway(tmp_path, "check", "--config", str(tmp_path / "nope.yaml"), "--json")
    assert missing.returncode == 1 and "cannot read" in missing.stdout


def test_up_refuses_an_unpriced_model_in_one_line(tmp_path):
    config = write_config(tmp_path, PRICED, UNPRICED)
    for args, env in (((("--config", str(config))), {}), ((), {"GATEWAY_LITELLM_CONFIG": str(config)})):
        refused = gateway(tmp_path, "up", *args, **env)
        assert refused.returncode == 2, refused.stderr
        lines = [line for line in refused.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("error: model 'private': no price"), refused.stderr
        assert lines[0].endswith("not starting") and "input_cost_per_token" in lines[0]
    assert not (tmp_path / "gateway.db").exists()  # refused before anything started (or migrated)
