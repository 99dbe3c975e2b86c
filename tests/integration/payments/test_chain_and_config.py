"""The chain client's decoding and failure mode, and the start-up check of the payment settings."""

from __future__ import annotations

import pytest
from eth_utils import keccak
from hexbytes import HexBytes

from gateway.cli.payments import ChainConfigCheck, check_chain_config
from gateway.payments.chain import TRANSFER_TOPIC, ChainRPC, NotSent, RPCError, address_topic, decode_transfer
from gateway.x402.eip3009 import USDC_ABI
from tests.integration.payments.conftest import USDC, make_settings, pay, random_address


def test_transfer_topic_is_the_erc20_event_signature():
    assert "0x" + keccak(text="Transfer(address,address,uint256)").hex() == TRANSFER_TOPIC


def test_decode_transfer_ignores_other_events():
    sender, receiver = random_address(), random_address()
    log = {  # as web3 returns a log: bytes for topics, data and hashes, ints for indices
        "address": "0x00000000000000000000000000000000000000AA",
        "topics": [HexBytes(TRANSFER_TOPIC), HexBytes(address_topic(sender)), HexBytes(address_topic(receiver))],
        "data": HexBytes((2**255).to_bytes(32, "big")),
        "transactionHash": HexBytes("0x" + "Ab" * 32),
        "logIndex": 31,
        "blockNumber": 16,
        "blockHash": HexBytes("0x" + "cd" * 32),
        "transactionIndex": 0,
        "removed": False,
    }
    t = decode_transfer(log)
    assert (t.token, t.from_address, t.to_address, t.value) == (
        "0x" + "00" * 19 + "aa",
        sender.lower(),
        receiver.lower(),
        2**255,
    )
    assert (t.tx_hash, t.log_index, t.block_number) == ("0x" + "ab" * 32, 31, 16)
    assert decode_transfer(log | {"topics": [*log["topics"], HexBytes(32)]}) is None  # ERC-721: tokenId indexed
    assert decode_transfer(log | {"topics": [HexBytes("0x" + "11" * 32), *log["topics"][1:]]}) is None


async def test_receipt_and_logs_from_anvil(rpc, chain, dao, payer):
    tx = pay(chain, payer, dao, 2 * USDC)
    receipt = await rpc.receipt(tx)
    (t,) = receipt.transfers
    assert (receipt.status, t.from_address, t.to_address, t.value, t.token) == (
        1,
        payer.address.lower(),
        dao.lower(),
        2 * USDC,
        chain.usdc.address.lower(),
    )
    assert await rpc.transfers_to(chain.usdc.address, dao, receipt.block_number, receipt.block_number) == [t]
    assert await rpc.block_hash(receipt.block_number) == receipt.block_hash
    assert await rpc.block_hash(receipt.block_number + 1000) is None
    assert await rpc.receipt("0x" + "ab" * 32) is None  # no such mined transaction


async def test_how_the_chain_fails(rpc, chain, payer):
    token = rpc.contract(chain.usdc.address, USDC_ABI).functions
    assert await rpc.read(token.balanceOf(payer.address)) == 500 * USDC
    too_much = chain.usdc.encode_abi("transfer", args=[payer.address, 10**30])  # more than it holds
    with pytest.raises(RPCError) as reverted:
        await rpc.estimate_gas({"from": payer.address, "to": chain.usdc.address, "data": too_much})
    assert reverted.value.reverted
    with pytest.raises(RPCError) as refused:  # the node refuses what it cannot decode, and says it did not revert
        await rpc.send_raw_transaction(b"\x02not a transaction")
    assert not refused.value.reverted
    async with ChainRPC("http://127.0.0.1:9", timeout=2) as down:  # discard port: nothing listens
        with pytest.raises(NotSent):
            await down.send_raw_transaction(b"\x02")


def test_check_chain_config(chain, dao):
    assert check_chain_config(make_settings(chain, dao)) == ChainConfigCheck()
    assert check_chain_config(make_settings(chain, dao, chain_id=1)).error == (
        "invalid setting CHAIN_RPC_URL: it serves chain id 8453, but CHAIN_ID is 1"
    )
    assert check_chain_config(make_settings(chain, "0x1234")).error.startswith("invalid setting DAO_WALLET_ADDRESS")
    unconfigured = check_chain_config(make_settings(chain, None))
    assert unconfigured.error is None and "not configured" in unconfigured.note
    down = check_chain_config(make_settings(chain, dao, chain_rpc_url="http://127.0.0.1:9"))
    assert down.error is None and "does not answer" in down.note
