"""A thin async JSON-RPC client for the few EVM calls top-ups need, and ERC-20 `Transfer` log decoding.

It talks to CHAIN_RPC_URL only. Anything short of a well-formed answer (connection refused, timeout,
HTTP error, malformed reply, JSON-RPC error object) raises `ChainUnavailable`, so callers fail closed and
write nothing. Addresses and hashes come back as lower-case 0x hex, amounts as Python ints.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

import httpx

from gateway.failures import ChainUnavailable

# keccak256("Transfer(address,address,uint256)"): topic 0 of every ERC-20 Transfer log (checked in the tests).
TRANSFER_TOPIC = "0xddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef"


class RPCError(ChainUnavailable):
    """The node answered with a JSON-RPC error object (`error`: code, message, data), e.g. a call that reverts."""

    def __init__(self, method: str, error: object) -> None:
        super().__init__(f"chain RPC {method} answered with an error: {error!r:.300}")
        self.error = error if isinstance(error, dict) else {}

    @property
    def reverted(self) -> bool:
        """Whether the node says the call or transaction reverted (geth and anvil: code 3 or 'execution reverted')."""
        return self.error.get("code") == 3 or "revert" in str(self.error.get("message", "")).lower()


@dataclass(frozen=True)
class Transfer:
    """One decoded ERC-20 `Transfer(from, to, value)` log."""

    token: str
    from_address: str
    to_address: str
    value: int
    tx_hash: str
    log_index: int
    block_number: int
    block_hash: str


@dataclass(frozen=True)
class Receipt:
    tx_hash: str
    status: int  # 1 success, 0 reverted
    block_number: int
    block_hash: str
    transfers: tuple[Transfer, ...]


def address_topic(address: str) -> str:
    """An address as a 32-byte indexed-topic value (for eth_getLogs filters)."""
    return "0x" + "0" * 24 + address[2:].lower()


def _topic_address(topic: str) -> str:
    return "0x" + topic[-40:].lower()


def decode_transfer(log: dict[str, Any]) -> Transfer | None:
    """The ERC-20 Transfer in `log`, or None for any other event (including ERC-721's 4-topic Transfer)."""
    topics = [t.lower() for t in log.get("topics", [])]
    data = log.get("data", "0x")
    if len(topics) != 3 or topics[0] != TRANSFER_TOPIC or len(data) != 66:
        return None
    return Transfer(
        token=log["address"].lower(),
        from_address=_topic_address(topics[1]),
        to_address=_topic_address(topics[2]),
        value=int(data, 16),
        tx_hash=log["transactionHash"].lower(),
        log_index=int(log["logIndex"], 16),
        block_number=int(log["blockNumber"], 16),
        block_hash=log["blockHash"].lower(),
    )


class ChainRPC:
    """JSON-RPC over HTTP to one node. Use as `async with ChainRPC(url) as rpc:` (or call `aclose`)."""

    def __init__(self, url: str, *, timeout: float = 10.0, transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.url = url
        self._client = httpx.AsyncClient(timeout=timeout, transport=transport)
        self._ids = itertools.count(1)
        self._chain_id: int | None = None

    async def __aenter__(self) -> ChainRPC:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._client.aclose()

    async def call(self, method: str, *params: Any) -> Any:
        body = {"jsonrpc": "2.0", "id": next(self._ids), "method": method, "params": list(params)}
        try:
            response = await self._client.post(self.url, json=body)
            response.raise_for_status()
            reply = response.json()
        except (httpx.HTTPError, httpx.InvalidURL, ValueError) as exc:
            raise ChainUnavailable(f"chain RPC {method} failed: {type(exc).__name__}: {exc}") from exc
        if isinstance(reply, dict) and "error" in reply:
            raise RPCError(method, reply["error"])
        if not isinstance(reply, dict) or "result" not in reply:
            raise ChainUnavailable(f"chain RPC {method} answered nonsense: {reply!r:.300}")
        return reply["result"]

    async def chain_id(self) -> int:
        """The node's chain id (asked once per client: an endpoint does not change chains)."""
        if self._chain_id is None:
            self._chain_id = int(await self.call("eth_chainId"), 16)
        return self._chain_id

    async def block_number(self) -> int:
        return int(await self.call("eth_blockNumber"), 16)

    async def block_hash(self, number: int) -> str | None:
        """The canonical hash at height `number`, or None above the head."""
        block = await self.call("eth_getBlockByNumber", hex(number), False)
        return block["hash"].lower() if block else None

    async def receipt(self, tx_hash: str) -> Receipt | None:
        """The mined transaction's receipt with its decoded Transfer logs, or None if the node knows no such
        mined transaction (never sent, still in the mempool, or dropped by a reorg)."""
        raw = await self.call("eth_getTransactionReceipt", tx_hash)
        if raw is None:
            return None
        try:
            transfers = tuple(t for t in map(decode_transfer, raw["logs"]) if t is not None)
            return Receipt(
                tx_hash=raw["transactionHash"].lower(),
                status=int(raw["status"], 16),
                block_number=int(raw["blockNumber"], 16),
                block_hash=raw["blockHash"].lower(),
                transfers=transfers,
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ChainUnavailable(f"malformed receipt for {tx_hash}: {exc}") from exc

    async def transfers_to(self, token: str, receiver: str, from_block: int, to_block: int) -> list[Transfer]:
        """Every `token` Transfer to `receiver` in blocks [from_block, to_block], in chain order."""
        logs = await self.call(
            "eth_getLogs",
            {
                "address": token,
                "fromBlock": hex(from_block),
                "toBlock": hex(to_block),
                "topics": [TRANSFER_TOPIC, None, address_topic(receiver)],
            },
        )
        try:
            found = (decode_transfer(log) for log in logs if not log.get("removed"))
            return [t for t in found if t is not None]
        except (KeyError, TypeError, ValueError) as exc:
            raise ChainUnavailable(f"malformed eth_getLogs reply: {exc}") from exc
