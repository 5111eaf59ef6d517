"""Search voice notes and uploads by what was said; escalation cases raised by a keyword.

* ``result_words``: the words of each result's transcript
  (``bot_bridge.words.search_terms``, jieba's words and every character for
  Chinese). On SQLite an FTS5 table, ``result_words_fts``, indexes them
  (external content: it stores no copy, and reads the words from
  ``result_words`` by its integer ``id``, which VACUUM never renumbers);
  three triggers keep it equal to the table. On PostgreSQL a GIN index over
  the terms as a tsvector. Results saved before this migration are indexed
  here, from the transcripts in their stored JSON.
* ``escalations.keyword``: the rule's keyword that a case's transcript said;
  ``escalations.threshold`` may now be empty, for a case a keyword alone
  raised.

A later migration that rebuilds ``result_words`` on SQLite (alembic's batch
mode copies a table to alter it) must create the triggers again.

Revision ID: 0010
Revises: 0009
"""

import json

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

SQLITE_FULL_TEXT = [
    # Terms are cut and normalised in Python; unicode61 only splits them at the spaces between them.
    "CREATE VIRTUAL TABLE result_words_fts USING fts5(terms, content='result_words', content_rowid='id', "
    "tokenize='unicode61 remove_diacritics 0')",
    "CREATE TRIGGER result_words_added AFTER INSERT ON result_words BEGIN "
    "INSERT INTO result_words_fts(rowid, terms) VALUES (new.id, new.terms); END",
    "CREATE TRIGGER result_words_removed AFTER DELETE ON result_words BEGIN "
    "INSERT INTO result_words_fts(result_words_fts, rowid, terms) VALUES ('delete', old.id, old.terms); END",
    "CREATE TRIGGER result_words_changed AFTER UPDATE ON result_words BEGIN "
    "INSERT INTO result_words_fts(result_words_fts, rowid, terms) VALUES ('delete', old.id, old.terms); "
    "INSERT INTO result_words_fts(rowid, terms) VALUES (new.id, new.terms); END",
]
BATCH = 500


def upgrade() -> None:
    op.create_table(
        "result_words",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("result_id", sa.String(32), sa.ForeignKey("results.id", ondelete="CASCADE"), nullable=False,
                  unique=True),
        sa.Column("terms", sa.Text(), nullable=False),
    )
    bind = op.get_bind()
    if bind.dialect.name == "sqlite":
        for statement in SQLITE_FULL_TEXT:
            op.execute(statement)
    else:
        op.execute("CREATE INDEX ix_result_words_terms ON result_words "
                   "USING gin (array_to_tsvector(string_to_array(terms, ' ')))")
    with op.batch_alter_table("escalations") as table:
        table.add_column(sa.Column("keyword", sa.String(64), nullable=True))
        table.alter_column("threshold", existing_type=sa.Float(), nullable=True)
    _index_stored_transcripts(bind)


def downgrade() -> None:
    with op.batch_alter_table("escalations") as table:
        table.drop_column("keyword")
    if op.get_bind().dialect.name == "sqlite":
        op.execute("DROP TABLE result_words_fts")
    op.drop_table("result_words")


def _index_stored_transcripts(bind) -> None:
    """The words of every result stored with a transcript before this migration."""
    from bot_bridge.words import search_terms

    results = sa.table("results", sa.column("id", sa.String), sa.column("payload", sa.JSON))
    words = sa.table("result_words", sa.column("result_id", sa.String), sa.column("terms", sa.Text))
    rows = bind.execute(sa.select(results.c.id, results.c.payload)).yield_per(BATCH)
    for batch in rows.partitions(BATCH):
        found = []
        for result_id, payload in batch:
            payload = json.loads(payload) if isinstance(payload, str) else payload
            transcript = (payload or {}).get("transcript") or {}
            terms = search_terms(transcript.get("text") or "")
            if terms:
                found.append({"result_id": result_id, "terms": " ".join(terms)})
        if found:
            bind.execute(words.insert(), found)
