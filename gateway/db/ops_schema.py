"""The operator console's table: `ops_audit`, one row per operator action, append-only. Registered on the
shared `metadata` of gateway.db.schema.

A row says who (`operator_wallet`), when (`created_at`), what (`action`, its target account/key and its
`params` as canonical JSON), why (`reason`), and what came of it (`result`, JSON). `reference` is the
operator's idempotency reference, unique: replaying an action with it returns the recorded result; reusing
it for another action, target or parameters is refused (gateway/ops/audit.py). Migration 0009 adds triggers
that refuse UPDATE and DELETE on this table, on PostgreSQL and on SQLite.

`billing_accounts.frozen_at` (set by the freeze action) lives in gateway.db.schema with the account.
"""

from __future__ import annotations

import sqlalchemy as sa

from gateway.db.schema import Id, metadata, timestamp_column

ops_audit = sa.Table(
    "ops_audit",
    metadata,
    sa.Column("id", Id, primary_key=True, autoincrement=True),
    timestamp_column("created_at"),
    sa.Column("operator_wallet", sa.String(42), nullable=False),  # lower-case 0x hex
    sa.Column("action", sa.String(32), nullable=False),
    sa.Column("reference", sa.String(100), nullable=False, unique=True),
    sa.Column("account_id", Id, nullable=True),
    sa.Column("key_id", Id, nullable=True),
    sa.Column("params", sa.Text(), nullable=False),  # canonical JSON of what was asked
    sa.Column("reason", sa.String(500), nullable=False),
    sa.Column("result", sa.Text(), nullable=False),  # JSON of what was done
    sa.Index("ix_ops_audit_account_id_id", "account_id", "id"),
    sa.Index("ix_ops_audit_action_id", "action", "id"),
)
