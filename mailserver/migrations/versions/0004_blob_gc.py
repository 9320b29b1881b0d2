"""index messages by body, so that an expunge finds bodies no message uses any more

Revision ID: 0004_blob_gc
Revises: 0003_trust
"""

from alembic import op

revision = "0004_blob_gc"
down_revision = "0003_trust"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_messages_blob_sha256", "messages", ["blob_sha256"])


def downgrade() -> None:
    op.drop_index("ix_messages_blob_sha256", table_name="messages")
