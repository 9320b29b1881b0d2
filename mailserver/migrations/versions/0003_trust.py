"""trust space and outbound queue

Revision ID: 0003_trust
Revises: 0003_vault
"""

import sqlalchemy as sa
from alembic import op

revision = "0003_trust"
down_revision = "0003_vault"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "trust_domains",
        sa.Column("domain", sa.String(length=253), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("operator_dn", sa.Text(), nullable=False),
        sa.Column("responsible_contact", sa.Text(), nullable=False),
        sa.Column("support_contact", sa.Text(), nullable=False),
        sa.Column("updated", sa.String(length=64), nullable=False),
        sa.Column("list_generated", sa.String(length=64), nullable=False),
        sa.Column("imported_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("domain", name=op.f("pk_trust_domains")),
    )
    op.create_table(
        "queue_messages",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("queue_id", sa.String(length=32), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("mail_from", sa.String(length=998), nullable=False),
        sa.Column("envid", sa.String(length=100), nullable=True),
        sa.Column("ret", sa.String(length=4), nullable=True),
        sa.Column("message_id", sa.String(length=998), nullable=True),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_queue_messages")),
    )
    op.create_table(
        "queue_recipients",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("message_id", sa.Integer(), nullable=False),
        sa.Column("recipient", sa.String(length=998), nullable=False),
        sa.Column("domain", sa.String(length=253), nullable=False),
        sa.Column("notify", sa.String(length=40), nullable=True),
        sa.Column("orcpt", sa.Text(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.Float(), nullable=False),
        sa.Column("lease_until", sa.Float(), nullable=True),
        sa.Column("lease_owner", sa.String(length=64), nullable=True),
        sa.Column("last_reply", sa.Text(), nullable=False),
        sa.Column("delay_notified", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(["message_id"], ["queue_messages.id"],
                                name=op.f("fk_queue_recipients_message_id_queue_messages"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_queue_recipients")),
    )
    op.create_index("ix_queue_recipients_due", "queue_recipients",
                    ["status", "next_attempt_at"], unique=False)
    op.create_index(op.f("ix_queue_recipients_message_id"), "queue_recipients",
                    ["message_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_queue_recipients_message_id"), table_name="queue_recipients")
    op.drop_index("ix_queue_recipients_due", table_name="queue_recipients")
    op.drop_table("queue_recipients")
    op.drop_table("queue_messages")
    op.drop_table("trust_domains")
