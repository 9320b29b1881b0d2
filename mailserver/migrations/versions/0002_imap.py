"""imap: record of expunged UIDs (QRESYNC VANISHED), message index by folder and uid

Revision ID: 0002_imap
Revises: 0002_threads
"""

import sqlalchemy as sa
from alembic import op

revision = "0002_imap"
down_revision = "0002_threads"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "expunged_uids",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("folder_id", sa.Integer(), nullable=False),
        sa.Column("uid", sa.BigInteger(), nullable=False),
        sa.Column("modseq", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["folder_id"], ["folders.id"],
            name=op.f("fk_expunged_uids_folder_id_folders"), ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_expunged_uids")),
    )
    with op.batch_alter_table("expunged_uids", schema=None) as batch_op:
        batch_op.create_index(
            "ix_expunged_uids_folder_modseq", ["folder_id", "modseq"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("expunged_uids", schema=None) as batch_op:
        batch_op.drop_index("ix_expunged_uids_folder_modseq")
    op.drop_table("expunged_uids")
