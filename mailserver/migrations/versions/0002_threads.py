"""threads: opener, closing, participants

Revision ID: 0002_threads
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002_threads"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("threads", schema=None) as batch_op:
        batch_op.add_column(sa.Column("opened_by", sa.String(length=320), nullable=True))
        batch_op.add_column(sa.Column("closed_by", sa.String(length=320), nullable=True))
        batch_op.add_column(
            sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(),
                      nullable=False)
        )
    op.create_table(
        "thread_participants",
        sa.Column("thread_id", sa.Integer(), nullable=False),
        sa.Column("address", sa.String(length=320), nullable=False),
        sa.ForeignKeyConstraint(["thread_id"], ["threads.id"],
                                name=op.f("fk_thread_participants_thread_id_threads"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("thread_id", "address", name=op.f("pk_thread_participants")),
    )
    op.create_index("ix_thread_participants_address", "thread_participants", ["address"])


def downgrade() -> None:
    op.drop_index("ix_thread_participants_address", table_name="thread_participants")
    op.drop_table("thread_participants")
    with op.batch_alter_table("threads", schema=None) as batch_op:
        batch_op.drop_column("updated_at")
        batch_op.drop_column("closed_by")
        batch_op.drop_column("opened_by")
