"""The x402 wire format and settings, without a chain: what a PAYMENT-SIGNATURE may hold (allow-lists, types,
ranges), the EIP-712 digest and signature checks against eth-account's own signing, and the start-up checks
of the x402 settings."""

from __future__ import annotations

import base64
import json
import secrets

import pytest
from eth_account import Account
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.config import Settings, SettingsError
from gateway.x402 import eip3009
from gateway.x402.gas import load_account
from gateway.x402.protocol import Payment, Reason, Refusal, Requirement, decode_payment, encode_header

ADDRESS = "0x" + "ab" * 20
AUTH = {
    "from": ADDRESS,
    "to": "0x" + "cd" * 20,
    "value": "1000",
    "validAfter": "0",
    "validBefore": "1900000000",
    "nonce": "0x" + "01" * 32,
}
ACCEPTED = {
    "scheme": "exact",
    "network": "eip155:8453",
    "amount": "1000",
    "asset": "0x" + "ef" * 20,
    "payTo": "0x" + "cd" * 20,
    "maxTimeoutSeconds": 60,
    "extra": {"name": "USD Coin", "version": "2"},
}


def header(document: object) -> bytes:
    return base64.b64encode(json.dumps(document).encode())


def payload(**changes: object) -> dict:
    document = {
        "x402Version": 2,
        "accepted": ACCEPTED,
        "payload": {"signature": "0x" + "11" * 65, "authorization": AUTH},
    }
    return document | changes


def refused(raw: bytes) -> Refusal:
    with pytest.raises(Refusal) as err:
        decode_payment(raw)
    assert err.value.status == 400
    return err.value


def test_a_well_formed_payment_decodes_with_lower_case_addresses():
    payment = decode_payment(header(payload()))
    assert isinstance(payment, Payment) and payment.scheme == "exact" and payment.network == "eip155:8453"
    assert payment.authorization.value == 1000 and payment.authorization.valid_before == 1_900_000_000
    assert payment.authorization.from_address == ADDRESS and payment.signature == b"\x11" * 65
    unpadded = header(payload()).rstrip(b"=")
    assert decode_payment(unpadded) == payment  # base64 without its padding is accepted


@pytest.mark.parametrize(
    "document, reason",
    [
        (payload(x402Version=1), Reason.INVALID_VERSION),
        ({"x402Version": 2, "scheme": "exact"}, Reason.INVALID_PAYLOAD),
        (payload(tip=1), Reason.INVALID_PAYLOAD),
        (payload(accepted={**ACCEPTED, "fee": 1}), Reason.INVALID_PAYLOAD),
        (payload(accepted={**ACCEPTED, "asset": "USDC"}), Reason.INVALID_PAYLOAD),
        (payload(payload={"signature": "0x11", "authorization": {**AUTH, "value": "-1"}}), Reason.INVALID_PAYLOAD),
        (
            payload(payload={"signature": "0x11", "authorization": {**AUTH, "value": str(2**256)}}),
            Reason.INVALID_PAYLOAD,
        ),
        (payload(payload={"signature": "0x11", "authorization": {**AUTH, "value": True}}), Reason.INVALID_PAYLOAD),
        (payload(payload={"signature": "0x11", "authorization": {**AUTH, "nonce": "0x01"}}), Reason.INVALID_PAYLOAD),
        (payload(payload={"signature": "0x1", "authorization": AUTH}), Reason.INVALID_PAYLOAD),
        (
            payload(payload={"signature": "0x11", "authorization": {k: v for k, v in AUTH.items() if k != "to"}}),
            Reason.INVALID_PAYLOAD,
        ),
        ([1, 2], Reason.INVALID_PAYLOAD),
    ],
)
def test_malformed_payments_are_refused_with_400_naming_the_field(document, reason):
    assert refused(header(document)).reason == reason


def test_not_base64_and_oversized_headers_are_refused():
    assert refused(b"not base64 at all!").reason == Reason.INVALID_PAYLOAD
    assert "larger than" in refused(b"A" * 20_000).message


