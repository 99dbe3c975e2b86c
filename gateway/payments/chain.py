"""The chain, for top-ups and x402: reads, contract calls and raw transactions through web3's `AsyncWeb3`
(to CHAIN_RPC_URL only), and ERC-20 `Transfer` logs decoded with the event's ABI.

Anything short of a well-formed answer (connection refused, timeout, HTTP error, malformed reply) raises
`ChainUnavailable`; a JSON-RPC error object (a call that reverts, a transaction the node refuses) raises its
subclass `RPCError`; so callers fail closed and write nothing. Addresses and hashes come back as lower-case
0x hex, amounts as Python ints. web3 takes checksummed addresses only: this module checksums what it sends.
"""

from __future__ import annotations

from collections.abc import Awaitable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import aiohttp
from eth_typing import ABIEvent, ABIFunction, ChecksumAddress, HexStr
from eth_utils.abi import event_abi_to_log_topic
from eth_utils.address import to_checksum_address
from web3 import AsyncWeb3
from web3.contract.async_contract import AsyncContract, AsyncContractFunction
from web3.exceptions import (
    BlockNotFound,
    ContractLogicError,
    LogTopicError,
    MismatchedABI,
    TransactionNotFound,
    Web3Exception,
    Web3RPCError,
)
from web3.providers import AsyncHTTPProvider
from web3.types import BlockData, LogReceipt, TxParams

from gateway.failures import ChainUnavailable

TRANSFER_EVENT: ABIEvent = {
    "type": "event",
    "name": "Transfer",
    "anonymous": False,
    "inputs": [
        {"name": "from", "type": "address", "indexed": True},
        {"name": "to", "type": "address", "indexed": True},
        {"name": "value", "type": "uint256", "indexed": False},
    ],
}
BALANCE_OF: ABIFunction = {
    "type": "function",
    "name": "balanceOf",
    "stateMutability": "view",
    "inputs": [{"name": "owner", "type": "address"}],
    "outputs": [{"name": "", "type": "uint256"}],
}
ERC20_ABI = [TRANSFER_EVENT, BALANCE_OF]  # what top-ups and x402 use of an ERC-20 token
# topic 0 of every ERC-20 Transfer log (checked against keccak256("Transfer(address,address,uint256)") in the tests)
TRANSFER_TOPIC = "0x" + event_abi_to_log_topic(TRANSFER_EVENT).hex()
# what a bad answer raises below web3 (aiohttp's connection and HTTP errors, timeouts, undecodable replies)
_TRANSPORT_ERRORS = (aiohttp.ClientError, OSError, TimeoutError, ValueError, KeyError, TypeError)
_T = TypeVar("_T")


class RPCError(ChainUnavailable):
    """The node answered with a JSON-RPC error object (`error`: code, message, data), e.g. a call that reverts."""

    def __init__(self, method: str, error: object) -> None:
        super().__init__(f"chain RPC {method} answered with an error: {error!r:.300}")
        self.error = error if isinstance(error, dict) else {}

    @property
    def reverted(self) -> bool:
        """Whether the node says the call or transaction reverted (geth and anvil: code 3 or 'execution reverted')."""
        return self.error.get("code") == 3 or "revert" in str(self.error.get("message", "")).lower()


class NotSent(ChainUnavailable):
    """The request never reached the node (the connection could not be made): nothing was sent."""


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


def checksum(address: str) -> ChecksumAddress:
    return to_checksum_address(address)


def address_topic(address: str) -> str:
    """An address as a 32-byte indexed-topic value (for eth_getLogs filters)."""
    return "0x" + "0" * 24 + address[2:].lower()


def _hex(value: bytes | str) -> str:
    return ("0x" + value.hex() if isinstance(value, bytes) else value).lower()


_EVENTS = AsyncWeb3().eth.contract(abi=ERC20_ABI).events  # decoding only: no provider is ever asked


def decode_transfer(log: LogReceipt) -> Transfer | None:
    """The ERC-20 Transfer in `log` (as web3 returns logs), or None for any other event (including ERC-721's
    Transfer, whose token id is a fourth, indexed topic)."""
    try:
        event = _EVENTS.Transfer().process_log(log)
    except (MismatchedABI, LogTopicError):
        return None
    return Transfer(
        token=event["address"].lower(),
        from_address=event["args"]["from"].lower(),
        to_address=event["args"]["to"].lower(),
        value=event["args"]["value"],
        tx_hash=_hex(event["transactionHash"]),
        log_index=event["logIndex"],
        block_number=event["blockNumber"],
        block_hash=_hex(event["blockHash"]),
    )


