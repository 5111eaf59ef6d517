"""Escalations with their state per target, daily digests, and the scheduler's lease.

The tables ``bot_bridge.remembering.alert_store`` declares, in plain SQLAlchemy types: a
migration is a frozen copy, importing no live code (``UTCDateTime`` is a
``DateTime`` in the database).

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "escalations",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("result_id", sa.String(32), sa.ForeignKey("results.id"), nullable=False),
        sa.Column("voice_note_id", sa.Integer(), sa.ForeignKey("voice_notes.id"), nullable=False),
        sa.Column("source", sa.String(256), nullable=False),
        sa.Column("emotion", sa.String(16), nullable=False),
        sa.Column("score", sa.Float(), nullable=False),
        sa.Column("threshold", sa.Float(), nullable=False),
        sa.Column("severe", sa.Boolean(), nullable=False),
        sa.Column("matched_at", sa.DateTime(), nullable=False),
        sa.UniqueConstraint("result_id", name="uq_escalations_result"),
    )
    op.create_index("ix_escalations_matched_at", "escalations", ["matched_at"])

    op.create_table(
        "escalation_deliveries",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("escalation_id", sa.Integer(), sa.ForeignKey("escalations.id"), nullable=False),
        sa.Column("target", sa.String(64), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("maybe_sent", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("last_error", sa.Text()),
        sa.Column("claimed_at", sa.DateTime()),
        sa.Column("sent_at", sa.DateTime()),
        sa.Column("message_ref", sa.String(191)),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.UniqueConstraint("escalation_id", "target", name="uq_escalation_deliveries_target"),
    )
    op.create_index("ix_escalation_deliveries_target_state", "escalation_deliveries", ["target", "state"])

    op.create_table(
        "digests",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("target", sa.String(64), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("texts", sa.JSON()),
        sa.Column("parts_sent", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("maybe_sent", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("last_error", sa.Text()),
        sa.Column("claimed_at", sa.DateTime()),
        sa.Column("sent_at", sa.DateTime()),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.UniqueConstraint("target", "day", name="uq_digests_target_day"),
    )

    op.create_table(
        "leases",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("holder", sa.String(191)),
        sa.Column("expires_at", sa.DateTime(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("leases")
    op.drop_table("digests")
    op.drop_table("escalation_deliveries")
    op.drop_table("escalations")
