"""Deleting people's data: one core for retention, a chat's ``forget``, the console and ``bot-bridge purge``.

A voice note's content is spread over many places: its row (sender,
delivery, the reply text, which quotes the transcript), its result (scores,
transcript, embedding), the result's output folder (``result.json``, the
kept recording, its playable copy, embeddings), the search index, labels
people gave it, the escalation that put it in a case and the digest texts
that quoted it. Deleting it means deleting all of them together, so every
deletion goes through ``Forgetting``.

Crash safety: a batch is first *marked* in one commit (a ``forgetting`` row
per result and note, the notes' status ``forgetting``, which no worker
claims, sends for or recovers), then its words leave the search index, its
folders are deleted, and finally its rows go, marks included, in a second
commit. A process killed halfway leaves marked rows whose files may be
partly gone, never files without rows; ``finish`` (run before every
deletion, by each retention sweep and by the workers' recovery sweep)
completes them.

Cases keep their counts (``cases.notes``) and their emotion, but lose the
escalation rows that linked to the deleted notes; the console says how many
of a case's notes were deleted. Digests keep their counts too: the commit
that deletes chat voice notes adds how many there were per chat, quarter
hour and top emotion (``ForgottenNotesRow``), and a digest composed later
counts them and says they were deleted. Sent digests lose the texts kept for
resending them. One audit entry per deletion says who asked, how many and
when; audit entries are never deleted.
"""

from __future__ import annotations

import logging
import shutil
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Iterable

from sqlalchemy import Integer, String, and_, delete, false, or_, select, update
from sqlalchemy.orm import Mapped, mapped_column

from ..hearing.playable import PLAYABLE_FILE
from .alert_store import DigestRow, DigestState, EscalationRow, ForgottenNotesRow
from .audit import AuditLog, AuditRow
from .labels import LabelRow
from .results import NO_SPEECH
from .search import SearchIndex
from .store import Base, ResultRow, Store, UTCDateTime, VoiceNoteRow

log = logging.getLogger(__name__)

#: How many results and notes one batch marks and deletes: one short transaction each, whatever the total.
BATCH = 200
#: A digest's day is in its target's time zone, a note's time in UTC: the days either side may quote it too.
ONE_DAY = timedelta(days=1)
#: The longest actor and subject an audit entry holds (a sender's or chat's id may be long).
ACTOR_LIMIT, SUBJECT_LIMIT = (AuditRow.__table__.c[name].type.length for name in ("actor", "subject"))
#: A note's status while it is being deleted: no worker claims it, replies to it or queues it again.
FORGETTING = "forgetting"


class ForgettingRow(Base):
    """A result or voice note marked for deletion (migration 0013); gone with it."""

    __tablename__ = "forgetting"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    result_id: Mapped[str | None] = mapped_column(String(32), index=True)
    voice_note_id: Mapped[int | None] = mapped_column(Integer, index=True)
    marked_at: Mapped[datetime] = mapped_column(UTCDateTime)


@dataclass(frozen=True)
class Selection:
    """What to delete: the notes matching ``notes``, the results matching ``results``, and what each holds
    of the other (a note's result, a result's note). ``what`` names it in the audit log."""

    what: str
    notes: object = false()
    results: object = false()

    @classmethod
    def of_sender(cls, platform: str, sender_id: str) -> Selection:
        return cls(f"sender:{platform}:{sender_id}",
                   notes=and_(VoiceNoteRow.platform == platform, VoiceNoteRow.sender_id == sender_id))

    @classmethod
    def of_chat(cls, platform: str, chat_id: str) -> Selection:
        return cls(f"chat:{platform}:{chat_id}",
                   notes=and_(VoiceNoteRow.platform == platform, VoiceNoteRow.chat_id == chat_id))

    @classmethod
    def before(cls, moment: datetime, *, platform: str | None = None, chat_id: str | None = None,
               uploads: bool = True) -> Selection:
        """Everything received or analysed before ``moment``: chat notes (of ``platform``, of ``chat_id``
        there, when given) and, with ``uploads``, results that answered no note."""
        where = [VoiceNoteRow.received_at < moment]
        if platform is not None:
            where.append(VoiceNoteRow.platform == platform)
        if chat_id is not None:
            where.append(VoiceNoteRow.chat_id == chat_id)
        results = ResultRow.created_at < moment if uploads else false()
        return cls(f"before:{moment.isoformat()}:{platform or '*'}:{chat_id or '*'}", notes=and_(*where),
                   results=results)

    @classmethod
    def of_platform_item(cls, platform: str, ref: str) -> Selection:
        """The notes made from an item the platform deleted or a message it recalled (``ChatMessage`` kind
        ``deleted``): their delivery id ends with ``:<ref>`` or their message is ``ref``."""
        return cls(f"deleted:{platform}:{ref}", notes=and_(VoiceNoteRow.platform == platform, or_(
            VoiceNoteRow.delivery_id.endswith(f":{ref}", autoescape=True), VoiceNoteRow.message_id == ref)))

    @classmethod
    def of_results(cls, result_ids: Iterable[str]) -> Selection:
        ids = list(result_ids)
        return cls(f"results:{','.join(ids[:5])}", results=ResultRow.id.in_(ids))

    @classmethod
    def of_notes(cls, what: str, note_ids: Iterable[int]) -> Selection:
        return cls(what, notes=VoiceNoteRow.id.in_(list(note_ids)))


