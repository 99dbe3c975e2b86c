"""`gateway keys create --limit-credits N --reset P` and `gateway keys set-limit`, as a subprocess on the
embedded database: the limit is stored and shown, and bad input is one line with nothing changed."""

from __future__ import annotations

import json

from tests.integration.cli.test_cli_errors import (
    WALLET,
    gateway,
    migrated_home_fixture,  # noqa: F401 - the fixture `migrated_home`
    one_line_error,
)


def test_create_with_a_limit_then_change_and_remove_it(migrated_home):
    home, _ = migrated_home
    made = gateway(
        home, "keys", "create", "--wallet", WALLET, "--limit-credits", "12.5", "--reset", "monthly", "--json"
    )
    assert made.returncode == 0, made.stderr
    key = json.loads(made.stdout)
    assert (key["limit_micros"], key["limit_credits"], key["limit_reset"], key["usage_micros"]) == (
        12_500, "12.5", "monthly", 0
    )  # fmt: skip
    assert key["resets_at"].endswith("T00:00:00+00:00")
    changed = json.loads(gateway(home, "keys", "set-limit", str(key["id"]), "--limit-credits", "3", "--json").stdout)
    assert (changed["limit_micros"], changed["limit_reset"]) == (3_000, "monthly")  # no --reset: the period is kept
    said = gateway(home, "keys", "set-limit", str(key["id"]), "--limit-credits", "0.4")
    assert said.stdout.strip() == f"key {key['id']}: limit 3 -> 0.4 credits, reset monthly", said
    said = gateway(home, "keys", "set-limit", str(key["id"]), "--limit-credits", "0.4", "--reset", "none")
    assert said.stdout.strip() == f"key {key['id']}: limit 0.4 credits, reset monthly -> none", said
    removed = json.loads(gateway(home, "keys", "set-limit", str(key["id"]), "--none", "--json").stdout)
    assert (removed["limit_micros"], removed["limit_remaining_micros"]) == (None, None)
    listed = gateway(home, "keys", "list", "--wallet", WALLET, COLUMNS="200")
    assert listed.returncode == 0 and "credits used / limit" in listed.stdout


def test_bad_limits_are_one_line_and_change_nothing(migrated_home):
    home, key_id = migrated_home
    set_limit = ("keys", "set-limit", str(key_id))
    assert "--limit-credits" in one_line_error(gateway(home, *set_limit, "--limit-credits", "x"), 2)
    assert "0.001" in one_line_error(gateway(home, *set_limit, "--limit-credits", "0.0001"), 2)
    assert "exactly one" in one_line_error(gateway(home, *set_limit), 2)
    assert "no key" in one_line_error(gateway(home, "keys", "set-limit", "999999", "--none"), 2)
    bad_reset = gateway(home, "keys", "set-limit", str(key_id), "--none", "--reset", "hourly")
    assert bad_reset.returncode == 2 and "Traceback" not in bad_reset.stderr
    keys = json.loads(gateway(home, "keys", "list", "--wallet", WALLET, "--json").stdout)
    assert next(k for k in keys if k["id"] == key_id)["limit_micros"] is None
