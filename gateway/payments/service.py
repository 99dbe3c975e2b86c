"""Top-ups paid in USDC on chain: verify a transfer, record it, credit it exactly once.

One USDC base unit (6 decimals) is one micro, so a transfer of `value` credits `value` micros. A payment is
one Transfer log `(chain id, tx hash, log index)`; its ledger entry is `onchain_payment` with that triple
as reference. Every status change of a payment row commits in the same transaction as its ledger row,
and the row itself serialises writers: the UPDATE that moves it to `credited` matches only a row that is
still open, so a user's confirm, the watcher and a claim racing on one transfer credit it once.

Confirmations of a transfer mined in block `b` when the head is `h`: `h - b + 1` (the block itself
counts as one). The HTTP layer maps the exceptions below to status codes: NotConfigured and
ChainUnavailable 503, NotFound 404, Forbidden 403, Rejected 422; a `pending` result is 202.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from decimal import ROUND_FLOOR, Decimal
from typing import Any, NamedTuple

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from gateway import ledger
from gateway.accounts.wallets import find_account, normalize_wallet
from gateway.config import Settings
from gateway.core.money import MICROS_PER_USD, usd_to_micros_ceil
from gateway.db.payments_schema import PaymentStatus, payments
from gateway.db.schema import billing_accounts, insert_for, users
from gateway.failures import ChainUnavailable
from gateway.payments.chain import ChainRPC, Transfer

log = logging.getLogger("gateway.payments")


class PaymentError(Exception):
    """Base of the errors a top-up request can end in."""


class NotConfigured(PaymentError):
    def __init__(self) -> None:
        super().__init__("payments are not configured")


class NotFound(PaymentError):
    """No mined transaction with this hash (yet)."""


class Forbidden(PaymentError):
    """The transfer was sent by another wallet."""


class Rejected(PaymentError):
    """The transaction is not an acceptable top-up; `reason` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Payment:
    id: int
    chain_id: int
    tx_hash: str
    log_index: int
    from_address: str
    raw_amount: int  # token base units (= micros for USDC)
    status: str
    reason: str | None
    account_id: int | None
    block_number: int
    micros_credited: int | None
    confirmations: int | None  # None when the head is unknown

    @property
    def reference(self) -> str:
        return payment_reference(self.chain_id, self.tx_hash, self.log_index)


@dataclass(frozen=True)
class PaymentResult:
    """The answer to a confirm: `credited` (200) or `pending` (202), and the payments in the transaction."""

    tx_hash: str
    status: str
    confirmations: int
    required_confirmations: int
    payments: tuple[Payment, ...]

    @property
    def credited_micros(self) -> int:
        return sum(p.micros_credited or 0 for p in self.payments if p.status == PaymentStatus.CREDITED)


def payment_reference(chain_id: int, tx_hash: str, log_index: int) -> str:
    return f"{chain_id}:{tx_hash}:{log_index}"


# `payment_reference` as an SQL expression over the payments table, to join payments to their ledger rows.
REFERENCE_SQL = (
    sa.cast(payments.c.chain_id, sa.String) + ":" + payments.c.tx_hash + ":" + sa.cast(payments.c.log_index, sa.String)
)


class PaymentsEndpoints(NamedTuple):
    """The two settings payments cannot work without, once they are known to be set."""

    rpc_url: str
    dao_wallet: str


def require_configured(settings: Settings) -> PaymentsEndpoints:
    if not settings.chain_rpc_url or not settings.dao_wallet_address:
        raise NotConfigured()
    return PaymentsEndpoints(settings.chain_rpc_url, settings.dao_wallet_address)


def topup_bounds_micros(settings: Settings) -> tuple[int, int]:
    """[MIN_TOPUP_USD, MAX_TOPUP_USD] as whole micros (the minimum rounded up, the maximum down)."""
    high = (settings.max_topup_usd * MICROS_PER_USD).to_integral_value(rounding=ROUND_FLOOR)
    return usd_to_micros_ceil(settings.min_topup_usd), int(high)


def _usd(micros: int) -> str:
    return format(Decimal(micros).scaleb(-6).normalize(), "f")


async def check_chain_id(rpc: ChainRPC, settings: Settings) -> None:
    """Refuse to decide anything on the wrong chain (a misconfigured RPC is an outage, not a user error)."""
    served = await rpc.chain_id()
    if served != settings.chain_id:
        raise ChainUnavailable(f"the chain RPC serves chain id {served}, but CHAIN_ID is {settings.chain_id}")


def _is_deposit(t: Transfer, settings: Settings) -> bool:
    dao = require_configured(settings).dao_wallet.lower()
    return t.token == settings.usdc_address.lower() and t.to_address == dao


