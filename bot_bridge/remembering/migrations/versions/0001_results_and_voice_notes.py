"""Results and chat voice notes.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "results",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("origin", sa.String(32), nullable=False),
        sa.Column("file_name", sa.String(512)),
        sa.Column("emotion", sa.String(16), nullable=False),
        sa.Column("confidence", sa.Float(), nullable=False),
        sa.Column("scores", sa.JSON(), nullable=False),
        sa.Column("reason", sa.String(32)),
        sa.Column("duration_s", sa.Float(), nullable=False),
        sa.Column("speech_ratio", sa.Float(), nullable=False),
        sa.Column("model_name", sa.String(256), nullable=False),
        sa.Column("random_weights", sa.Boolean(), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("embedding", sa.LargeBinary()),
        sa.Column("embedding_dim", sa.Integer()),
        sa.Column("output_dir", sa.String(1024)),
        sa.Column("audio_file", sa.String(1024)),
    )
    op.create_index("ix_results_created_at", "results", ["created_at"])
    op.create_index("ix_results_origin", "results", ["origin"])
    op.create_index("ix_results_emotion", "results", ["emotion"])

    op.create_table(
        "voice_notes",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("platform", sa.String(32), nullable=False),
        sa.Column("delivery_id", sa.String(191), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("chat_id", sa.String(191), nullable=False),
        sa.Column("chat_name", sa.String(256)),
        sa.Column("sender_id", sa.String(191)),
        sa.Column("sender_name", sa.String(256)),
        sa.Column("message_id", sa.String(191)),
        sa.Column("thread_id", sa.String(191)),
        sa.Column("media", sa.JSON()),
        sa.Column("language", sa.String(16)),
        sa.Column("received_at", sa.DateTime(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("lease_owner", sa.String(128)),
        sa.Column("lease_expires_at", sa.DateTime()),
        sa.Column("due_at", sa.DateTime(), nullable=False),
        sa.Column("error_code", sa.String(32)),
        sa.Column("error_detail", sa.Text()),
        sa.Column("result_id", sa.String(32), sa.ForeignKey("results.id")),
        sa.Column("reply_text", sa.Text()),
        sa.Column("reply_sent_at", sa.DateTime()),
        sa.Column("reply_ref", sa.String(191)),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.UniqueConstraint("platform", "delivery_id", name="uq_voice_notes_delivery"),
    )
    op.create_index("ix_voice_notes_platform", "voice_notes", ["platform"])
    op.create_index("ix_voice_notes_chat_id", "voice_notes", ["chat_id"])
    op.create_index("ix_voice_notes_received_at", "voice_notes", ["received_at"])
    op.create_index("ix_voice_notes_status", "voice_notes", ["status"])
    op.create_index("ix_voice_notes_due_at", "voice_notes", ["due_at"])
    op.create_index("ix_voice_notes_result_id", "voice_notes", ["result_id"])


def downgrade() -> None:
    op.drop_table("voice_notes")
    op.drop_table("results")
