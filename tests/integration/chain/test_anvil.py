"""Proves the local-EVM test infrastructure works: anvil, TestUSDC, SmartWallet,
logs/receipts, reverted txs, snapshot/revert, automine and anvil_reorg."""

from __future__ import annotations

import os

import pytest
import requests
from eth_account import Account
from eth_account.messages import defunct_hash_message, encode_defunct
from web3 import Web3
from web3.exceptions import BlockNotFound, TransactionNotFound

from devtools.chain.anvil import Anvil

TRANSFER_TOPIC = Web3.keccak(text="Transfer(address,address,uint256)")
ERC1271_MAGIC = bytes.fromhex("1626ba7e")
ERC1271_INVALID = bytes.fromhex("ffffffff")


def _topic_address(topic: bytes) -> str:
    assert bytes(topic)[:12] == b"\0" * 12
    return Web3.to_checksum_address(bytes(topic)[12:])


def test_chain_identity_and_dev_accounts(chain: Anvil, usdc):
    assert chain.w3.eth.chain_id == 8453
    assert chain.accounts[0].address == "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"
    assert chain.accounts[1].address == "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
    assert chain.w3.eth.get_balance(chain.accounts[1].address) == 10_000 * 10**18
    assert usdc.address == "0x5FbDB2315678afecb367f032d93F642f64180aa3"
    assert usdc.functions.decimals().call() == 6


def test_usdc_transfer_receipt_and_get_logs(chain: Anvil, usdc):
    payer, merchant = chain.accounts[1], chain.accounts[2]
    chain.usdc_mint(payer.address, 25_000_000)  # 25 USDC
    before = usdc.functions.balanceOf(merchant.address).call()

    tx_hash = chain.usdc_transfer(payer.key, merchant.address, 12_340_000)
    receipt = chain.w3.eth.get_transaction_receipt(tx_hash)
    assert receipt["status"] == 1
    (log,) = receipt["logs"]
    assert log["address"] == usdc.address
    assert log["topics"][0] == TRANSFER_TOPIC
    assert _topic_address(log["topics"][1]) == payer.address
    assert _topic_address(log["topics"][2]) == merchant.address
    assert int.from_bytes(log["data"], "big") == 12_340_000

    logs = chain.w3.eth.get_logs(
        {
            "address": usdc.address,
            "fromBlock": receipt["blockNumber"],
            "toBlock": receipt["blockNumber"],
            "topics": [TRANSFER_TOPIC, None, "0x" + "00" * 12 + merchant.address[2:].lower()],
        }
    )
    assert [(lg["transactionHash"], lg["logIndex"]) for lg in logs] == [(tx_hash, log["logIndex"])]
    assert logs[0]["blockHash"] == receipt["blockHash"]

    decoded = usdc.events.Transfer().process_receipt(receipt)[0]["args"]
    assert (decoded["from"], decoded["to"], decoded["value"]) == (payer.address, merchant.address, 12_340_000)
    assert usdc.functions.balanceOf(merchant.address).call() == before + 12_340_000


def test_reverted_transfer_is_mined_with_status_zero(chain: Anvil, usdc):
    payer, merchant = chain.accounts[3], chain.accounts[4]
    chain.usdc_mint(payer.address, 5_000_000)

    tx_hash = chain.usdc_transfer_reverting(payer.key, merchant.address, 1_000_000)
    receipt = chain.w3.eth.get_transaction_receipt(tx_hash)
    assert receipt["status"] == 0
    assert receipt["logs"] == []
    assert receipt["gasUsed"] > 21_000
    assert tx_hash in chain.w3.eth.get_block(receipt["blockNumber"])["transactions"]
    assert (
        chain.w3.eth.get_logs(
            {"address": usdc.address, "fromBlock": receipt["blockNumber"], "toBlock": receipt["blockNumber"]}
        )
        == []
    )
    assert usdc.functions.balanceOf(payer.address).call() == 5_000_000
    assert usdc.functions.balanceOf(merchant.address).call() == 0


