"""What a settle may collect: never more than its hold, never so much that the balance goes below zero."""

from __future__ import annotations

import pytest

from gateway.core.posting import collectable_micros


@pytest.mark.parametrize(
    ("price", "hold", "balance", "held", "expected"),
    [
        (50, 100, 1_000, 100, 50),  # under the hold: the price
        (300, 100, 1_000, 100, 100),  # over the hold: the hold
        (300, None, 1_000, 900, 100),  # no hold: what the other holds leave
        (300, None, 1_000, 1_200, 0),  # no hold, nothing left
        (600, 800, 100, 800, 100),  # the balance shrank under the hold
    ],
)
def test_collectable_micros(price, hold, balance, held, expected):
    assert collectable_micros(price, hold, balance, held) == expected
