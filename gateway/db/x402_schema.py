"""Tables of x402 pay-per-call: one `x402_authorizations` row per EIP-3009 authorization the gateway took,
and the `x402_gas_wallets` row that serialises the gas wallet's transactions. Registered on the shared
`metadata` of gateway.db.schema.

An authorization is identified as the token contract does: `(chain_id, token, payer, nonce)`; the unique
constraint on it is what makes a replayed PAYMENT-SIGNATURE settle at most once, on any number of
processes. Status moves:

    claimed   --(transaction signed, about to be sent)----------> submitted
    claimed   --(refused or not sent: deleted, the payer may retry)
    submitted --(receipt ok, payment credited, one call admitted)-> settled   (final)
    submitted --(receipt status 0)--------------------------------> failed    (final)

`payload_sha256` is the hash of the authorization and signature: only the very same payment may resume a
`submitted` row (a retry after a timeout), never another payload that reuses its nonce.
"""

from __future__ import annotations

from enum import StrEnum

import sqlalchemy as sa

from gateway.db.schema import Id, UInt256, metadata, timestamp_column


class AuthorizationStatus(StrEnum):
    """`x402_authorizations.status` (see the module docstring for the moves)."""

    CLAIMED = "claimed"
    SUBMITTED = "submitted"
    SETTLED = "settled"
    FAILED = "failed"


STATUSES = tuple(AuthorizationStatus)


x402_authorizations = sa.Table(
    "x402_authorizations",
    metadata,
    sa.Column("id", Id, primary_key=True, autoincrement=True),
    sa.Column("chain_id", sa.BigInteger(), nullable=False),
    sa.Column("token_address", sa.String(42), nullable=False),
    sa.Column("payer", sa.String(42), nullable=False),
    sa.Column("nonce", sa.String(66), nullable=False),
    sa.Column("value", UInt256(), nullable=False),
    sa.Column("valid_before", UInt256(), nullable=False),
    sa.Column("payload_sha256", sa.String(64), nullable=False),
    sa.Column("status", sa.String(16), nullable=False, server_default=AuthorizationStatus.CLAIMED.value),
    sa.Column("tx_hash", sa.String(66), nullable=True),
    sa.Column("payment_reference", sa.String(200), nullable=True),  # the credited payment (chain:tx:log)
    sa.Column("reason", sa.String(200), nullable=True),  # why it failed
    timestamp_column("created_at"),
    timestamp_column("updated_at"),
    sa.UniqueConstraint("chain_id", "token_address", "payer", "nonce", name="uq_x402_authorizations_nonce"),
    sa.CheckConstraint(sa.column("status").in_([s.value for s in STATUSES]), name="status_known"),
)

x402_gas_wallets = sa.Table(
    "x402_gas_wallets",
    metadata,
    sa.Column("chain_id", sa.BigInteger(), primary_key=True),
    sa.Column("address", sa.String(42), primary_key=True),
    sa.Column("last_tx_hash", sa.String(66), nullable=True),  # the latest transaction sent (for operators)
    timestamp_column("updated_at"),
)
