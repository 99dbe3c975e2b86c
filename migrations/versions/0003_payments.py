"""payments: on-chain USDC top-ups and the chain watcher's cursor

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _timestamp(name: str) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), server_default=sa.text("(CURRENT_TIMESTAMP)"), nullable=False)


def upgrade() -> None:
    op.create_table(
        "payments",
        sa.Column("id", Id, autoincrement=True, nullable=False),
        sa.Column("chain_id", sa.BigInteger(), nullable=False),
        sa.Column("tx_hash", sa.String(length=66), nullable=False),
        sa.Column("log_index", sa.Integer(), nullable=False),
        sa.Column("from_address", sa.String(length=42), nullable=False),
        sa.Column("to_address", sa.String(length=42), nullable=False),
        sa.Column("token_address", sa.String(length=42), nullable=False),
        sa.Column("raw_amount", sa.Numeric(78, 0).with_variant(sa.String(length=78), "sqlite"), nullable=False),
        sa.Column("micros_credited", sa.BigInteger(), nullable=True),
        sa.Column("block_number", sa.BigInteger(), nullable=False),
        sa.Column("block_hash", sa.String(length=66), nullable=False),
        sa.Column("status", sa.String(length=16), server_default="pending", nullable=False),
        sa.Column("reason", sa.String(length=200), nullable=True),
        sa.Column("account_id", Id, nullable=True),
        _timestamp("created_at"),
        _timestamp("updated_at"),
        sa.CheckConstraint(
            "status IN ('pending', 'unclaimed', 'credited', 'rejected', 'reorged')",
            name=op.f("ck_payments_status_known"),
        ),
        sa.ForeignKeyConstraint(
            ["account_id"], ["billing_accounts.id"], name=op.f("fk_payments_account_id_billing_accounts")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_payments")),
        sa.UniqueConstraint("chain_id", "tx_hash", "log_index", name="uq_payments_chain_tx_log"),
    )
    with op.batch_alter_table("payments", schema=None) as batch_op:
        batch_op.create_index("ix_payments_account_id_id", ["account_id", "id"], unique=False)
        batch_op.create_index("ix_payments_from_address_status", ["from_address", "status"], unique=False)
        batch_op.create_index("ix_payments_status_block_number", ["status", "block_number"], unique=False)

    op.create_table(
        "chain_cursor",
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("last_block", sa.BigInteger(), nullable=False),
        sa.Column("last_block_hash", sa.String(length=66), nullable=True),
        _timestamp("updated_at"),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_chain_cursor")),
    )


def downgrade() -> None:
    op.drop_table("chain_cursor")
    with op.batch_alter_table("payments", schema=None) as batch_op:
        batch_op.drop_index("ix_payments_status_block_number")
        batch_op.drop_index("ix_payments_from_address_status")
        batch_op.drop_index("ix_payments_account_id_id")
    op.drop_table("payments")
