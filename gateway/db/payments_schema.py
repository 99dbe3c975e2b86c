"""Tables of on-chain top-ups: one `payments` row per USDC Transfer log to the DAO wallet, and the
watcher's `chain_cursor`. Registered on the shared `metadata` of gateway.db.schema.

A payment is identified by `(chain_id, tx_hash, log_index)`; its ledger reference is the same triple
(`8453:0xabc…:3`). Status moves:

    pending   --(enough confirmations, sender has an account)--> credited
    pending   --(enough confirmations, sender has no account)---> unclaimed --(sender signs in)--> credited
    (any)     --(amount outside the top-up bounds)--------------> rejected   (final)
    pending / unclaimed / credited --(its block left the chain)--> reorged  (a credited one is reversed)

`micros_credited` is set exactly when a payment is credited and never cleared, so "was it ever
credited?" survives a reorg. Addresses and hashes are stored as lower-case 0x hex.
"""

from __future__ import annotations

from enum import StrEnum

import sqlalchemy as sa

from gateway.db.schema import Id, Micros, UInt256, metadata, timestamp_column


class PaymentStatus(StrEnum):
    """`payments.status`: awaiting confirmations (`pending`), confirmed but its sender has no account yet
    (`unclaimed`), `credited` (final unless reorged), `rejected` (final), `reorged` (it left the chain)."""

    PENDING = "pending"
    UNCLAIMED = "unclaimed"
    CREDITED = "credited"
    REJECTED = "rejected"
    REORGED = "reorged"


STATUSES = tuple(PaymentStatus)


payments = sa.Table(
    "payments",
    metadata,
    sa.Column("id", Id, primary_key=True, autoincrement=True),
    sa.Column("chain_id", sa.BigInteger(), nullable=False),
    sa.Column("tx_hash", sa.String(66), nullable=False),
    sa.Column("log_index", sa.Integer(), nullable=False),
    sa.Column("from_address", sa.String(42), nullable=False),
    sa.Column("to_address", sa.String(42), nullable=False),
    sa.Column("token_address", sa.String(42), nullable=False),
    sa.Column("raw_amount", UInt256(), nullable=False),  # the log's value, in token base units
    sa.Column("micros_credited", Micros, nullable=True),
    sa.Column("block_number", sa.BigInteger(), nullable=False),
    sa.Column("block_hash", sa.String(66), nullable=False),
    sa.Column("status", sa.String(16), nullable=False, server_default=PaymentStatus.PENDING.value),
    sa.Column("reason", sa.String(200), nullable=True),  # why it was rejected or reorged
    sa.Column("account_id", Id, sa.ForeignKey("billing_accounts.id"), nullable=True),  # null: unclaimed
    timestamp_column("created_at"),
    timestamp_column("updated_at"),
    sa.UniqueConstraint("chain_id", "tx_hash", "log_index", name="uq_payments_chain_tx_log"),
    sa.CheckConstraint(sa.column("status").in_(STATUSES), name="status_known"),
    sa.Index("ix_payments_account_id_id", "account_id", "id"),
    sa.Index("ix_payments_from_address_status", "from_address", "status"),
    sa.Index("ix_payments_status_block_number", "status", "block_number"),
)

chain_cursor = sa.Table(
    "chain_cursor",
    metadata,
    sa.Column("name", sa.String(200), primary_key=True),  # what is followed: chain, token and receiver
    sa.Column("last_block", sa.BigInteger(), nullable=False),  # every block up to here is processed
    sa.Column("last_block_hash", sa.String(66), nullable=True),
    timestamp_column("updated_at"),
)