@settings(max_examples=200, deadline=None)
@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=8),
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    )
)
def test_any_json_is_either_a_payment_or_a_400(document):
    try:
        decode_payment(header(payload(payload=document)))
    except Refusal as refusal:
        assert refusal.status == 400


def test_encode_header_round_trips():
    assert json.loads(base64.b64decode(encode_header({"a": "b"}))) == {"a": "b"}


def test_the_digest_and_eoa_recovery_agree_with_eth_account():
    signer = Account.create()
    domain = eip3009.Domain("USD Coin", "2", 8453, "0x" + "ef" * 20)
    auth = decode_payment(
        header(payload(payload={"signature": "0x11", "authorization": {**AUTH, "from": signer.address}}))
    ).authorization
    message = eip3009.typed_data(domain, auth)
    signature = bytes(signer.sign_message(message).signature)
    assert eip3009.recover_eoa(domain, auth, signature) == signer.address.lower()
    assert bytes(Account.unsafe_sign_hash(eip3009.digest(domain, auth), signer.key).signature) == signature
    other_chain = eip3009.Domain("USD Coin", "2", 1, domain.token)
    assert eip3009.recover_eoa(other_chain, auth, signature) != signer.address.lower()
    high_s = signature[:32] + (eip3009._HALF_ORDER * 2 + 1 - int.from_bytes(signature[32:64], "big")).to_bytes(
        32, "big"
    )
    assert eip3009.recover_eoa(domain, auth, high_s + bytes([55 - signature[64]])) is None  # malleable twin refused
    assert eip3009.recover_eoa(domain, auth, signature[:64]) is None


def test_erc6492_wrappers_unwrap_and_broken_ones_are_errors():
    inner = secrets.token_bytes(65)
    wrapped = eip3009.encode(["address", "bytes", "bytes"], [ADDRESS, b"\x01\x02", inner]) + eip3009.ERC6492_SUFFIX
    parts = eip3009.unwrap_6492(wrapped)
    assert parts == eip3009.WrappedSignature(ADDRESS, b"\x01\x02", inner)
    assert eip3009.unwrap_6492(inner) is None
    with pytest.raises(ValueError):
        eip3009.unwrap_6492(b"\x00" * 10 + eip3009.ERC6492_SUFFIX)


def test_x402_settings_are_checked_at_start_up(tmp_path):
    chain = {"chain_rpc_url": "http://127.0.0.1:8545", "dao_wallet_address": ADDRESS}
    with pytest.raises(ValueError, match="X402_ENABLED needs CHAIN_RPC_URL"):
        Settings(_env_file=None, x402_enabled=True, x402_gas_wallet_key="0x" + "11" * 32)
    with pytest.raises(ValueError, match="X402_GAS_WALLET_KEY or X402_GAS_WALLET_KEY_FILE"):
        Settings(_env_file=None, x402_enabled=True, **chain)
    with pytest.raises(ValueError, match="is not an address"):
        Settings(_env_file=None, x402_erc6492_factories=["0x12"])
    assert Settings(_env_file=None).x402_enabled is False  # off by default
    key = Account.create()
    key_file = tmp_path / "gas.key"
    key_file.write_text("0x" + bytes(key.key).hex() + "\n")
    from_file = Settings(_env_file=None, x402_enabled=True, x402_gas_wallet_key_file=key_file, **chain)
    assert load_account(from_file).address == key.address
    with pytest.raises(SettingsError, match="invalid setting X402_GAS_WALLET_KEY: not a private key"):
        load_account(Settings(_env_file=None, x402_enabled=True, x402_gas_wallet_key="0x1234", **chain))
    with pytest.raises(SettingsError, match="invalid setting X402_GAS_WALLET_KEY_FILE: cannot read"):
        load_account(Settings(_env_file=None, x402_enabled=True, x402_gas_wallet_key_file=tmp_path / "no", **chain))


def test_the_requirement_says_the_payload_is_an_eip3009_authorization():
    requirement = Requirement(8453, 1000, ACCEPTED["asset"], ACCEPTED["payTo"], 60, "USD Coin", "2")
    assert requirement.to_json()["extra"] == {"name": "USD Coin", "version": "2", "assetTransferMethod": "eip3009"}
