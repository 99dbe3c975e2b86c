"""x402: EIP-3009 authorizations taken for pay-per-call (one per payer nonce) and the gas wallet lock row

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _timestamp(name: str) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), server_default=sa.text("(CURRENT_TIMESTAMP)"), nullable=False)


def upgrade() -> None:
    op.create_table(
        "x402_authorizations",
        sa.Column("id", Id, autoincrement=True, nullable=False),
        sa.Column("chain_id", sa.BigInteger(), nullable=False),
        sa.Column("token_address", sa.String(length=42), nullable=False),
        sa.Column("payer", sa.String(length=42), nullable=False),
        sa.Column("nonce", sa.String(length=66), nullable=False),
        sa.Column("value", sa.Numeric(78, 0).with_variant(sa.String(length=78), "sqlite"), nullable=False),
        sa.Column("valid_before", sa.Numeric(78, 0).with_variant(sa.String(length=78), "sqlite"), nullable=False),
        sa.Column("payload_sha256", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=16), server_default="claimed", nullable=False),
        sa.Column("tx_hash", sa.String(length=66), nullable=True),
        sa.Column("payment_reference", sa.String(length=200), nullable=True),
        sa.Column("reason", sa.String(length=200), nullable=True),
        _timestamp("created_at"),
        _timestamp("updated_at"),
        sa.CheckConstraint(
            "status IN ('claimed', 'submitted', 'settled', 'failed')", name=op.f("ck_x402_authorizations_status_known")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_x402_authorizations")),
        sa.UniqueConstraint("chain_id", "token_address", "payer", "nonce", name="uq_x402_authorizations_nonce"),
    )
    op.create_table(
        "x402_gas_wallets",
        sa.Column("chain_id", sa.BigInteger(), nullable=False),
        sa.Column("address", sa.String(length=42), nullable=False),
        sa.Column("last_tx_hash", sa.String(length=66), nullable=True),
        _timestamp("updated_at"),
        sa.PrimaryKeyConstraint("chain_id", "address", name=op.f("pk_x402_gas_wallets")),
    )


def downgrade() -> None:
    op.drop_table("x402_gas_wallets")
    op.drop_table("x402_authorizations")
