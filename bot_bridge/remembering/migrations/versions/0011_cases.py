"""Cases (``bot_bridge.remembering.case_store``): the notes of one source grouped, worked by people.

New tables: ``cases``, ``case_deliveries`` (one message per case and target,
replacing ``escalation_deliveries``, which had one per note), ``case_presses``
(button presses already handled) and ``deployment`` (its id, for buttons).
Every escalation belongs to a case: each one recorded before this migration
becomes a case of its own, with the same id, already resolved (nobody could
work it before), and its deliveries become that case's.

A frozen copy of the models in plain SQLAlchemy types, importing no live code.

Revision ID: 0011
Revises: 0010
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

RESOLVED_BEFORE = "escalated before bot-bridge had cases"


def upgrade() -> None:
    op.create_table(
        "cases",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("source", sa.String(256), nullable=False),
        sa.Column("sender_id", sa.String(191)),
        sa.Column("group_key", sa.String(512)),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("opened_at", sa.DateTime(), nullable=False),
        sa.Column("last_note_at", sa.DateTime(), nullable=False),
        sa.Column("notes", sa.Integer(), nullable=False),
        sa.Column("emotion", sa.String(16), nullable=False),
        sa.Column("score", sa.Float(), nullable=False),
        sa.Column("threshold", sa.Float(), nullable=True),
        sa.Column("severe", sa.Boolean(), nullable=False),
        sa.Column("level", sa.Integer(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("acknowledged_by", sa.String(256)),
        sa.Column("acknowledged_via", sa.String(32)),
        sa.Column("acknowledged_at", sa.DateTime()),
        sa.Column("resolved_by", sa.String(256)),
        sa.Column("resolved_via", sa.String(32)),
        sa.Column("resolved_at", sa.DateTime()),
        sa.Column("resolution", sa.Text()),
        sa.Column("snoozed_until", sa.DateTime()),
        sa.Column("snoozed_by", sa.String(256)),
        sa.Column("snoozed_via", sa.String(32)),
        sa.Column("feedback", sa.String(16)),
        sa.Column("feedback_by", sa.String(256)),
        sa.Column("feedback_via", sa.String(32)),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.UniqueConstraint("group_key", name="uq_cases_group_key"),
    )
    op.create_index("ix_cases_source", "cases", ["source"])
    op.create_index("ix_cases_state", "cases", ["state"])
    op.create_index("ix_cases_opened_at", "cases", ["opened_at"])

    op.create_table(
        "case_deliveries",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("case_id", sa.Integer(), sa.ForeignKey("cases.id"), nullable=False),
        sa.Column("target", sa.String(64), nullable=False),
        sa.Column("level", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("maybe_sent", sa.Boolean(), nullable=False),
        sa.Column("last_error", sa.Text()),
        sa.Column("claimed_at", sa.DateTime()),
        sa.Column("sent_at", sa.DateTime()),
        sa.Column("message_ref", sa.String(191)),
        sa.Column("edit_token", sa.String(512)),
        sa.Column("edit_token_at", sa.DateTime()),
        sa.Column("shown_version", sa.Integer(), nullable=False),
        sa.Column("updating_until", sa.DateTime()),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.UniqueConstraint("case_id", "target", name="uq_case_deliveries_target"),
    )
    op.create_index("ix_case_deliveries_target_state", "case_deliveries", ["target", "state"])

    op.create_table(
        "case_presses",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("platform", sa.String(32), nullable=False),
        sa.Column("press_id", sa.String(512), nullable=False),
        sa.Column("case_id", sa.Integer(), nullable=False),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.UniqueConstraint("platform", "press_id", name="uq_case_presses_press"),
    )
    op.create_table(
        "deployment",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("value", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
    )

    _cases_of_old_escalations()
    op.drop_table("escalation_deliveries")  # before escalations is rebuilt (SQLite): nothing refers to it then
    with op.batch_alter_table("escalations") as table:
        table.add_column(sa.Column("case_id", sa.Integer()))
    op.execute("UPDATE escalations SET case_id = id")
    with op.batch_alter_table("escalations") as table:
        table.alter_column("case_id", existing_type=sa.Integer(), nullable=False)
        table.create_foreign_key("fk_escalations_case_id_cases", "cases", ["case_id"], ["id"])
        table.create_index("ix_escalations_case_id", ["case_id"])


def _cases_of_old_escalations() -> None:
    """One resolved case per escalation recorded before, with its id; its deliveries become the case's."""
    op.execute(sa.text(
        "INSERT INTO cases (id, source, sender_id, group_key, state, opened_at, last_note_at, notes, emotion, score, "
        "threshold, severe, level, version, resolved_by, resolved_via, resolved_at, resolution, updated_at) "
        "SELECT e.id, e.source, v.sender_id, NULL, 'resolved', e.matched_at, v.received_at, 1, e.emotion, e.score, "
        "e.threshold, e.severe, 0, 1, 'bot-bridge', 'bot-bridge', e.matched_at, :why, e.matched_at "
        "FROM escalations e JOIN voice_notes v ON v.id = e.voice_note_id"
    ).bindparams(why=RESOLVED_BEFORE))
    if op.get_bind().dialect.name == "postgresql":  # explicit ids do not move PostgreSQL's sequence
        op.execute("SELECT setval(pg_get_serial_sequence('cases', 'id'), COALESCE(MAX(id), 0) + 1, false) FROM cases")
    op.execute(
        "INSERT INTO case_deliveries (case_id, target, level, state, attempts, maybe_sent, last_error, claimed_at, "
        "sent_at, message_ref, shown_version, updated_at) "
        "SELECT escalation_id, target, 0, state, attempts, maybe_sent, last_error, claimed_at, sent_at, message_ref, "
        "1, updated_at FROM escalation_deliveries"
    )


def downgrade() -> None:
    # A case's deliveries go back to its first note, the only one an alert of the time would have listed.
    op.create_table("case_first_notes", sa.Column("case_id", sa.Integer(), primary_key=True),
                    sa.Column("escalation_id", sa.Integer(), nullable=False))
    op.execute("INSERT INTO case_first_notes (case_id, escalation_id) "
               "SELECT case_id, MIN(id) FROM escalations GROUP BY case_id")
    with op.batch_alter_table("escalations") as table:
        table.drop_index("ix_escalations_case_id")
        table.drop_constraint("fk_escalations_case_id_cases", type_="foreignkey")
        table.drop_column("case_id")
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
    op.execute(
        "INSERT INTO escalation_deliveries (escalation_id, target, state, attempts, maybe_sent, last_error, "
        "claimed_at, sent_at, message_ref, updated_at) "
        "SELECT f.escalation_id, d.target, d.state, d.attempts, d.maybe_sent, d.last_error, d.claimed_at, d.sent_at, "
        "d.message_ref, d.updated_at FROM case_deliveries d JOIN case_first_notes f ON f.case_id = d.case_id"
    )
    for name in ("case_first_notes", "deployment", "case_presses", "case_deliveries", "cases"):
        op.drop_table(name)
