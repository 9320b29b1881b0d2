"""\\Recent: the first UID of each folder no session has been told about yet

Revision ID: 0004_recent
Revises: 0004_directory_import
"""

import sqlalchemy as sa
from alembic import op

revision = "0004_recent"
down_revision = "0004_directory_import"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("folders", sa.Column("first_recent_uid", sa.BigInteger(), nullable=False,
                                       server_default="1"))
    # Messages stored before this revision were seen by the sessions of their day.
    op.execute("UPDATE folders SET first_recent_uid = uidnext")


def downgrade() -> None:
    op.drop_column("folders", "first_recent_uid")
