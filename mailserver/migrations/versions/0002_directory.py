"""directory: practitioners, organisations, mailbox details, certificates, search

Revision ID: 0002_directory
Revises: 0002_imap
Create Date: 2026-11-24 09:30:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0002_directory"
down_revision = "0002_imap"
branch_labels = None
depends_on = None

# SQLite: an FTS5 index over directory_search, kept in step by triggers (the
# "external content" pattern of https://sqlite.org/fts5.html §4.4.3). The search only
# ANDs word prefixes, so detail=none (no positions: about 3x cheaper to build for the
# 536k-row import); prefix indexes make 2- and 3-letter prefixes cheap.
SQLITE_FTS = [
    """CREATE VIRTUAL TABLE directory_search_fts USING fts5(
        document, content='directory_search', content_rowid='mailbox_id',
        tokenize='unicode61 remove_diacritics 2', detail=none, prefix='2 3')""",
    # Its vocabulary: the search turns a long prefix into an OR of the words it
    # starts, which FTS5 merges lazily (a prefix query merges every doclist first).
    "CREATE VIRTUAL TABLE directory_search_vocab USING fts5vocab(directory_search_fts, row)",
    """CREATE TRIGGER directory_search_ai AFTER INSERT ON directory_search BEGIN
        INSERT INTO directory_search_fts(rowid, document) VALUES (new.mailbox_id, new.document);
    END""",
    """CREATE TRIGGER directory_search_ad AFTER DELETE ON directory_search BEGIN
        INSERT INTO directory_search_fts(directory_search_fts, rowid, document)
        VALUES ('delete', old.mailbox_id, old.document);
    END""",
    """CREATE TRIGGER directory_search_au AFTER UPDATE ON directory_search BEGIN
        INSERT INTO directory_search_fts(directory_search_fts, rowid, document)
        VALUES ('delete', old.mailbox_id, old.document);
        INSERT INTO directory_search_fts(rowid, document) VALUES (new.mailbox_id, new.document);
    END""",
]


def upgrade() -> None:
    op.create_table(
        "practitioners",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("id_type", sa.String(length=2), nullable=False),
        sa.Column("identifier", sa.String(length=32), nullable=False),
        sa.Column("national_id", sa.String(length=40), nullable=False),
        sa.Column("civility", sa.String(length=32), nullable=False),
        sa.Column("family_name", sa.String(length=200), nullable=False),
        sa.Column("given_name", sa.String(length=200), nullable=False),
        sa.Column("category_code", sa.String(length=8), nullable=False),
        sa.Column("category_label", sa.String(length=200), nullable=False),
        sa.Column("profession_code", sa.String(length=8), nullable=False),
        sa.Column("profession_label", sa.String(length=200), nullable=False),
        sa.Column("specialty_code", sa.String(length=16), nullable=False),
        sa.Column("specialty_label", sa.String(length=200), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=True),
        sa.Column("active", sa.Boolean(), server_default=sa.true(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_practitioners")),
        sa.UniqueConstraint("national_id", name=op.f("uq_practitioners_national_id")),
    )
    op.create_table(
        "organisations",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("id_type", sa.String(length=4), nullable=False),
        sa.Column("identifier", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=300), nullable=False),
        sa.Column("trade_name", sa.String(length=300), nullable=False),
        sa.Column("address_lines", sa.Text(), nullable=False),
        sa.Column("locality", sa.String(length=200), nullable=False),
        sa.Column("postal_code", sa.String(length=16), nullable=False),
        sa.Column("department", sa.String(length=8), nullable=False),
        sa.Column("country", sa.String(length=64), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_organisations")),
        sa.UniqueConstraint("id_type", "identifier", name=op.f("uq_organisations_id_type")),
    )
    op.create_table(
        "certificates",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("bound_to", sa.String(length=320), nullable=False),
        sa.Column("usage", sa.String(length=16), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("subject", sa.String(length=1000), nullable=False),
        sa.Column("issuer", sa.String(length=1000), nullable=False),
        sa.Column("serial", sa.String(length=64), nullable=False),
        sa.Column("not_before", sa.DateTime(timezone=True), nullable=False),
        sa.Column("not_after", sa.DateTime(timezone=True), nullable=False),
        sa.Column("der", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_certificates")),
        sa.UniqueConstraint("sha256", "bound_to", "usage", name=op.f("uq_certificates_sha256")),
    )
    op.create_index("ix_certificates_bound_to", "certificates", ["bound_to", "usage"])
    # Plain ADD COLUMNs (no table copy on SQLite: existing rows and the tables that
    # reference mailboxes stay untouched).
    sqlite = op.get_bind().dialect.name == "sqlite"
    for table, parent in (("practitioner", "practitioners"), ("organisation", "organisations")):
        if sqlite:
            op.execute(
                f"ALTER TABLE mailboxes ADD COLUMN {table}_id INTEGER "
                f"CONSTRAINT fk_mailboxes_{table}_id_{parent} "
                f"REFERENCES {parent}(id) ON DELETE SET NULL"
            )
        else:
            op.add_column("mailboxes", sa.Column(f"{table}_id", sa.Integer(), nullable=True))
            op.create_foreign_key(
                f"fk_mailboxes_{table}_id_{parent}", "mailboxes", parent,
                [f"{table}_id"], ["id"], ondelete="SET NULL",
            )
        op.create_index(f"ix_mailboxes_{table}_id", "mailboxes", [f"{table}_id"])
    op.add_column(
        "mailboxes", sa.Column("service", sa.String(length=300), server_default="",
                               nullable=False)
    )
    op.add_column(
        "mailboxes", sa.Column("red_list", sa.Boolean(), server_default=sa.false(),
                               nullable=False)
    )
    op.add_column(
        "mailboxes", sa.Column("dematerialisation", sa.Boolean(), server_default=sa.false(),
                               nullable=False)
    )
    op.add_column("mailboxes", sa.Column("source", sa.String(length=16), nullable=True))
    op.add_column(
        "patients", sa.Column("notification_address", sa.String(length=320), nullable=True)
    )
    op.create_table(
        "directory_search",
        sa.Column("mailbox_id", sa.Integer(), nullable=False),
        sa.Column("document", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["mailbox_id"], ["mailboxes.id"],
            name=op.f("fk_directory_search_mailbox_id_mailboxes"), ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("mailbox_id", name=op.f("pk_directory_search")),
    )
    if sqlite:
        for statement in SQLITE_FTS:
            op.execute(statement)
    else:
        # A stored tsvector: a GIN prefix match rechecks its rows, and recomputing
        # to_tsvector for each of them would cost more than the search itself.
        op.execute(
            "ALTER TABLE directory_search ADD COLUMN words tsvector "
            "GENERATED ALWAYS AS (to_tsvector('simple', document)) STORED"
        )
        op.execute("CREATE INDEX ix_directory_search_words ON directory_search USING gin (words)")


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.execute("DROP TABLE IF EXISTS directory_search_vocab")
        op.execute("DROP TABLE IF EXISTS directory_search_fts")
    op.drop_table("directory_search")
    with op.batch_alter_table("patients", schema=None) as batch_op:
        batch_op.drop_column("notification_address")
    with op.batch_alter_table("mailboxes", schema=None) as batch_op:
        batch_op.drop_index("ix_mailboxes_organisation_id")
        batch_op.drop_index("ix_mailboxes_practitioner_id")
        if op.get_bind().dialect.name != "sqlite":
            batch_op.drop_constraint(
                "fk_mailboxes_organisation_id_organisations", type_="foreignkey"
            )
            batch_op.drop_constraint(
                "fk_mailboxes_practitioner_id_practitioners", type_="foreignkey"
            )
        for column in ("source", "dematerialisation", "red_list", "service",
                       "organisation_id", "practitioner_id"):
            batch_op.drop_column(column)
    op.drop_index("ix_certificates_bound_to", table_name="certificates")
    op.drop_table("certificates")
    op.drop_table("organisations")
    op.drop_table("practitioners")
