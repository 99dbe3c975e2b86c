"""Schemathesis fuzzes the sidecar through its own OpenAPI document: no 5xx, every answer as documented.

The app runs under uvicorn (as deployed) in a background thread, on a database of its own, signed in
with a real SIWE session so the account routes are exercised past authentication (and the operator routes
with an operator's session as well). Bounded: a few
examples per operation, well under two minutes in all.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
import schemathesis
from eth_account import Account
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.specs.openapi.checks import positive_data_acceptance

from devtools.pg import migrated_database
from tests.integration.sidecar.conftest import free_port, served, sign, siwe_text

MAX_EXAMPLES = 25
OPERATOR = Account.create()  # in the fuzzed server's OPERATOR_WALLETS


@pytest.fixture(scope="module")
def fuzz_server(make_settings, anvil, tmp_path_factory) -> Iterator[str]:
    """The sidecar under uvicorn on a fresh database, payments configured on the local anvil chain (so
    confirm answers from the chain instead of 503) and a price list published (GET /models answers 200);
    yields its base URL."""
    home = tmp_path_factory.mktemp("fuzz-home")
    (home / "price_list.json").write_text('{"object": "list", "data": []}')
    with migrated_database("gw_fuzz") as url:
        yield from _serve(make_settings, anvil, url, home)


def _serve(make_settings, anvil, url: str, home) -> Iterator[str]:
    port = free_port()
    settings = make_settings(
        database_url=url,
        gateway_home=home,
        host="127.0.0.1",
        sidecar_port=port,
        siwe_domain=f"127.0.0.1:{port}",
        chain_rpc_url=anvil.url,
        usdc_address=anvil.usdc.address,
        dao_wallet_address=anvil.accounts[9].address,
        rate_limit_payment_confirm="100000/minute",
        operator_wallets=[OPERATOR.address],
    )
    with served(settings) as base:
        yield base


@pytest.fixture(scope="module")
def fuzz_session(fuzz_server: str) -> str:
    """The session id of a wallet signed in on the fuzzed server."""
    return _sign_in(fuzz_server, Account.create())


@pytest.fixture(scope="module")
def operator_session(fuzz_server: str) -> str:
    return _sign_in(fuzz_server, OPERATOR)


def _sign_in(fuzz_server: str, signer) -> str:
    domain = fuzz_server.removeprefix("http://")
    with httpx.Client(base_url=fuzz_server, headers={"Origin": fuzz_server}) as client:
        nonce = client.get("/api/v1/auth/nonce").json()["nonce"]
        text = siwe_text(signer.address, nonce, domain=domain, uri=f"{fuzz_server}/")
        response = client.post("/api/v1/auth/verify", json={"message": text, "signature": sign(signer, text)})
        assert response.status_code == 200, response.text
        return response.cookies["gw_session"]


@pytest.fixture(scope="module")
def fuzz_schema(fuzz_server: str):
    schema = schemathesis.openapi.from_url(f"{fuzz_server}/api/v1/openapi.json")
    return schema.exclude(method="POST", path="/api/v1/auth/logout")  # it would end the fuzzer's session


def _has_inputs(operation) -> bool:
    return any(len(group) for group in (operation.path_parameters, operation.query, operation.body))


# schemathesis' lazy pytest loader (`schemathesis.pytest.from_fixture`) fails on pytest 9.2 (it sets the
# removed `Function._nodeid`), so each operation's strategy is driven through Hypothesis directly.
@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_every_operation_answers_as_documented(fuzz_server, fuzz_schema, fuzz_session, mode):
    operations = [result.ok() for result in fuzz_schema.get_all_operations()]
    assert len(operations) >= 10
    _fuzz(operations, fuzz_server, fuzz_session, mode)


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_every_operator_operation_answers_as_documented(fuzz_server, fuzz_schema, operator_session, mode):
    operations = [r.ok() for r in fuzz_schema.get_all_operations() if r.ok().path.startswith("/api/v1/ops/")]
    assert len(operations) >= 10
    _fuzz(operations, fuzz_server, operator_session, mode)


def _fuzz(operations: list, fuzz_server: str, session: str, mode: GenerationMode) -> None:
    browser = {"cookies": {"gw_session": session}, "headers": {"Origin": fuzz_server}}  # signed in, same origin
    if mode is GenerationMode.NEGATIVE:  # only inputs can be made invalid
        operations = [op for op in operations if _has_inputs(op)]
    for operation in operations:
        # more than OpenAPI can say, answered 422: a range of days (first <= last, at most MAX_DAYS), and a wallet's
        # EIP-55 checksum (a mixed-case address must match it, as sign-in and the CLI require)
        beyond_schema = {"/api/v1/ops/business", "/api/v1/ops/accounts", "/api/v1/ops/grants"}
        excluded = [positive_data_acceptance] if operation.path in beyond_schema else []

        @given(case=operation.as_strategy(generation_mode=mode, **browser))
        @settings(max_examples=MAX_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def answers_as_documented(case) -> None:
            case.call_and_validate(excluded_checks=excluded)  # noqa: B023 (called at once, in this iteration)

        answers_as_documented()
