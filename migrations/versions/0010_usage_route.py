"""llm_usage.route: which billed API a call was (chat, embeddings, responses, messages, completions)

Nullable: the calls recorded before this revision did not say (NULL reads as "not recorded").

Revision ID: 0010
Revises: 0009
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("llm_usage", sa.Column("route", sa.String(16), nullable=True))


def downgrade() -> None:
    op.drop_column("llm_usage", "route")