def _why_not_a_deposit(transfers: tuple[Transfer, ...], settings: Settings) -> str:
    dao, usdc = require_configured(settings).dao_wallet.lower(), settings.usdc_address.lower()
    if any(t.to_address == dao for t in transfers):
        return "the transfer to the DAO wallet is not in USDC"
    if any(t.token == usdc for t in transfers):
        return "the USDC transfer is not to the DAO wallet"
    return "the transaction contains no USDC transfer"


async def confirm_payment(
    db: AsyncEngine, rpc: ChainRPC, settings: Settings, account_id: int, wallet: str, tx_hash: str
) -> PaymentResult:
    """Verify `tx_hash` on chain as a top-up by `wallet` (the session's) and credit `account_id` once.

    Idempotent: a repeated confirm returns the same answer and credits nothing more. Nothing is written
    when the chain cannot be asked, the transaction is unknown or reverted, or it is not this wallet's.
    """
    require_configured(settings)
    wallet = normalize_wallet(wallet)
    tx_hash = _normalize_tx_hash(tx_hash)
    await check_chain_id(rpc, settings)
    receipt = await rpc.receipt(tx_hash)
    if receipt is None:
        raise NotFound(f"no mined transaction {tx_hash} on chain {settings.chain_id}")
    if receipt.status != 1:
        raise Rejected("the transaction reverted")
    deposits = [t for t in receipt.transfers if _is_deposit(t, settings)]
    if not deposits:
        raise Rejected(_why_not_a_deposit(receipt.transfers, settings))
    mine = [t for t in deposits if t.from_address == wallet]
    if not mine:
        raise Forbidden("this transfer was sent by another wallet")
    head = await rpc.block_number()
    recorded = tuple([await accept_transfer(db, settings, t, head, account_id) for t in mine])
    accepted = [p for p in recorded if p.status in (PaymentStatus.PENDING, PaymentStatus.CREDITED)]
    if not accepted:
        raise Rejected(recorded[0].reason or f"the payment is {recorded[0].status}")
    return PaymentResult(
        tx_hash=tx_hash,
        status=PaymentStatus.PENDING
        if any(p.status == PaymentStatus.PENDING for p in accepted)
        else PaymentStatus.CREDITED,
        confirmations=head - receipt.block_number + 1,
        required_confirmations=settings.min_confirmations,
        payments=recorded,
    )


def _normalize_tx_hash(tx_hash: str) -> str:
    text = (tx_hash or "").strip().lower()
    if len(text) != 66 or not text.startswith("0x") or any(c not in "0123456789abcdef" for c in text[2:]):
        raise Rejected("not a transaction hash (expected 0x followed by 64 hex digits)")
    return text


async def accept_transfer(
    db: AsyncEngine, settings: Settings, t: Transfer, head: int, account_id: int | None
) -> Payment:
    """Record a verified USDC transfer to the DAO wallet and move it as far as the facts allow:
    rejected (amount out of bounds), pending (too few confirmations), unclaimed (no account) or credited."""
    low, high = topup_bounds_micros(settings)
    if not low <= t.value <= high:
        reason = f"amount {_usd(t.value)} USDC is outside the top-up bounds [{_usd(low)}, {_usd(high)}] USDC"
        return await _record(db, settings.chain_id, t, PaymentStatus.REJECTED, account_id, head, reason)
    if head - t.block_number + 1 < settings.min_confirmations:
        return await _record(db, settings.chain_id, t, PaymentStatus.PENDING, account_id, head)
    if account_id is None:
        return await _record(db, settings.chain_id, t, PaymentStatus.UNCLAIMED, None, head)
    return await _record(db, settings.chain_id, t, PaymentStatus.CREDITED, account_id, head)


async def credit_own_settlement(db: AsyncEngine, chain_id: int, t: Transfer, account_id: int) -> Payment:
    """Credit a transfer the gateway itself settled (x402: it sent the payer's `transferWithAuthorization`
    and read the receipt) at once: no confirmations to wait for and no top-up bounds (it pays for one call).
    The same payment row and `onchain_payment` entry as any top-up, once per (chain, tx, log index)."""
    return await _record(db, chain_id, t, PaymentStatus.CREDITED, account_id, None)


def _key(chain_id: int, tx_hash: str, log_index: int) -> sa.ColumnElement[bool]:
    return sa.and_(payments.c.chain_id == chain_id, payments.c.tx_hash == tx_hash, payments.c.log_index == log_index)


