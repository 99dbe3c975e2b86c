"""The relational schema (SQLAlchemy Core tables), shared by PostgreSQL and the embedded SQLite default.

Amounts are BIGINT USD micros. `credit_ledger` is append-only; `credit_holds` are the pending transfers
(TigerBeetle's vocabulary: a hold is *pending*, then *posted* by a settle or *voided* by a release/expiry).
Migrations in `migrations/` create exactly these tables; `tests/integration/db/test_migrations.py` checks they agree.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

# BIGINT primary keys on PostgreSQL; INTEGER on SQLite so that they are rowid aliases (autoincrement).
Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Micros = sa.BigInteger()


def as_utc(value: datetime) -> datetime:
    """A timestamp read back from the database, zone-aware: SQLite returns them naive, and all are UTC."""
    return value if value.tzinfo else value.replace(tzinfo=UTC)


class UInt256(sa.TypeDecorator[int]):
    """A token amount (uint256) as a Python int: NUMERIC(78,0) on PostgreSQL, exact decimal text on SQLite
    (whose NUMERIC would fall back to a lossy REAL above 2**63)."""

    impl = sa.Numeric(78, 0)
    cache_ok = True

    def load_dialect_impl(self, dialect: sa.Dialect) -> sa.types.TypeEngine[Any]:
        return dialect.type_descriptor(sa.String(78) if dialect.name == "sqlite" else sa.Numeric(78, 0))

    def process_bind_param(self, value: int | None, dialect: sa.Dialect) -> object:
        if value is None:
            return None
        return str(value) if dialect.name == "sqlite" else Decimal(value)

    def process_result_value(self, value: Decimal | str | None, dialect: sa.Dialect) -> int | None:
        return None if value is None else int(value)


def timestamp_column(name: str) -> sa.Column[datetime]:
    """A required timestamp that defaults to the database's clock when the row is written."""
    return sa.Column(name, sa.DateTime(timezone=True), nullable=False, server_default=sa.text("CURRENT_TIMESTAMP"))


def insert_for(conn: AsyncConnection) -> Callable[[sa.Table], postgresql.Insert | sqlite.Insert]:
    """The connection's dialect INSERT (PostgreSQL or SQLite): both offer ON CONFLICT DO NOTHING/UPDATE."""
    return postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert


class HoldStatus(StrEnum):
    """`credit_holds.status`: a hold is pending until it is posted, voided or expired (each final)."""

    PENDING = "pending"
    POSTED = "posted"
    VOIDED = "voided"
    EXPIRED = "expired"


users = sa.Table(
    "users",
    metadata,
    sa.Column("id", Id, primary_key=True, autoincrement=True),
    sa.Column("wallet_address", sa.String(42), nullable=False, unique=True),  # lower-case 0x hex
    timestamp_column("created_at"),
)

billing_accounts = sa.Table(
    "billing_accounts",
    metadata,
    sa.Column("id", Id, primary_key=True, autoincrement=True),
    sa.Column("user_id", Id, sa.ForeignKey("users.id"), nullable=False, unique=True),
    sa.Column("balance_micros", Micros, nullable=False, server_default="0"),
    sa.Column("held_micros", Micros, nullable=False, server_default="0"),
    timestamp_column("created_at"),
    # low-balance signal (gateway/accounts/low_balance.py): the threshold, and since when the balance is below it
    sa.Column("low_balance_threshold_micros", Micros, nullable=True),
    sa.Column("low_balance_since", sa.DateTime(timezone=True), nullable=True),
    # set by an operator's freeze (gateway/ops/actions.py): the account's keys answer 403 account_frozen
    sa.Column("frozen_at", sa.DateTime(timezone=True), nullable=True),
    sa.CheckConstraint("held_micros >= 0", name="held_not_negative"),
)

virtual_keys = sa.Table(
    "virtual_keys",
    metadata,
    sa.Column("id", Id, primary_key=True, autoincrement=True),
    sa.Column("account_id", Id, sa.ForeignKey("billing_accounts.id"), nullable=False, index=True),
    sa.Column("key_hash", sa.String(64), nullable=False, unique=True),  # SHA-256 hex of the raw key
    sa.Column("key_prefix", sa.String(16), nullable=False),  # shown to the owner to tell keys apart
    sa.Column("label", sa.String(100), nullable=False, server_default=""),
    timestamp_column("created_at"),
    sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
    # per-key credit limit (gateway/core/limits.py): NULL = none; the use counts holds and charges since period_start
    # (only while the key has a limit: gateway/accounts/keys.py reads the use of one without from its calls)
    sa.Column("limit_micros", Micros, nullable=True),
    sa.Column("limit_reset", sa.String(8), nullable=False, server_default="none"),  # none|daily|weekly|monthly
    sa.Column("period_start", sa.DateTime(timezone=True), nullable=True),
    sa.Column("period_used_micros", Micros, nullable=False, server_default="0"),
    sa.CheckConstraint("limit_micros IS NULL OR limit_micros >= 0", name="limit_not_negative"),
    sa.CheckConstraint("limit_reset IN ('none', 'daily', 'weekly', 'monthly')", name="limit_reset_known"),
)

