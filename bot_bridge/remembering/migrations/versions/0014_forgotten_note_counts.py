"""Digests keep their counts after a deletion: the ``forgotten_notes`` table.

When chat voice notes are deleted (on request or by retention) the commit
that deletes them adds how many there were per chat, quarter hour and top
emotion, and how many had become cases (``bot_bridge.remembering.forgetting``),
so a digest composed later counts them without their content.

Revision ID: 0014
Revises: 0013
"""

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "forgotten_notes",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("platform", sa.String(32), nullable=False),
        sa.Column("chat_id", sa.String(191), nullable=False),
        sa.Column("quarter", sa.DateTime(), nullable=False),
        sa.Column("emotion", sa.String(16), nullable=True),
        sa.Column("notes", sa.Integer(), nullable=False),
        sa.Column("escalated", sa.Integer(), nullable=False),
    )
    op.create_index("ix_forgotten_notes_quarter", "forgotten_notes", ["quarter"])


def downgrade() -> None:
    op.drop_index("ix_forgotten_notes_quarter", table_name="forgotten_notes")
    op.drop_table("forgotten_notes")
