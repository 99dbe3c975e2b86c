"""Low-balance signal: an account's threshold, whether it is below it now, and one event per crossing.

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("billing_accounts") as batch:
        batch.add_column(sa.Column("low_balance_threshold_micros", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("low_balance_since", sa.DateTime(timezone=True), nullable=True))
    op.create_table(
        "low_balance_events",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True),
        sa.Column("account_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("threshold_micros", sa.BigInteger(), nullable=False),
        sa.Column("balance_micros", sa.BigInteger(), nullable=False),
        sa.Column("crossed_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"], ["billing_accounts.id"], name="fk_low_balance_events_account_id_billing_accounts"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_low_balance_events"),
    )
    op.create_index("ix_low_balance_events_account_id_id", "low_balance_events", ["account_id", "id"])


def downgrade() -> None:
    op.drop_index("ix_low_balance_events_account_id_id", table_name="low_balance_events")
    op.drop_table("low_balance_events")
    with op.batch_alter_table("billing_accounts") as batch:
        batch.drop_column("low_balance_since")
        batch.drop_column("low_balance_threshold_micros")
