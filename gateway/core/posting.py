"""The rules of holds and posts, free of any database: when an account cannot cover a hold, and how much a
settle may collect (a post never exceeds its pending amount, and a balance never goes below zero)."""

from __future__ import annotations


class InsufficientCredit(Exception):
    """The account's available credit (balance minus open holds) does not cover the requested hold."""

    def __init__(self, balance_micros: int, held_micros: int, requested_micros: int) -> None:
        super().__init__(f"available {balance_micros - held_micros} < requested {requested_micros}")
        self.balance_micros = balance_micros
        self.held_micros = held_micros
        self.requested_micros = requested_micros


def collectable_micros(price: int, hold: int | None, balance: int, held: int) -> int:
    """What a settle may take from the account: never more than the call's pending hold, and never so much
    that the balance would no longer cover the other holds (so it never goes below zero).

    `held` is the account's held total *including* `hold`; `hold` is None when no hold was pending (it
    expired before the call ended). The PostgreSQL statement in gateway/ledger/postgres.py computes the same
    expression.
    """
    cover = hold or 0
    room = max(balance - held + cover, 0)
    return min(price, room) if hold is None else min(price, cover, room)
