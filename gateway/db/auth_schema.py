"""The sidecar's sign-in tables: issued SIWE nonces (when there is no Redis) and server-side sessions.

They live on the shared `metadata` of `gateway.db.schema`, so Alembic (migration 0002) and tests see one
schema. A session row stores only the SHA-256 of the opaque id in the browser's cookie.
"""

from __future__ import annotations

import sqlalchemy as sa

from gateway.db.schema import Id, metadata

siwe_nonces = sa.Table(
    "siwe_nonces",
    metadata,
    sa.Column("nonce", sa.String(64), primary_key=True),
    sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False, index=True),
)

sessions = sa.Table(
    "sessions",
    metadata,
    sa.Column("id_hash", sa.String(64), primary_key=True),  # SHA-256 hex of the cookie's session id
    sa.Column("account_id", Id, sa.ForeignKey("billing_accounts.id"), nullable=False, index=True),
    sa.Column("wallet_address", sa.String(42), nullable=False),  # lower-case 0x hex, as in users
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.text("CURRENT_TIMESTAMP")),
    sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
)