def _open_to(t: Transfer) -> sa.ColumnElement[bool]:
    """Whether a recorded payment may still move on seeing `t`: while pending or unclaimed, or when it was
    reorged without ever being credited and `t` shows it re-included in another block (a receipt read
    before the reorg cannot revive it). Credited and rejected payments are final."""
    return sa.or_(
        payments.c.status.in_((PaymentStatus.PENDING, PaymentStatus.UNCLAIMED)),
        sa.and_(
            payments.c.status == PaymentStatus.REORGED,
            payments.c.micros_credited.is_(None),
            payments.c.block_hash != t.block_hash,
        ),
    )


async def _record(
    db: AsyncEngine,
    chain_id: int,
    t: Transfer,
    status: str,
    account_id: int | None,
    head: int | None,
    reason: str | None = None,
) -> Payment:
    """Insert the payment if new, move it to `status` if it is still open, and credit it in the same
    transaction when `status` is credited. Returns the row as it now stands."""
    key = _key(chain_id, t.tx_hash, t.log_index)
    async with db.begin() as conn:
        await conn.execute(_insert_if_new(conn, chain_id, t, account_id))
        moved = (
            await conn.execute(
                sa.update(payments)
                .where(key, _open_to(t))
                .values(
                    status=status,
                    account_id=account_id,
                    reason=reason,
                    block_number=t.block_number,
                    block_hash=t.block_hash,
                    micros_credited=t.value if status == PaymentStatus.CREDITED else None,
                    updated_at=sa.func.current_timestamp(),
                )
                .returning(payments.c.id)
            )
        ).first()
        if moved is not None and status == PaymentStatus.CREDITED:
            if account_id is None:  # callers credit only a payment whose sender has an account
                raise ValueError(f"payment {t.tx_hash}:{t.log_index} cannot be credited without an account")
            reference = payment_reference(chain_id, t.tx_hash, t.log_index)
            await ledger.post_entry_in(conn, account_id, t.value, "onchain_payment", reference)
        row = (await conn.execute(sa.select(payments).where(key))).one()
    reversed_before = row.status == PaymentStatus.REORGED and row.micros_credited is not None
    if moved is None and reversed_before and row.block_hash != t.block_hash:
        log.error(
            "payment %s was re-included on chain after its credit was reversed: review it and grant by hand",
            payment_reference(chain_id, t.tx_hash, t.log_index),
        )
    return _payment(row, head)


def _insert_if_new(conn: AsyncConnection, chain_id: int, t: Transfer, account_id: int | None) -> sa.Executable:
    return (
        insert_for(conn)(payments)
        .values(
            chain_id=chain_id,
            tx_hash=t.tx_hash,
            log_index=t.log_index,
            from_address=t.from_address,
            to_address=t.to_address,
            token_address=t.token,
            raw_amount=t.value,
            block_number=t.block_number,
            block_hash=t.block_hash,
            status=PaymentStatus.PENDING,
            account_id=account_id,
        )
        .on_conflict_do_nothing(index_elements=["chain_id", "tx_hash", "log_index"])
    )


def _payment(row: sa.Row[Any], head: int | None) -> Payment:
    return Payment(
        id=row.id,
        chain_id=row.chain_id,
        tx_hash=row.tx_hash,
        log_index=row.log_index,
        from_address=row.from_address,
        raw_amount=row.raw_amount,
        status=row.status,
        reason=row.reason,
        account_id=row.account_id,
        block_number=row.block_number,
        micros_credited=row.micros_credited,
        confirmations=None if head is None else max(head - row.block_number + 1, 0),
    )


def _transfer(row: sa.Row[Any]) -> Transfer:
    """A recorded payment as the transfer it was recorded from."""
    return Transfer(
        token=row.token_address,
        from_address=row.from_address,
        to_address=row.to_address,
        value=row.raw_amount,
        tx_hash=row.tx_hash,
        log_index=row.log_index,
        block_number=row.block_number,
        block_hash=row.block_hash,
    )


async def list_payments(db: AsyncEngine, account_id: int, head: int | None, limit: int = 100) -> list[Payment]:
    """The account's payments, newest first, with confirmations counted from `head` (None: unknown)."""
    async with db.connect() as conn:
        rows = (
            await conn.execute(
                sa.select(payments)
                .where(payments.c.account_id == account_id)
                .order_by(payments.c.id.desc())
                .limit(limit)
            )
        ).all()
    return [_payment(row, head) for row in rows]


async def claim_unclaimed(db: AsyncEngine, account_id: int, wallet: str) -> list[Payment]:
    """Credit `account_id` with the confirmed top-ups `wallet` sent before it had an account (call this
    after the wallet signs in). Each is credited once, however many times this runs."""
    query = sa.select(payments, sa.literal(account_id).label("owner")).where(
        payments.c.status == PaymentStatus.UNCLAIMED, payments.c.from_address == normalize_wallet(wallet)
    )
    return await _claim(db, query)