class ChainRPC:
    """One node, through AsyncWeb3. Use as `async with ChainRPC(url) as rpc:` (or call `aclose`)."""

    def __init__(self, url: str, *, timeout: float = 10.0) -> None:
        self.url = url
        provider = AsyncHTTPProvider(  # no retries: a caller decides what a failure means (fail closed)
            url, request_kwargs={"timeout": aiohttp.ClientTimeout(total=timeout)}, exception_retry_configuration=None
        )
        self.w3 = AsyncWeb3(provider)
        self._chain_id: int | None = None

    async def __aenter__(self) -> ChainRPC:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self.w3.provider.disconnect()

    def contract(self, address: str, abi: Sequence[Any]) -> AsyncContract:
        """A contract at `address` whose functions this client calls (`read`, `estimate_gas`)."""
        return self.w3.eth.contract(address=checksum(address), abi=list(abi))

    async def _ask(self, method: str, request: Awaitable[_T]) -> _T:
        """Await one web3 request; its failures become ChainUnavailable (RPCError for an error object)."""
        try:
            return await request
        except ContractLogicError as exc:  # web3's reading of a revert: the node's error object, code 3
            raise RPCError(
                method, {"code": 3, "message": exc.message or "execution reverted", "data": exc.data}
            ) from exc
        except Web3RPCError as exc:
            error = (exc.rpc_response or {}).get("error") or {"message": exc.message}
            raise RPCError(method, error) from exc
        except aiohttp.ClientConnectorError as exc:
            raise NotSent(f"chain RPC {method} failed: cannot connect to the node: {exc}") from exc
        except (Web3Exception, *_TRANSPORT_ERRORS) as exc:
            raise ChainUnavailable(f"chain RPC {method} failed: {type(exc).__name__}: {exc}") from exc

    async def chain_id(self) -> int:
        """The node's chain id (asked once per client: an endpoint does not change chains)."""
        if self._chain_id is None:
            self._chain_id = int(await self._ask("eth_chainId", self.w3.eth.chain_id))
        return self._chain_id

    async def block_number(self) -> int:
        return int(await self._ask("eth_blockNumber", self.w3.eth.block_number))

    async def latest_block(self) -> BlockData:
        return await self._ask("eth_getBlockByNumber", self.w3.eth.get_block("latest"))

    async def block_hash(self, number: int) -> str | None:
        """The canonical hash at height `number`, or None above the head."""
        try:
            block = await self._ask("eth_getBlockByNumber", self.w3.eth.get_block(number))
        except RPCError as exc:
            if isinstance(exc.__cause__, BlockNotFound):
                return None
            raise
        return _hex(block["hash"])

    async def receipt(self, tx_hash: str) -> Receipt | None:
        """The mined transaction's receipt with its decoded Transfer logs, or None if the node knows no such
        mined transaction (never sent, still in the mempool, or dropped by a reorg)."""
        try:
            raw = await self._ask("eth_getTransactionReceipt", self.w3.eth.get_transaction_receipt(HexStr(tx_hash)))
        except RPCError as exc:
            if isinstance(exc.__cause__, TransactionNotFound):
                return None
            raise
        try:
            return Receipt(
                tx_hash=_hex(raw["transactionHash"]),
                status=int(raw["status"]),
                block_number=int(raw["blockNumber"]),
                block_hash=_hex(raw["blockHash"]),
                transfers=tuple(t for t in map(decode_transfer, raw["logs"]) if t is not None),
            )
        except (KeyError, TypeError, ValueError, Web3Exception) as exc:
            raise ChainUnavailable(f"malformed receipt for {tx_hash}: {exc}") from exc

    async def transfers_to(self, token: str, receiver: str, from_block: int, to_block: int) -> list[Transfer]:
        """Every `token` Transfer to `receiver` in blocks [from_block, to_block], in chain order."""
        query: Any = {
            "address": checksum(token),
            "fromBlock": from_block,
            "toBlock": to_block,
            "topics": [TRANSFER_TOPIC, None, address_topic(receiver)],
        }
        logs = await self._ask("eth_getLogs", self.w3.eth.get_logs(query))
        try:
            found = (decode_transfer(log) for log in logs if not log.get("removed"))
            return [t for t in found if t is not None]
        except (KeyError, TypeError, ValueError, Web3Exception) as exc:
            raise ChainUnavailable(f"malformed eth_getLogs reply: {exc}") from exc

    async def code(self, address: str) -> bytes:
        return bytes(await self._ask("eth_getCode", self.w3.eth.get_code(checksum(address), "latest")))

    async def read(self, function: AsyncContractFunction) -> Any:
        """A view function's answer at the latest block, decoded by its ABI."""
        return await self._ask("eth_call", function.call(block_identifier="latest"))

    async def call(self, tx: TxParams) -> bytes:
        """`eth_call` of raw calldata at the latest block (a contract that is only bytecode, e.g. a validator)."""
        return bytes(await self._ask("eth_call", self.w3.eth.call(tx, "latest")))

    async def estimate_gas(self, tx: TxParams) -> int:
        return int(await self._ask("eth_estimateGas", self.w3.eth.estimate_gas(tx)))

    async def max_priority_fee(self) -> int:
        return int(await self._ask("eth_maxPriorityFeePerGas", self.w3.eth.max_priority_fee))

    async def balance(self, address: str) -> int:
        """Wei held by `address`, counting its pending transactions."""
        return int(await self._ask("eth_getBalance", self.w3.eth.get_balance(checksum(address), "pending")))

    async def next_nonce(self, address: str) -> int:
        """The nonce of `address`'s next transaction, counting its pending ones."""
        return int(
            await self._ask("eth_getTransactionCount", self.w3.eth.get_transaction_count(checksum(address), "pending"))
        )

    async def send_raw_transaction(self, raw: bytes) -> str:
        return _hex(await self._ask("eth_sendRawTransaction", self.w3.eth.send_raw_transaction(raw)))
