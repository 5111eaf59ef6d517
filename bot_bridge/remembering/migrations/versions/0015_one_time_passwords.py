"""One-time passwords (``bot_bridge.remembering.accounts``): ``accounts.password_one_time``.

A password that ``bot-bridge users add`` or ``reset`` (or the console's
Accounts page) generates is one-time from now on: its person signs in with
it and must choose their own. The accounts already there keep their
passwords as they were (the column defaults to false), so nobody is sent to
choose one by the upgrade, the first admin least of all.

Revision ID: 0015
Revises: 0014
"""

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("accounts", sa.Column("password_one_time", sa.Boolean(), nullable=False, server_default=sa.false()))


def downgrade() -> None:
    with op.batch_alter_table("accounts") as table:  # SQLite drops a column by rebuilding the table
        table.drop_column("password_one_time")
