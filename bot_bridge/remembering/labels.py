"""Labels: the ground truth people give about results, recorded in one place whatever the front end.

The people who listen to a flagged voice note are the only judges of the
model a deployment has. A label is one person's word on one result: the
emotion it was flagged (or labelled) with is right (``confirmed``), is not
(``rejected``: "Not angry"), or is another of the nine (``corrected``,
with ``correct`` saying which). The console's buttons, the chat buttons and
anything else that takes feedback call ``Labels.record``; calibration and
``export-labels`` read ``Labels.labelled``.

* History is kept: a label never changes. Each result's labels are numbered
  in the order they were recorded (``seq``, unique per result, so two
  presses at the same moment are ordered by the database, not by clocks), and
  the newest one is the result's label for calibration and export.
* Pressing the same button twice, or a platform delivering a press twice,
  records one label: a label equal to the same person's last one on the
  result is that label again, and nothing is added, while it is still the
  result's newest label, or, if someone else labelled since, within
  ``REPEAT_WINDOW`` of it (a redelivery that crossed a colleague's press).
  Later, the same words again are a deliberate restatement, recorded.
* Every label is also an audit log entry (``label.confirm``,
  ``label.reject``, ``label.correct`` on ``result:<id>``), written in the
  same transaction.

``actor`` and ``via`` are the audit log's: a console account, or a chat
user as ``platform:user_id`` with their display name in ``actor_name``;
``console``, ``cli`` or a chat platform's name. ``case_id`` says which case
the label was given on, when it was (cases are not tied by a foreign key:
their table may come and go with its feature).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Iterable

from sqlalchemy import ForeignKey, Integer, String, UniqueConstraint, func, select
from sqlalchemy.orm import Mapped, defer, mapped_column

from ..emotions import EMOTION_KEYS
from .alert_store import insert_new
from .audit import AuditLog
from .results import NO_SPEECH
from .store import Base, ResultRow, Store, UTCDateTime, VoiceNoteRow, _fit


class Verdict:
    CONFIRMED = "confirmed"  # "Right": the emotion is right
    REJECTED = "rejected"  # "Not <emotion>": it is wrong, the right one not said
    CORRECTED = "corrected"  # it is wrong, and ``correct`` is the right one

    ALL = (CONFIRMED, REJECTED, CORRECTED)


#: The audit log's action for each verdict.
AUDIT_ACTIONS = {Verdict.CONFIRMED: "label.confirm", Verdict.REJECTED: "label.reject",
                 Verdict.CORRECTED: "label.correct"}
#: A press equal to the same person's last label within this long is that press delivered again, even when
#: someone else labelled in between (platforms redeliver within seconds: WeCom three times, 5 s apart).
REPEAT_WINDOW = timedelta(minutes=2)
#: Tries to append a label when other presses on the same result keep taking the next number first.
RECORD_TRIES = 20


class LabelError(ValueError):
    """A label that cannot be recorded: an unknown result, emotion or verdict. The message says which."""


class LabelRow(Base):
    __tablename__ = "labels"
    __table_args__ = (UniqueConstraint("result_id", "seq", name="uq_labels_result_seq"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    result_id: Mapped[str] = mapped_column(ForeignKey("results.id"), index=True)
    seq: Mapped[int] = mapped_column(Integer)  # 1, 2, ... per result, in the order recorded
    emotion: Mapped[str] = mapped_column(String(16))  # what the label is about: the emotion it was flagged with
    verdict: Mapped[str] = mapped_column(String(16))
    correct: Mapped[str | None] = mapped_column(String(16))  # the right emotion, when the label says it
    actor: Mapped[str] = mapped_column(String(191))
    actor_name: Mapped[str | None] = mapped_column(String(256))
    via: Mapped[str] = mapped_column(String(32))
    at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    case_id: Mapped[int | None] = mapped_column(Integer, index=True)


@dataclass(frozen=True)
class Label:
    id: int
    result_id: str
    emotion: str
    verdict: str
    correct: str | None  # the emotion the note really is: ``emotion`` when confirmed, None when only rejected
    actor: str
    actor_name: str | None
    via: str
    at: datetime
    case_id: int | None

    @classmethod
    def of(cls, row: LabelRow) -> Label:
        return cls(row.id, row.result_id, row.emotion, row.verdict, row.correct, row.actor, row.actor_name, row.via,
                   row.at, row.case_id)

    def is_emotion(self, emotion: str) -> bool | None:
        """Whether the note is ``emotion`` by this label: True, False, or None when the label does not say.

        One note has one emotion: a note confirmed happy is not angry; one
        rejected as happy may or may not be angry.
        """
        if self.correct is not None:
            return self.correct == emotion
        return False if self.emotion == emotion else None


@dataclass(frozen=True)
class LabelledResult:
    """A result's newest label, with the result and the chat voice note it came from (None for uploads)."""

    label: Label
    result: ResultRow
    note: VoiceNoteRow | None