@dataclass(frozen=True)
class Counted:
    """How many voice notes and results (uploads included) a deletion took, or would take."""

    notes: int = 0
    results: int = 0

    def __bool__(self) -> bool:
        return bool(self.notes or self.results)

    def __add__(self, other: Counted) -> Counted:
        return Counted(self.notes + other.notes, self.results + other.results)


class Forgetting:
    """Deletes results and voice notes with everything that holds their content."""

    def __init__(self, store: Store, *, batch: int = BATCH) -> None:
        self.store = store
        self.session = store.session
        self.batch = batch
        self.search = SearchIndex(store)
        self.audit = AuditLog(store)

    def forget(self, selection: Selection, *, actor: str, via: str, keep_note: int | None = None,
               audited: bool = True) -> Counted:
        """Delete what ``selection`` names, batch after batch, and record one audit entry; how many went.

        ``keep_note``: a note not to delete (the chat message that asked for the deletion, still being
        answered). ``audited`` False: no entry of its own, for a caller that records one for the whole
        (a retention sweep) or a result the service made and drops at once (a worker's analysis of a note
        deleted meanwhile)."""
        self.finish()
        total = Counted()
        while marked := self._mark_batch(selection, keep_note):
            total += marked
            self.finish()
        if audited:
            self.audit.record(actor[:ACTOR_LIMIT], via, "data.delete", selection.what[:SUBJECT_LIMIT],
                              detail={"notes": total.notes, "results": total.results})
        log.info("deleted %d notes and %d results (%s, asked via %s)", total.notes, total.results,
                 selection.what.split(":")[0], via)
        return total

    def count(self, selection: Selection, *, keep_note: int | None = None) -> Counted:
        """What ``forget`` would delete now (``purge --dry-run``), deleting nothing."""
        notes, results = self._selected(selection, keep_note, limit=None)
        return Counted(len(notes), len(results))

    def finish(self) -> int:
        """Complete deletions a killed process left marked; how many results and notes it finished."""
        finished = 0
        while True:
            with self.session() as session:
                marks = list(session.execute(
                    select(ForgettingRow.result_id, ForgettingRow.voice_note_id).limit(self.batch)))
            if not marks:
                return finished
            self._erase({r for r, _ in marks if r is not None}, {n for _, n in marks if n is not None})
            finished += len(marks)

    def forget_audio(self, selection: Selection) -> int:
        """Delete the kept recordings and playable copies of what ``selection`` names, keeping the results;
        how many results had audio. Files first, then the row: a kill between leaves a row that the next
        sweep clears again (deleting a missing file is no error)."""
        cleared = 0
        while True:
            _, result_ids = self._selected(selection, None, limit=self.batch, with_audio=True)
            result_ids = sorted(result_ids)
            if not result_ids:
                return cleared
            with self.session() as session:
                rows = list(session.execute(select(ResultRow.id, ResultRow.output_dir, ResultRow.audio_file)
                                            .where(ResultRow.id.in_(result_ids))))
            for _, folder, audio in rows:
                Path(audio).unlink(missing_ok=True)
                if folder is not None:
                    (Path(folder) / PLAYABLE_FILE).unlink(missing_ok=True)
            with self.session.begin() as session:
                session.execute(update(ResultRow).where(ResultRow.id.in_(result_ids)).values(audio_file=None))
            cleared += len(rows)

    # -- the two commits ---------------------------------------------------------

    def _mark_batch(self, selection: Selection, keep_note: int | None) -> Counted:
        notes, results = self._selected(selection, keep_note, limit=self.batch)
        if not notes and not results:
            return Counted()
        now = datetime.now(timezone.utc)
        uploads = results - set(notes.values())
        with self.session.begin() as session:  # a note and its result share a mark: they go together
            session.add_all([ForgettingRow(voice_note_id=n, result_id=r, marked_at=now) for n, r in notes.items()]
                            + [ForgettingRow(result_id=r, marked_at=now) for r in uploads])
            session.execute(update(VoiceNoteRow).where(VoiceNoteRow.id.in_(notes))
                            .values(status=FORGETTING, lease_owner=None, lease_expires_at=None, updated_at=now))
        return Counted(len(notes), len(results))

    def _erase(self, result_ids: set[str], note_ids: set[int]) -> None:
        """Delete marked results and notes: index words, then folders, then every row in one commit."""
        self.search.forget(result_ids)
        with self.session() as session:
            folders = list(session.scalars(select(ResultRow.output_dir)
                                           .where(ResultRow.id.in_(result_ids), ResultRow.output_dir.is_not(None))))
            days = list(session.scalars(select(VoiceNoteRow.received_at).where(VoiceNoteRow.id.in_(note_ids))))
        for folder in folders:
            shutil.rmtree(folder, ignore_errors=True)
        with self.session.begin() as session:
            # The marks go first: a process finishing the same marks at once waits for this commit and then
            # takes none of them, so each note's count is kept once.
            taken = session.scalars(delete(ForgettingRow).where(or_(
                ForgettingRow.result_id.in_(result_ids), ForgettingRow.voice_note_id.in_(note_ids)
            )).returning(ForgettingRow.voice_note_id)).all()
            session.add_all(_counts_kept(session, {note for note in taken if note is not None}))
            session.execute(delete(EscalationRow).where(or_(EscalationRow.result_id.in_(result_ids),
                                                            EscalationRow.voice_note_id.in_(note_ids))))
            session.execute(delete(LabelRow).where(LabelRow.result_id.in_(result_ids)))
            session.execute(delete(VoiceNoteRow).where(VoiceNoteRow.id.in_(note_ids)))
            session.execute(delete(ResultRow).where(ResultRow.id.in_(result_ids)))
            if days:  # a sent digest keeps its texts only to resend them, and they may quote these notes
                session.execute(update(DigestRow).where(
                    DigestRow.state.in_((DigestState.SENT, DigestState.SKIPPED)),
                    DigestRow.day.between((min(days) - ONE_DAY).date(), (max(days) + ONE_DAY).date()),
                    DigestRow.texts.is_not(None),
                ).values(texts=None))

    def _selected(self, selection: Selection, keep_note: int | None, *, limit: int | None,
                  with_audio: bool = False) -> tuple[dict[int, str | None], set[str]]:
        """Up to ``limit`` notes and results of ``selection`` not marked yet, each with its other half:
        ``({note: its result}, every result)``."""
        notes_query = select(VoiceNoteRow.id, VoiceNoteRow.result_id).where(
            selection.notes, VoiceNoteRow.status != FORGETTING)
        if keep_note is not None:
            notes_query = notes_query.where(VoiceNoteRow.id != keep_note)
        results_query = select(ResultRow.id).where(selection.results,
                                                   ResultRow.id.not_in(select(ForgettingRow.result_id)
                                                                       .where(ForgettingRow.result_id.is_not(None))))
        if with_audio:
            notes_query = notes_query.join(ResultRow, VoiceNoteRow.result_id == ResultRow.id).where(
                ResultRow.audio_file.is_not(None))
            results_query = results_query.where(ResultRow.audio_file.is_not(None))
        with self.session() as session:
            notes = dict(session.execute(notes_query.order_by(VoiceNoteRow.id).limit(limit)).all())
            results = set(session.scalars(results_query.order_by(ResultRow.id).limit(limit)))
            if results:
                notes.update(session.execute(select(VoiceNoteRow.id, VoiceNoteRow.result_id).where(
                    VoiceNoteRow.result_id.in_(results), VoiceNoteRow.status != FORGETTING)).all())
        if keep_note is not None:
            notes.pop(keep_note, None)
        results.update(result for result in notes.values() if result is not None)
        return notes, results


