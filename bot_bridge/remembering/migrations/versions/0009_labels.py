"""Labels (``bot_bridge.remembering.labels``): people's word on results, the newest counting.

Revision ID: 0009
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "labels",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("result_id", sa.String(32), sa.ForeignKey("results.id"), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("emotion", sa.String(16), nullable=False),
        sa.Column("verdict", sa.String(16), nullable=False),
        sa.Column("correct", sa.String(16), nullable=True),
        sa.Column("actor", sa.String(191), nullable=False),
        sa.Column("actor_name", sa.String(256), nullable=True),
        sa.Column("via", sa.String(32), nullable=False),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.Column("case_id", sa.Integer(), nullable=True),
        sa.UniqueConstraint("result_id", "seq", name="uq_labels_result_seq"),
    )
    op.create_index("ix_labels_result_id", "labels", ["result_id"])
    op.create_index("ix_labels_at", "labels", ["at"])
    op.create_index("ix_labels_case_id", "labels", ["case_id"])


def downgrade() -> None:
    op.drop_table("labels")
