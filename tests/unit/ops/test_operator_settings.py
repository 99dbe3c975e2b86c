"""OPERATOR_WALLETS and EXPLORER_TX_URL: operators are compared lower-case whatever the case they were written
in, a mixed-case address with a wrong EIP-55 checksum (a typo) stops start-up with one line, and the explorer
template must hold {tx}."""

from __future__ import annotations

import pytest
from eth_account import Account
from pydantic import ValidationError

from gateway.config import Settings, SettingsError, load_settings


def test_operators_in_any_case_are_recognised_in_any_case() -> None:
    checksummed = Account.create().address
    lower = Account.create().address.lower()
    settings = Settings(_env_file=None, operator_wallets=[checksummed, lower])
    assert settings.operator_wallets == [checksummed.lower(), lower]
    assert settings.is_operator(checksummed.upper().replace("0X", "0x")) and settings.is_operator(lower)
    assert not settings.is_operator(Account.create().address)
    assert not Settings(_env_file=None).is_operator(checksummed)  # nobody by default


def test_a_mistyped_checksum_or_a_non_address_stops_start_up(monkeypatch: pytest.MonkeyPatch) -> None:
    address = Account.create().address
    flipped = address[:-1] + (address[-1].lower() if address[-1].isupper() else address[-1].upper())
    if flipped == address:  # the last character is a digit: flip the first letter instead
        i = next(i for i, c in enumerate(address[2:], 2) if c.isalpha())
        flipped = address[:i] + address[i].swapcase() + address[i + 1 :]
    for bad in (flipped, "0x12", "vitalik.eth"):
        with pytest.raises(ValidationError):
            Settings(_env_file=None, operator_wallets=[bad])
    monkeypatch.setenv("OPERATOR_WALLETS", f'["{flipped}"]')
    with pytest.raises(SettingsError, match=r"invalid setting OPERATOR_WALLETS: .*checksum"):
        load_settings()


def test_the_explorer_template_needs_the_tx_placeholder() -> None:
    assert Settings(_env_file=None, explorer_tx_url="https://basescan.org/tx/{tx}").explorer_tx_url
    for bad in ("https://basescan.org/tx/", "javascript:alert(1)//{tx}", 'https://x/{tx}"><script>'):
        with pytest.raises(ValidationError):
            Settings(_env_file=None, explorer_tx_url=bad)
