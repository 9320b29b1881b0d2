"""encryption at rest: mailbox key pairs and per-mailbox wrapped data keys

Revision ID: 0003_vault
Revises: 0002_directory
"""

import sqlalchemy as sa
from alembic import op

revision = "0003_vault"
down_revision = "0002_directory"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "mailbox_keys",
        sa.Column("mailbox_id", sa.Integer(), nullable=False),
        sa.Column("public_key", sa.LargeBinary(), nullable=False),
        sa.Column("wrapped_private_key", sa.LargeBinary(), nullable=False),
        sa.Column("master_key_id", sa.String(length=32), nullable=False),
        sa.ForeignKeyConstraint(["mailbox_id"], ["mailboxes.id"],
                                name=op.f("fk_mailbox_keys_mailbox_id_mailboxes"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("mailbox_id", name=op.f("pk_mailbox_keys")),
    )
    op.create_table(
        "blob_keys",
        sa.Column("blob_sha256", sa.String(length=64), nullable=False),
        sa.Column("mailbox_id", sa.Integer(), nullable=False),
        sa.Column("wrapped_key", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(["blob_sha256"], ["blobs.sha256"],
                                name=op.f("fk_blob_keys_blob_sha256_blobs"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("blob_sha256", "mailbox_id", name=op.f("pk_blob_keys")),
    )


def downgrade() -> None:
    op.drop_table("blob_keys")
    op.drop_table("mailbox_keys")
