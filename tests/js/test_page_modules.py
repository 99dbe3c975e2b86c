"""The page's hand-written JavaScript against the Python libraries the server trusts: node builds sign-in
messages, EIP-55 addresses and ERC-20 call data; signinwithethereum, our own `verify_message`, eth_utils and
eth_abi must agree. Also runs the node unit tests (`node --test tests/js/`) as part of the suite."""

from __future__ import annotations

import json
import secrets
import subprocess
from datetime import UTC, datetime, timedelta

import pytest
import siwe
from eth_abi import encode
from eth_account import Account
from eth_account.messages import encode_defunct
from eth_utils import to_checksum_address

from gateway.auth.nonces import IssuedNonce
from gateway.auth.siwe import SiwePolicy, verify_message
from gateway.config import REPO_ROOT

JS = REPO_ROOT / "gateway" / "sidecar" / "static" / "js"
SCRIPT = """
const [{ buildSiweMessage }, { toChecksumAddress }, { transferCallData }] = await Promise.all(
  ["siwe.js", "address.js", "erc20.js"].map((m) => import(new URL(m, process.argv[1]))));
const input = JSON.parse(process.argv[2]);
console.log(JSON.stringify({
  messages: input.messages.map((fields) => buildSiweMessage({ ...fields, now: new Date(fields.now) })),
  checksums: input.addresses.map(toChecksumAddress),
  transfers: input.transfers.map(([to, amount]) => transferCallData(to, BigInt(amount))),
}));
"""


def run_node(payload: dict) -> dict:
    out = subprocess.run(
        ["node", "--input-type=module", "-e", SCRIPT, f"{JS.as_uri()}/", json.dumps(payload)],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    return json.loads(out.stdout)


class OneNonce:
    """A nonce store that issued exactly one nonce (what the sidecar's stores do, minus the storage)."""

    def __init__(self, nonce: str):
        self.live = {nonce}

    async def issue(self, ttl: timedelta = timedelta(minutes=10)) -> IssuedNonce:
        raise NotImplementedError

    async def is_live(self, nonce: str) -> bool:
        return nonce in self.live

    async def consume(self, nonce: str) -> bool:
        if nonce not in self.live:
            return False
        self.live.remove(nonce)
        return True


def test_node_unit_tests_pass() -> None:
    result = subprocess.run(["node", "--test", "tests/js/"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "# fail 0" in result.stdout


async def test_sign_in_messages_are_accepted_by_the_server() -> None:
    wallets = [Account.create() for _ in range(3)]
    now = datetime.now(UTC)
    fields = [
        {"domain": "127.0.0.1:8000", "address": w.address.lower(), "statement": "Sign in to credit-gateway.",
         "uri": "http://127.0.0.1:8000/", "version": "1", "chainId": 8453, "nonce": secrets.token_hex(16),
         "now": now.isoformat()}
        for w in wallets
    ]  # fmt: skip
    messages = run_node({"messages": fields, "addresses": [], "transfers": []})["messages"]
    policy = SiwePolicy(domain="127.0.0.1:8000", chain_id=8453)
    for wallet, sent, text in zip(wallets, fields, messages, strict=True):
        parsed = siwe.SiweMessage.from_message(text, abnf=True)  # the strict ABNF parser agrees too
        assert parsed.address == wallet.address  # EIP-55, as EIP-4361 requires
        assert (parsed.domain, parsed.chain_id, parsed.nonce, str(parsed.uri)) == (
            sent["domain"],
            8453,
            sent["nonce"],
            sent["uri"],
        )
        assert parsed.statement == sent["statement"]
        expires = datetime.fromisoformat(str(parsed.expiration_time).replace("Z", "+00:00"))
        assert timedelta(minutes=9) < expires - now <= timedelta(minutes=10, seconds=1)
        signature = wallet.sign_message(encode_defunct(text=text)).signature.to_0x_hex()
        nonces = OneNonce(sent["nonce"])
        assert await verify_message(text, signature, policy, nonces) == wallet.address.lower()
        assert nonces.live == set()


def test_checksums_match_eth_utils() -> None:
    addresses = ["0x" + secrets.token_hex(20) for _ in range(50)] + ["0x" + "0" * 40, "0x" + "f" * 40]
    assert run_node({"messages": [], "addresses": addresses, "transfers": []})["checksums"] == [
        to_checksum_address(a) for a in addresses
    ]


@pytest.mark.parametrize("amount", [1, 10_000_000, 2**53 + 1, 2**256 - 1])
def test_transfer_call_data_matches_eth_abi(amount: int) -> None:
    to = to_checksum_address("0x" + secrets.token_hex(20))
    [data] = run_node({"messages": [], "addresses": [], "transfers": [[to, str(amount)]]})["transfers"]
    assert data == "0xa9059cbb" + encode(["address", "uint256"], [to, amount]).hex()