async def claim_known_senders(db: AsyncEngine) -> list[Payment]:
    """Credit every unclaimed top-up whose sender has an account by now (the watcher's safety net for a
    sign-in that raced the transfer being recorded)."""
    query = (
        sa.select(payments, billing_accounts.c.id.label("owner"))
        .join(users, users.c.wallet_address == payments.c.from_address)
        .join(billing_accounts, billing_accounts.c.user_id == users.c.id)
        .where(payments.c.status == PaymentStatus.UNCLAIMED)
    )
    return await _claim(db, query)


async def _claim(db: AsyncEngine, query: sa.Select[Any]) -> list[Payment]:
    async with db.connect() as conn:
        rows = (await conn.execute(query)).all()
    return [await _record(db, row.chain_id, _transfer(row), PaymentStatus.CREDITED, row.owner, None) for row in rows]


async def mark_reorged(db: AsyncEngine, payment_id: int, reason: str) -> Payment | None:
    """Drop a payment whose block left the canonical chain; if it had been credited, post the reversing
    `adjustment` (reference `reorg:<payment reference>`) in the same transaction. None if already final."""
    async with db.begin() as conn:
        row = (
            await conn.execute(
                sa.update(payments)
                .where(
                    payments.c.id == payment_id,
                    payments.c.status.in_((PaymentStatus.PENDING, PaymentStatus.UNCLAIMED, PaymentStatus.CREDITED)),
                )
                .values(status=PaymentStatus.REORGED, reason=reason[:200], updated_at=sa.func.current_timestamp())
                .returning(*payments.c)
            )
        ).first()
        if row is None:
            return None
        reference = payment_reference(row.chain_id, row.tx_hash, row.log_index)
        reversal = None
        if row.micros_credited is not None:
            reversal = await ledger.post_entry_in(
                conn, row.account_id, -row.micros_credited, "adjustment", f"reorg:{reference}"
            )
    if reversal is not None:
        log.error(
            "REORG REVERSAL: credited payment %s (%d micros, account %d) left the chain: %s; reversed by "
            "ledger entry %d, balance now %d micros",
            reference,
            row.micros_credited,
            row.account_id,
            reason,
            reversal.id,
            reversal.balance_after_micros,
        )
    else:
        log.warning("payment %s dropped before it was credited: %s", reference, reason)
    return _payment(row, None)


async def live_transfer(rpc: ChainRPC, row: sa.Row[Any]) -> Transfer | None:
    """The recorded payment (a `payments` row) as the chain shows it now: the same successful transaction
    with the same log (token, sender, receiver, amount), possibly in another block; None if it is gone."""
    receipt = await rpc.receipt(row.tx_hash)
    if receipt is None or receipt.status != 1:
        return None
    recorded = _transfer(row)
    same = (recorded.token, recorded.from_address, recorded.to_address, recorded.value)
    return next(
        (
            t
            for t in receipt.transfers
            if t.log_index == row.log_index and (t.token, t.from_address, t.to_address, t.value) == same
        ),
        None,
    )


async def recheck_payment(
    db: AsyncEngine, rpc: ChainRPC, settings: Settings, row: sa.Row[Any], head: int
) -> Payment | None:
    """Compare a recorded payment with the chain as it is now: gone -> reorged (and reversed if it was
    credited); moved to another block -> block updated; deep enough -> credited (or unclaimed).
    "Gone" needs its block hash to have changed too: a node that still has the block but answers no
    receipt is inconsistent (a lagging replica), and nothing is decided on its word."""
    live = await live_transfer(rpc, row)
    if live is None:
        if await rpc.block_hash(row.block_number) == row.block_hash:  # same block, so the log is there
            raise ChainUnavailable(f"the RPC has block {row.block_number} but not the log of {row.tx_hash}")
        return await mark_reorged(db, row.id, f"block {row.block_number} ({row.block_hash}) left the canonical chain")
    if row.status == PaymentStatus.CREDITED:
        if live.block_hash == row.block_hash:
            return _payment(row, head)
        return await _move_block(db, row.id, live, head)
    owner = await find_account(db, row.from_address)
    return await accept_transfer(db, settings, live, head, owner.id if owner else None)


async def _move_block(db: AsyncEngine, payment_id: int, t: Transfer, head: int) -> Payment:
    """A credited transfer re-included in another block: still paid, only its block changed."""
    async with db.begin() as conn:
        row = (
            await conn.execute(
                sa.update(payments)
                .where(payments.c.id == payment_id)
                .values(block_number=t.block_number, block_hash=t.block_hash, updated_at=sa.func.current_timestamp())
                .returning(*payments.c)
            )
        ).one()
    return _payment(row, head)