class Labels:
    """Records labels and reads them back."""

    def __init__(self, store: Store) -> None:
        self.session = store.session
        self.audit = AuditLog(store)

    def record(self, result_id: str, *, emotion: str, verdict: str, correct: str | None = None, actor: str,
               via: str, actor_name: str | None = None, case_id: int | None = None,
               at: datetime | None = None) -> Label:
        """Record one person's label on ``result_id`` (and its audit entry); the label, or the same press's.

        ``correct`` is required with ``corrected`` (one of the nine; picking
        ``emotion`` itself confirms it), must be None with ``rejected``, and is
        ``emotion`` with ``confirmed``. Raises ``LabelError`` for an unknown
        result, emotion or verdict.
        """
        verdict, correct = _checked(emotion, verdict, correct)
        values = {"result_id": result_id, "emotion": emotion, "verdict": verdict, "correct": correct,
                  "actor": actor, "actor_name": _fit(LabelRow, "actor_name", actor_name), "via": via,
                  "case_id": case_id}
        moment = at or _now()
        for _ in range(RECORD_TRIES):
            with self.session() as session:
                if session.get(ResultRow, result_id) is None:
                    raise LabelError(f"there is no result {result_id!r} to label")
                # The whole history in one statement, so that the newest label and the person's own come
                # from one moment (a result has a handful of labels, not thousands).
                history = list(session.scalars(select(LabelRow).where(LabelRow.result_id == result_id)
                                               .order_by(LabelRow.seq.desc())))
            newest = history[0] if history else None
            own = next((row for row in history if row.actor == actor), None)
            if _repeated(own, newest, values, moment):
                return Label.of(own)
            row = {**values, "seq": 1 if newest is None else newest.seq + 1, "at": moment}
            # A transaction of its own that starts by writing: on SQLite, one that read first could not write
            # after another process's write (its snapshot is stale); a press that took this number meanwhile
            # makes the insert do nothing, and the loop looks again.
            with self.session.begin() as session:
                label_id = insert_new(session, LabelRow, row, ["result_id", "seq"])
                if label_id is not None:
                    self.audit.record(actor, via, AUDIT_ACTIONS[verdict], f"result:{result_id}", at=row["at"],
                                      detail=_audit_detail(row), session=session)
                    return Label.of(session.get(LabelRow, label_id))
        raise RuntimeError(f"could not append a label to result {result_id} in {RECORD_TRIES} tries")

    def latest(self, result_id: str) -> Label | None:
        """The result's label: its newest."""
        return self.for_results([result_id]).get(result_id)

    def history(self, result_id: str) -> list[Label]:
        """Every label of the result, newest (the one that counts) first."""
        query = select(LabelRow).where(LabelRow.result_id == result_id).order_by(LabelRow.seq.desc())
        with self.session() as session:
            return [Label.of(row) for row in session.scalars(query)]

    def for_results(self, result_ids: Iterable[str]) -> dict[str, Label]:
        """The newest label of each of ``result_ids`` that has one."""
        ids = list(result_ids)
        if not ids:
            return {}
        newest = _newest()
        query = select(LabelRow).join(newest, LabelRow.id == newest.c.id).where(LabelRow.result_id.in_(ids))
        with self.session() as session:
            return {row.result_id: Label.of(row) for row in session.scalars(query)}

    def labelled(self, *, embeddings: bool = False) -> list[LabelledResult]:
        """Every labelled result with its newest label, oldest result first: what calibration and export read.

        The result rows come without their ``payload`` (a long note's timeline is large, and the columns
        hold what is needed), and without their embedding unless ``embeddings``.
        """
        newest = _newest()
        left_out = [ResultRow.payload] + ([] if embeddings else [ResultRow.embedding])
        query = (
            select(LabelRow, ResultRow, VoiceNoteRow)
            .join(newest, LabelRow.id == newest.c.id)
            .join(ResultRow, LabelRow.result_id == ResultRow.id)
            .outerjoin(VoiceNoteRow, VoiceNoteRow.result_id == ResultRow.id)
            .options(*(defer(column, raiseload=True) for column in left_out))
            .order_by(ResultRow.created_at, ResultRow.id, VoiceNoteRow.id)
        )
        found: dict[str, LabelledResult] = {}
        with self.session() as session:
            for label, result, note in session.execute(query):
                found.setdefault(result.id, LabelledResult(Label.of(label), result, note))  # one note per result
        return list(found.values())


