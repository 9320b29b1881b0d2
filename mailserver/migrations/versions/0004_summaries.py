"""message summaries (sealed ENVELOPE / BODYSTRUCTURE / header fields per message)

Revision ID: 0004_summaries
Revises: 0004_blob_gc

Existing messages get theirs lazily: the store computes a missing summary from the
body the first time FETCH, SEARCH, SORT or THREAD needs it, and stores it (a
migration cannot: sealing needs the master key, which the database never sees).
"""

import sqlalchemy as sa
from alembic import op

revision = "0004_summaries"
down_revision = "0004_blob_gc"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "message_summaries",
        sa.Column("folder_id", sa.Integer(), nullable=False),
        sa.Column("uid", sa.BigInteger(), nullable=False),
        sa.Column("head", sa.LargeBinary(), nullable=False),
        sa.Column("render", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(
            ["folder_id", "uid"], ["messages.folder_id", "messages.uid"],
            name=op.f("fk_message_summaries_folder_id_messages"), ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("folder_id", "uid", name=op.f("pk_message_summaries")),
    )


def downgrade() -> None:
    op.drop_table("message_summaries")
