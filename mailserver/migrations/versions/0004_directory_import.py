"""directory import: digest of each mailbox's last imported row

Revision ID: 0004_directory_import
Revises: 0004_summaries
"""

import sqlalchemy as sa
from alembic import op

revision = "0004_directory_import"
down_revision = "0004_summaries"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A plain ADD COLUMN (no table copy on SQLite); NULL until the next import.
    op.add_column("mailboxes", sa.Column("import_digest", sa.String(length=32), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("mailboxes", schema=None) as batch_op:
        batch_op.drop_column("import_digest")
