"""make container-smoke, once the stack is up (scripts/container-smoke.sh runs this on the host): an admin
grants credits and creates a key with the CLI inside the sidecar container, a client makes one plain and one
streamed billed call through the published port, and the charges, the balance and `gateway reconcile`
(inside the container again) must agree. Exits non-zero, saying what differed, otherwise prints a summary.

Usage: python -m tests.container.smoke BASE_URL COMPOSE_COMMAND...
"""

from __future__ import annotations

import json
import secrets
import subprocess
import sys

import openai

from gateway.core.money import micros_to_credits

GRANT_CREDITS = 1000
CHAT = [{"role": "user", "content": "hello from the container smoke test"}]


def gateway(compose: list[str], *args: str, check: bool = True) -> subprocess.CompletedProcess:
    """`gateway ARGS --json` in the running sidecar container."""
    proc = subprocess.run(
        [*compose, "exec", "-T", "sidecar", "gateway", *args, "--json"], capture_output=True, text=True, timeout=120
    )
    if check and proc.returncode != 0:
        raise SystemExit(f"`gateway {' '.join(args)}` failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc


def doc(compose: list[str], *args: str) -> dict | list:
    return json.loads(gateway(compose, *args).stdout)


def expect(condition: bool, what: str) -> None:
    if not condition:
        raise SystemExit(f"container smoke: {what}")


def main(base_url: str, compose: list[str]) -> None:
    wallet = "0x" + secrets.token_hex(20)
    grant = doc(
        compose,
        "credits",
        "grant",
        "--wallet",
        wallet,
        "--credits",
        str(GRANT_CREDITS),
        "--reference",
        f"smoke-{wallet}",
    )
    key = doc(compose, "keys", "create", "--wallet", wallet, "--label", "container-smoke")["key"]
    client = openai.OpenAI(base_url=base_url, api_key=key, max_retries=0, timeout=60)

    raw = client.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=CHAT, max_tokens=20)
    plain = raw.parse()
    expect(bool(plain.choices[0].message.content), "the plain call returned no text")
    header = raw.headers.get("x-gateway-credits-charged")
    stream = client.chat.completions.create(model="gpt-4o-mini", messages=CHAT, max_tokens=20, stream=True)
    streamed_text = "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)
    expect(bool(streamed_text), "the streamed call returned no text")
    try:
        openai.OpenAI(base_url=base_url, api_key="sk-cg-not-a-key", max_retries=0).models.list()
        expect(False, "an unknown key was let in")
    except openai.AuthenticationError:
        pass

    for _ in range(6):  # the lb spreads calls over both replicas (round-robin over the addresses of `proxy`)
        client.models.list()
    logs = subprocess.run([*compose, "logs", "--no-color", "proxy"], capture_output=True, text=True, timeout=60).stdout
    served = {line.split("|", 1)[0].strip() for line in logs.splitlines() if "GET /v1/models" in line}
    expect(len(served) == 2, f"expected both proxy replicas to serve calls, saw {sorted(served)}")

    calls = doc(compose, "usage", "--wallet", wallet)
    expect(len(calls) == 2 and {c["streamed"] for c in calls} == {True, False}, f"expected 2 calls, got {calls}")
    expect(
        all(c["charged_micros"] > 0 and c["user_price_micros"] >= c["provider_cost_micros"] for c in calls),
        f"a call was not charged or sold below cost: {calls}",
    )
    plain_row = next(c for c in calls if not c["streamed"])
    expect(
        header == micros_to_credits(plain_row["charged_micros"]), f"x-gateway-credits-charged {header!r} != {plain_row}"
    )
    balance = doc(compose, "balance", "--wallet", wallet)
    charged = sum(c["charged_micros"] for c in calls)
    expect(
        balance["balance_micros"] == grant["amount_micros"] - charged and balance["held_micros"] == 0,
        f"balance {balance} after charges of {charged} micros on a grant of {grant['amount_micros']}",
    )
    reconcile = gateway(compose, "reconcile", check=False)
    expect(
        reconcile.returncode == 0 and json.loads(reconcile.stdout)["ok"],
        f"reconcile: {reconcile.stdout} {reconcile.stderr}",
    )
    print(
        f"container smoke: 2 calls billed {charged} micros ({micros_to_credits(charged)} credits) "
        f"of {GRANT_CREDITS} granted; balance {balance['balance_credits']}; reconcile ok"
    )


if __name__ == "__main__":
    if len(sys.argv) < 3:
        raise SystemExit(__doc__)
    main(sys.argv[1], sys.argv[2:])
