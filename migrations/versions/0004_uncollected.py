"""llm_usage.uncollected_micros: what a call cost above its hold, never taken from the account

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("llm_usage") as batch:
        batch.add_column(sa.Column("uncollected_micros", sa.BigInteger(), server_default="0", nullable=False))
        batch.create_check_constraint(
            "uncollected_within_price", "uncollected_micros >= 0 AND uncollected_micros <= user_price_micros"
        )


def downgrade() -> None:
    with op.batch_alter_table("llm_usage") as batch:
        batch.drop_constraint("ck_llm_usage_uncollected_within_price", type_="check")
        batch.drop_column("uncollected_micros")