credit_ledger = sa.Table(
    "credit_ledger",
    metadata,
    sa.Column("id", Id, primary_key=True, autoincrement=True),
    sa.Column("account_id", Id, sa.ForeignKey("billing_accounts.id"), nullable=False),
    sa.Column("amount_micros", Micros, nullable=False),  # signed: + credit, - debit
    sa.Column("balance_after_micros", Micros, nullable=False),
    sa.Column("reason", sa.String(32), nullable=False),
    sa.Column("reference", sa.String(200), nullable=False),
    timestamp_column("created_at"),
    sa.UniqueConstraint("reason", "reference", name="uq_credit_ledger_reason_reference"),
    sa.Index("ix_credit_ledger_account_id_id", "account_id", "id"),
)

credit_holds = sa.Table(
    "credit_holds",
    metadata,
    sa.Column("id", Id, primary_key=True, autoincrement=True),
    sa.Column("account_id", Id, sa.ForeignKey("billing_accounts.id"), nullable=False),
    sa.Column("request_id", sa.String(100), nullable=False, unique=True),
    sa.Column("key_id", Id, nullable=True),
    sa.Column("model", sa.String(200), nullable=False, server_default=""),
    sa.Column("amount_micros", Micros, nullable=False),
    sa.Column("status", sa.String(16), nullable=False, server_default=HoldStatus.PENDING.value),
    timestamp_column("created_at"),
    sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("key_period_start", sa.DateTime(timezone=True), nullable=True),  # the key period it counts in
    sa.CheckConstraint("amount_micros >= 0", name="amount_not_negative"),
    sa.Index("ix_credit_holds_pending_expiry", "status", "expires_at"),
    sa.Index("ix_credit_holds_created_at", "created_at"),  # the operator console's calls by outcome per day
)

llm_usage = sa.Table(
    "llm_usage",
    metadata,
    sa.Column("id", Id, primary_key=True, autoincrement=True),
    sa.Column("request_id", sa.String(100), nullable=False, unique=True),
    sa.Column("account_id", Id, sa.ForeignKey("billing_accounts.id"), nullable=False),
    sa.Column("key_id", Id, nullable=True),
    sa.Column("model", sa.String(200), nullable=False),
    sa.Column("prompt_tokens", sa.Integer(), nullable=False),
    sa.Column("completion_tokens", sa.Integer(), nullable=False),
    sa.Column("total_tokens", sa.Integer(), nullable=False),
    sa.Column("provider_cost_micros", Micros, nullable=False),
    sa.Column("user_price_micros", Micros, nullable=False),
    sa.Column("markup", sa.String(20), nullable=False),  # exact Decimal text, e.g. "2.0"
    sa.Column("streamed", sa.Boolean(), nullable=False, server_default=sa.false()),
    sa.Column("cost_source", sa.String(16), nullable=False, server_default="litellm"),  # litellm|price_table
    # the billed API (chat, embeddings, responses, messages, completions); NULL for calls before it was recorded
    sa.Column("route", sa.String(16), nullable=True),
    # the part of user_price_micros the account was NOT charged: the provider billed more than was held
    # (it counted the prompt differently), and a balance never goes below zero. Operator loss.
    sa.Column("uncollected_micros", Micros, nullable=False, server_default="0"),
    timestamp_column("created_at"),
    sa.CheckConstraint("user_price_micros >= provider_cost_micros", name="price_covers_cost"),
    sa.CheckConstraint(
        "uncollected_micros >= 0 AND uncollected_micros <= user_price_micros", name="uncollected_within_price"
    ),
    sa.Index("ix_llm_usage_account_id_id", "account_id", "id"),
    sa.Index("ix_llm_usage_account_id_created_at", "account_id", "created_at"),  # spend per day (history_daily)
    sa.Index("ix_llm_usage_created_at", "created_at"),  # the operator console's business per day (gateway/ops)
)

low_balance_events = sa.Table(  # one row per crossing of an account's low-balance threshold (downwards)
    "low_balance_events",
    metadata,
    sa.Column("id", Id, primary_key=True, autoincrement=True),
    sa.Column("account_id", Id, sa.ForeignKey("billing_accounts.id"), nullable=False),
    sa.Column("threshold_micros", Micros, nullable=False),
    sa.Column("balance_micros", Micros, nullable=False),
    sa.Column("crossed_at", sa.DateTime(timezone=True), nullable=False),
    sa.Index("ix_low_balance_events_account_id_id", "account_id", "id"),
)