def chat_note_scores(store: Store) -> list[tuple[str, str, dict[str, float]]]:
    """``(platform, chat_id, scores)`` of every analysed chat voice note in which speech was heard: the notes
    calibration counts flagged ones among (only these columns: a deployment may hold many)."""
    query = (
        select(VoiceNoteRow.platform, VoiceNoteRow.chat_id, ResultRow.scores)
        .join(ResultRow, VoiceNoteRow.result_id == ResultRow.id)
        .where(VoiceNoteRow.kind == "voice", ResultRow.reason.is_distinct_from(NO_SPEECH))
    )
    with store.session() as session:
        return [tuple(row) for row in session.execute(query)]


def _checked(emotion: str, verdict: str, correct: str | None) -> tuple[str, str | None]:
    """The verdict and the correct emotion as stored, or ``LabelError``."""
    for name, value in (("emotion", emotion), ("correct emotion", correct)):
        if value is not None and value not in EMOTION_KEYS:
            raise LabelError(f"{value!r} is not an emotion ({name}); use one of {', '.join(EMOTION_KEYS)}")
    if verdict not in Verdict.ALL:
        raise LabelError(f"{verdict!r} is not a verdict; use one of {', '.join(Verdict.ALL)}")
    if verdict == Verdict.CORRECTED:
        if correct is None:
            raise LabelError("a corrected label says which emotion is right (correct=...)")
        return (Verdict.CONFIRMED, emotion) if correct == emotion else (verdict, correct)
    if verdict == Verdict.CONFIRMED and correct not in (None, emotion):
        raise LabelError(f"a confirmed label says {emotion} is right; to say {correct} is, correct it")
    if verdict == Verdict.REJECTED and correct is not None:
        raise LabelError("a rejected label does not say the right emotion; to say it, correct the label")
    return verdict, emotion if verdict == Verdict.CONFIRMED else None


def _repeated(own: LabelRow | None, newest: LabelRow | None, values: dict, moment: datetime) -> bool:
    """Whether a press is the person's last label (``own``) again: see the module's docstring."""
    keys = ("emotion", "verdict", "correct", "via", "case_id")
    if own is None or any(getattr(own, key) != values[key] for key in keys):
        return False
    return own.id == newest.id or moment - own.at <= REPEAT_WINDOW


def _newest():
    """The id of each result's newest label (a subquery)."""
    numbered = select(LabelRow.result_id, func.max(LabelRow.seq).label("seq")).group_by(LabelRow.result_id).subquery()
    return (select(LabelRow.id).join(numbered, (LabelRow.result_id == numbered.c.result_id)
                                     & (LabelRow.seq == numbered.c.seq)).subquery())


def _audit_detail(row: dict) -> dict:
    detail = {"emotion": row["emotion"], "correct": row["correct"], "name": row["actor_name"],
              "case_id": row["case_id"]}
    return {key: value for key, value in detail.items() if value is not None}


def _now() -> datetime:
    return datetime.now(timezone.utc)