def _counts_kept(session, note_ids: set[int]) -> list[ForgottenNotesRow]:
    """What digests will count of the chat voice notes ``note_ids`` once they are gone: per chat, quarter hour
    and top emotion, how many there were and how many had become cases."""
    escalated = select(EscalationRow.id).where(EscalationRow.result_id == VoiceNoteRow.result_id).exists()
    query = (select(VoiceNoteRow.platform, VoiceNoteRow.chat_id, VoiceNoteRow.received_at, ResultRow.emotion,
                    ResultRow.reason, escalated)
             .outerjoin(ResultRow, VoiceNoteRow.result_id == ResultRow.id)
             .where(VoiceNoteRow.id.in_(note_ids), VoiceNoteRow.kind == "voice"))
    notes, cases = Counter(), Counter()
    for platform, chat_id, received_at, emotion, reason, was_case in session.execute(query):
        heard = emotion if emotion is not None and reason != NO_SPEECH else None
        key = (platform, chat_id, received_at.replace(minute=received_at.minute - received_at.minute % 15,
                                                      second=0, microsecond=0), heard)
        notes[key] += 1
        cases[key] += bool(was_case)
    return [ForgottenNotesRow(platform=platform, chat_id=chat_id, quarter=quarter, emotion=emotion,
                              notes=count, escalated=cases[platform, chat_id, quarter, emotion])
            for (platform, chat_id, quarter, emotion), count in notes.items()]
