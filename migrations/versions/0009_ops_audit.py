"""Operator console: the append-only `ops_audit` table, `billing_accounts.frozen_at`, and `created_at` indexes
on `llm_usage` and `credit_holds` (the console's business per day reads a range of days of every account).

UPDATE and DELETE on `ops_audit` are refused by triggers (PostgreSQL and SQLite), so the audit trail is
append-only for every client of the database, not only for the gateway's code.

Revision ID: 0009
Revises: 0008
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_MESSAGE = "ops_audit is append-only"


def upgrade() -> None:
    with op.batch_alter_table("billing_accounts") as batch:
        batch.add_column(sa.Column("frozen_at", sa.DateTime(timezone=True), nullable=True))
    op.create_table(
        "ops_audit",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.text("CURRENT_TIMESTAMP")
        ),
        sa.Column("operator_wallet", sa.String(42), nullable=False),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("reference", sa.String(100), nullable=False),
        sa.Column("account_id", Id, nullable=True),
        sa.Column("key_id", Id, nullable=True),
        sa.Column("params", sa.Text(), nullable=False),
        sa.Column("reason", sa.String(500), nullable=False),
        sa.Column("result", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_ops_audit"),
        sa.UniqueConstraint("reference", name="uq_ops_audit_reference"),
    )
    op.create_index("ix_ops_audit_account_id_id", "ops_audit", ["account_id", "id"])
    op.create_index("ix_ops_audit_action_id", "ops_audit", ["action", "id"])
    op.create_index("ix_llm_usage_created_at", "llm_usage", ["created_at"])
    op.create_index("ix_credit_holds_created_at", "credit_holds", ["created_at"])
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "CREATE FUNCTION ops_audit_append_only() RETURNS trigger LANGUAGE plpgsql AS "
            f"$$ BEGIN RAISE EXCEPTION '{_MESSAGE}'; END $$"
        )
        op.execute(
            "CREATE TRIGGER ops_audit_append_only BEFORE UPDATE OR DELETE ON ops_audit "
            "FOR EACH ROW EXECUTE FUNCTION ops_audit_append_only()"
        )
    else:
        for event in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER ops_audit_no_{event.lower()} BEFORE {event} ON ops_audit "
                f"BEGIN SELECT RAISE(ABORT, '{_MESSAGE}'); END"
            )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER ops_audit_append_only ON ops_audit")
        op.execute("DROP FUNCTION ops_audit_append_only()")
    op.drop_index("ix_credit_holds_created_at", table_name="credit_holds")
    op.drop_index("ix_llm_usage_created_at", table_name="llm_usage")
    op.drop_index("ix_ops_audit_action_id", table_name="ops_audit")
    op.drop_index("ix_ops_audit_account_id_id", table_name="ops_audit")
    op.drop_table("ops_audit")  # its SQLite triggers go with it
    with op.batch_alter_table("billing_accounts") as batch:
        batch.drop_column("frozen_at")
