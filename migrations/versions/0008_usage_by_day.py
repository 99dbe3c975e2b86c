"""llm_usage (account_id, created_at) index: an account's spend per day reads only its window

Revision ID: 0008
Revises: 0007
"""

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_llm_usage_account_id_created_at", "llm_usage", ["account_id", "created_at"])


def downgrade() -> None:
    op.drop_index("ix_llm_usage_account_id_created_at", table_name="llm_usage")
