"""Console accounts (``bot_bridge.remembering.accounts``): named accounts with roles, and their sessions.

New tables: ``accounts`` (a name, a role, an argon2 hash of the password or
the single sign-on issuer and subject) and ``console_sessions`` (the SHA-256
of each signed-in browser's token). The shared console password of earlier
versions becomes the ``admin`` account when the console first starts
(``bot_bridge.web.console``), not here: the password lives in the settings or
a file, which a migration does not read.

A frozen copy of the models in plain SQLAlchemy types, importing no live code.

Revision ID: 0012
Revises: 0011
"""

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "accounts",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("password_hash", sa.String(256), nullable=True),
        sa.Column("sso_issuer", sa.String(512), nullable=True),
        sa.Column("sso_subject", sa.String(255), nullable=True),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("last_sign_in_at", sa.DateTime(), nullable=True),
        sa.UniqueConstraint("name"),
        sa.UniqueConstraint("sso_issuer", "sso_subject", name="uq_accounts_sso"),
    )
    op.create_table(
        "console_sessions",
        sa.Column("token_hash", sa.String(64), primary_key=True),
        sa.Column("account_id", sa.Integer(), sa.ForeignKey("accounts.id"), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("expires_at", sa.DateTime(), nullable=False),
        sa.Column("address", sa.String(64), nullable=True),
    )
    op.create_index("ix_console_sessions_account_id", "console_sessions", ["account_id"])


def downgrade() -> None:
    op.drop_index("ix_console_sessions_account_id", table_name="console_sessions")
    op.drop_table("console_sessions")
    op.drop_table("accounts")