def test_snapshot_revert_removes_block(chain: Anvil):
    payer, merchant = chain.accounts[5], chain.accounts[6]
    chain.usdc_mint(payer.address, 1_000_000)
    height = chain.w3.eth.block_number
    snap = chain.snapshot()

    tx_hash = chain.usdc_transfer(payer.key, merchant.address, 1_000_000)
    mined = chain.w3.eth.get_transaction_receipt(tx_hash)
    assert mined["blockNumber"] == height + 1

    assert chain.revert(snap)
    assert chain.w3.eth.block_number == height
    with pytest.raises(BlockNotFound):
        chain.w3.eth.get_block(height + 1)
    with pytest.raises(TransactionNotFound):
        chain.w3.eth.get_transaction_receipt(tx_hash)

    chain.mine()  # a different block at the same height
    assert chain.w3.eth.get_block(height + 1)["hash"] != mined["blockHash"]
    assert chain.usdc.functions.balanceOf(merchant.address).call() == 0
    assert not chain.revert(snap)  # anvil consumes a snapshot on revert


def test_automine_off_keeps_tx_pending_until_mine(chain: Anvil, usdc):
    payer, merchant = chain.accounts[7], chain.accounts[8]
    chain.set_automine(False)
    h_mint = chain.usdc_mint(payer.address, 3_000_000)
    h_pay = chain.usdc_transfer(payer.key, merchant.address, 3_000_000)  # depends on the pending mint
    with pytest.raises(TransactionNotFound):
        chain.w3.eth.get_transaction_receipt(h_pay)

    head = chain.mine(1)
    receipts = [chain.w3.eth.get_transaction_receipt(h) for h in (h_mint, h_pay)]
    assert [r["status"] for r in receipts] == [1, 1]
    assert {r["blockNumber"] for r in receipts} == {head}
    assert chain.mine(5) == head + 5


def test_anvil_reorg_drops_and_reincludes_tx(chain: Anvil, usdc):
    payer, merchant = chain.accounts[1], chain.accounts[9]
    chain.usdc_mint(payer.address, 2_000_000)
    tx_hash = chain.usdc_transfer(payer.key, merchant.address, 2_000_000)
    mined = chain.w3.eth.get_transaction_receipt(tx_hash)
    chain.mine(2)
    height = chain.w3.eth.block_number

    chain.reorg(3)  # replace the transfer's block and the two on top of it
    assert chain.w3.eth.block_number == height
    assert chain.w3.eth.get_block(mined["blockNumber"])["hash"] != mined["blockHash"]
    with pytest.raises(TransactionNotFound):
        chain.w3.eth.get_transaction_receipt(tx_hash)
    assert usdc.functions.balanceOf(merchant.address).call() == 0

    # Same signed transfer re-included one block later by a second reorg.
    signed = payer.sign_transaction(
        {
            "to": usdc.address,
            "data": usdc.functions.transfer(merchant.address, 2_000_000)._encode_transaction_data(),
            "gas": 100_000,
            "nonce": chain.w3.eth.get_transaction_count(payer.address),
            "chainId": 8453,
            "maxFeePerGas": 10**10,
            "maxPriorityFeePerGas": 10**9,
        }
    )
    chain.reorg(2, [("0x" + signed.raw_transaction.hex(), 1)])
    again = chain.w3.eth.get_transaction_receipt(signed.hash)
    assert again["status"] == 1 and again["blockNumber"] == height
    assert usdc.functions.balanceOf(merchant.address).call() == 2_000_000


def test_erc1271_smart_wallet_checks_owner_signature(chain: Anvil, smart_wallet_factory):
    owner, stranger = Account.create(), Account.create()
    wallet = smart_wallet_factory(owner)
    assert wallet.functions.owner().call() == owner.address

    message = "localhost wants you to sign in with your Ethereum account:\n" + wallet.address + "\n\nNonce: abc123"
    digest = defunct_hash_message(text=message)  # EIP-191 personal_sign hash, what SIWE passes
    good = owner.sign_message(encode_defunct(text=message)).signature
    bad = stranger.sign_message(encode_defunct(text=message)).signature
    other = owner.sign_message(encode_defunct(text=message + "!")).signature

    check = wallet.functions.isValidSignature
    assert check(digest, good).call() == ERC1271_MAGIC
    assert check(digest, bad).call() == ERC1271_INVALID
    assert check(digest, other).call() == ERC1271_INVALID
    assert check(digest, b"\x01" * 64).call() == ERC1271_INVALID


def test_stop_reaps_process_even_when_body_raises():
    with pytest.raises(ZeroDivisionError), Anvil(chain_id=31337) as node:
        pid = node.proc.pid
        assert node.w3.eth.chain_id == 31337
        raise ZeroDivisionError("the body fails")
    assert node.proc is None
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    with pytest.raises(requests.ConnectionError):
        _ = node.w3.eth.chain_id  # nothing listens on the port any more
