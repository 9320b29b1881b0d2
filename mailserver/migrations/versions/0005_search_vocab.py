"""directory search vocabulary on PostgreSQL (prefix → exact words)

Revision ID: 0005_search_vocab
Revises: 0004_recent

A GIN prefix match (``paris:*``) collects every matching row into a bitmap before
ANDing, so a query of several common prefixes costs tens of milliseconds on the
national directory; exact words are ANDed through their posting trees, skipping.
The search expands each prefix into the words it starts, read from this table (as
it reads FTS5's vocabulary on SQLite). Triggers add every new word of
``directory_search`` whoever writes it; words are never removed (a word no
document holds any more expands into a term that matches nothing).
"""

from alembic import op

revision = "0005_search_vocab"
down_revision = "0004_recent"
branch_labels = None
depends_on = None

POSTGRES = [
    # COLLATE "C": byte order, so that a prefix is the range [prefix, prefix || '\x7f').
    'CREATE TABLE directory_search_vocab (term text COLLATE "C" PRIMARY KEY)',
    """CREATE FUNCTION directory_search_vocab_add() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        INSERT INTO directory_search_vocab (term)
        SELECT DISTINCT unnest(tsvector_to_array(words)) FROM new_rows
        ON CONFLICT DO NOTHING;
        RETURN NULL;
    END $$""",
    # One trigger per event: a trigger with transition tables has a single event.
    """CREATE TRIGGER directory_search_vocab_ai AFTER INSERT ON directory_search
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION directory_search_vocab_add()""",
    """CREATE TRIGGER directory_search_vocab_au AFTER UPDATE ON directory_search
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION directory_search_vocab_add()""",
    """INSERT INTO directory_search_vocab (term)
    SELECT DISTINCT unnest(tsvector_to_array(words)) FROM directory_search""",
    # Every search reads GIN's pending list through: merged now (imports do too).
    "SELECT gin_clean_pending_list('ix_directory_search_words')",
]


def upgrade() -> None:
    # SQLite already has one: the fts5vocab table of the 0002_directory migration.
    if op.get_bind().dialect.name == "postgresql":
        for statement in POSTGRES:
            op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER directory_search_vocab_au ON directory_search")
        op.execute("DROP TRIGGER directory_search_vocab_ai ON directory_search")
        op.execute("DROP FUNCTION directory_search_vocab_add()")
        op.execute("DROP TABLE directory_search_vocab")
