"""The Python half of the injected test wallet (wallet_provider.js): it holds a private key, signs with
eth_account and sends real transactions to anvil; the page reaches it through `page.expose_function`.

A test can make the person behind it refuse a request (EIP-1193 error 4001), put it on another chain, or
give it less USDC; reads (eth_call, receipts, block number) go to anvil as a real wallet's RPC would.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from eth_account import Account
from eth_account.messages import encode_defunct
from eth_account.signers.local import LocalAccount
from playwright.async_api import BrowserContext

from devtools.chain.anvil import Anvil

PROVIDER_SCRIPT = Path(__file__).with_name("wallet_provider.js").read_text()
USER_REJECTED = 4001
UNRECOGNIZED_CHAIN = 4902
FORWARDED = frozenset({"eth_call", "eth_blockNumber", "eth_getTransactionReceipt", "eth_estimateGas", "eth_getBalance"})


@dataclass
class TestWallet:
    chain: Anvil
    name: str = "Test Wallet"
    account: LocalAccount = field(default_factory=Account.create)
    chain_id: int = 8453
    legacy: bool = False  # only window.ethereum, no EIP-6963 announcement
    refuse: set[str] = field(default_factory=set)  # methods the person declines (4001)
    known_chains: frozenset[int] = frozenset({1, 8453})
    uuid: str = field(default_factory=lambda: str(uuid.uuid4()))
    calls: list[str] = field(default_factory=list)

    __test__ = False  # not a pytest class

    @property
    def address(self) -> str:
        return self.account.address

    @property
    def rdns(self) -> str:
        return f"test.wallet.{self.name.lower().replace(' ', '-')}"

    def announcement(self) -> dict[str, Any]:
        return {"name": self.name, "rdns": self.rdns, "uuid": self.uuid, "legacy": self.legacy}

    def fund(self, usdc_units: int) -> TestWallet:
        self.chain.set_balance(self.address, 10**18)
        if usdc_units:
            self.chain.usdc_mint(self.address, usdc_units)
        return self

    def handle(self, method: str, params: list[Any]) -> dict[str, Any]:
        self.calls.append(method)
        if method in self.refuse:
            return {"error": {"code": USER_REJECTED, "message": "User rejected the request."}}
        try:
            return {"result": self._answer(method, params)}
        except WalletRpcError as exc:
            return {"error": {"code": exc.code, "message": str(exc)}}

    def _answer(self, method: str, params: list[Any]) -> Any:
        if method in ("eth_requestAccounts", "eth_accounts"):
            return [self.address.lower()]  # as most wallets answer: lower case
        if method == "eth_chainId":
            return hex(self.chain_id)
        if method == "wallet_switchEthereumChain":
            wanted = int(params[0]["chainId"], 16)
            if wanted not in self.known_chains:
                raise WalletRpcError(UNRECOGNIZED_CHAIN, f"Unrecognized chain ID {hex(wanted)}")
            self.chain_id = wanted
            return None
        if method == "personal_sign":
            message = bytes.fromhex(params[0][2:])
            return self.account.sign_message(encode_defunct(primitive=message)).signature.to_0x_hex()
        if method == "eth_sendTransaction":
            return self._send(params[0])
        if method in FORWARDED:
            answer = self.chain.w3.provider.make_request(method, params)
            if "error" in answer:
                raise WalletRpcError(answer["error"].get("code", -32000), answer["error"].get("message", "error"))
            return answer["result"]
        raise WalletRpcError(4200, f"method {method} is not supported by the test wallet")

    def _send(self, tx: dict[str, Any]) -> str:
        if tx["from"].lower() != self.address.lower():
            raise WalletRpcError(4100, "that account is not this wallet's")
        w3 = self.chain.w3
        filled = {
            "from": self.address, "to": w3.to_checksum_address(tx["to"]), "data": tx.get("data", "0x"),
            "value": int(tx.get("value", "0x0"), 16), "chainId": self.chain_id,
            "nonce": w3.eth.get_transaction_count(self.address, "pending"),
            "maxPriorityFeePerGas": 10**9, "maxFeePerGas": 2 * w3.eth.get_block("latest")["baseFeePerGas"] + 10**9,
        }  # fmt: skip
        filled["gas"] = w3.eth.estimate_gas(filled)
        signed = self.account.sign_transaction(filled)
        return "0x" + bytes(w3.eth.send_raw_transaction(signed.raw_transaction)).hex()


class WalletRpcError(Exception):
    def __init__(self, code: int, message: str):
        super().__init__(message)
        self.code = code


async def install(context: BrowserContext, wallets: list[TestWallet]) -> None:
    """Inject `wallets` into every page of a Playwright context before the page's own scripts run."""

    def request(index: int, method: str, params: str) -> str:
        return json.dumps(wallets[index].handle(method, json.loads(params)))

    await context.expose_function("__walletRequest", request)
    await context.add_init_script(f"window.__testWallets = {json.dumps([w.announcement() for w in wallets])};")
    await context.add_init_script(PROVIDER_SCRIPT)
