"""Retention and deletion on request (``bot_bridge.remembering.forgetting``): the ``forgetting`` table.

A row marks a result or a chat voice note as being deleted: it is written
(with the note's status ``forgetting``) in one commit before any file goes,
and removed with the result's and the note's rows once their files are gone,
so a process killed halfway leaves marked rows that the next run finishes.

Revision ID: 0013
Revises: 0012
"""

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "forgetting",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("result_id", sa.String(32), nullable=True),
        sa.Column("voice_note_id", sa.Integer(), nullable=True),
        sa.Column("marked_at", sa.DateTime(), nullable=False),
    )
    op.create_index("ix_forgetting_result_id", "forgetting", ["result_id"])
    op.create_index("ix_forgetting_voice_note_id", "forgetting", ["voice_note_id"])


def downgrade() -> None:
    op.drop_index("ix_forgetting_voice_note_id", table_name="forgetting")
    op.drop_index("ix_forgetting_result_id", table_name="forgetting")
    op.drop_table("forgetting")
