"""outbound queue sealed at rest

Revision ID: 0006_queue_sealed
Revises: 0005_search_vocab

A message waiting for another operator is stored encrypted like a delivered one: its
data key, wrapped by the master key, and that key's id. Rows queued before stay
readable as they are (both columns NULL).
"""

import sqlalchemy as sa
from alembic import op

revision = "0006_queue_sealed"
down_revision = "0005_search_vocab"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("queue_messages", sa.Column("data_key", sa.LargeBinary(), nullable=True))
    op.add_column("queue_messages", sa.Column("master_key_id", sa.String(32), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("queue_messages") as batch:
        batch.drop_column("master_key_id")
        batch.drop_column("data_key")
