"""Per-key credit limits: the limit, its reset period, and the key's use in the current period; each hold
remembers the key period it was counted in, so a settle or release gives back to that period only.

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("virtual_keys") as batch:
        batch.add_column(sa.Column("limit_micros", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("limit_reset", sa.String(8), server_default="none", nullable=False))
        batch.add_column(sa.Column("period_start", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("period_used_micros", sa.BigInteger(), server_default="0", nullable=False))
        batch.create_check_constraint("limit_not_negative", "limit_micros IS NULL OR limit_micros >= 0")
        batch.create_check_constraint("limit_reset_known", "limit_reset IN ('none', 'daily', 'weekly', 'monthly')")
    with op.batch_alter_table("credit_holds") as batch:
        batch.add_column(sa.Column("key_period_start", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("credit_holds") as batch:
        batch.drop_column("key_period_start")
    with op.batch_alter_table("virtual_keys") as batch:
        batch.drop_constraint("ck_virtual_keys_limit_reset_known", type_="check")
        batch.drop_constraint("ck_virtual_keys_limit_not_negative", type_="check")
        for name in ("period_used_micros", "period_start", "limit_reset", "limit_micros"):
            batch.drop_column(name)
