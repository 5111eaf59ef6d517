"""Where each pulled platform resumes (``cursors``), and how each voice note was answered (``reply_mode``).

``cursors`` is a small key-value table rather than a Telegram column: every
platform bot-bridge pulls updates from keeps one position there (Telegram's
getUpdates offset now, a sync cursor for pulled customer-service messages
later). ``voice_notes.reply_mode`` is ``message``, ``reaction`` or
``silent``; notes from before it were all messages (NULL reads as message).
A frozen copy of the models in plain SQLAlchemy types, importing no live code.

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "cursors",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("value", sa.String(1024)),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
    )
    with op.batch_alter_table("voice_notes") as table:
        table.add_column(sa.Column("reply_mode", sa.String(16)))


def downgrade() -> None:
    with op.batch_alter_table("voice_notes") as table:
        table.drop_column("reply_mode")
    op.drop_table("cursors")
