"""Durable state: results, chat voice notes, and the seed system's output folders.

SQLite (a file under the data directory) is the zero-setup default; any
SQLAlchemy URL works, and PostgreSQL is the scale-out choice. The schema is
owned by Alembic migrations (``bot_bridge/migrations``), applied when the
store opens, so every process of a deployment sees the same tables.

Each result is also written, as the seed system did, to
``outputs/<YYYYmmdd_HHMMSS>Z_<id>/result.json`` (plus ``embedding.npy`` when
asked, ``frame_embeddings.npy`` with ``granularity=frame``, and the uploaded
audio when ``audio.keep_audio`` is on, with a copy browsers can play when they
cannot play the original: ``hearing/playable.py``), so that people who
scripted against those folders keep working. The time in the name is UTC,
and the ``Z`` says so: the console shows its own zone (``console.timezone``).
The words of its transcript are indexed for search in the same transaction
(``ResultWordsRow``; ``remembering/search.py`` reads them).
"""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import fields
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    case,
    create_engine,
    event,
    func,
    select,
    text,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, sessionmaker

from ..chat.messages import ChatMessage, Media
from ..words import search_terms
from .results import Result, Transcript

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
FRAME_EMBEDDINGS_FILE = "frame_embeddings.npy"  # (frames, dimensions): too big for the database


class UTCDateTime(TypeDecorator):
    """Timezone-aware UTC in Python on every database (SQLite keeps no zone)."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetimes are not stored; use datetime.now(timezone.utc)")
        return value.astimezone(timezone.utc).replace(tzinfo=None)

    def process_result_value(self, value, dialect):
        return None if value is None else value.replace(tzinfo=timezone.utc)


class NoteStatus:
    """Where a chat voice note is: queued -> working -> sending -> replied, or failed/unconfirmed; in a chat
    whose reply mode is silent, queued -> working -> silent."""

    QUEUED = "queued"  # waiting for a worker (new, or a retry due at ``due_at``)
    WORKING = "working"  # a worker holds the lease: downloading, analysing, rendering
    SENDING = "sending"  # the reply is being sent
    REPLIED = "replied"  # the reply is out (``reply_sent_at``, ``reply_ref``)
    FAILED = "failed"  # gave up: ``error_code``, ``error_detail``
    UNCONFIRMED = "unconfirmed"  # the send may have happened (process died, answer lost): never resent
    SILENT = "silent"  # analysed and kept, nothing sent to the chat (reply mode silent)


CHAT_MESSAGE_FIELDS = tuple(field.name for field in fields(ChatMessage))
# A claim may come a moment before ``due_at`` when clocks of two hosts differ slightly.
CLAIM_TOLERANCE = timedelta(seconds=1)


class Base(DeclarativeBase):
    pass


class ResultRow(Base):
    __tablename__ = "results"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    origin: Mapped[str] = mapped_column(String(32), index=True)
    file_name: Mapped[str | None] = mapped_column(String(512))
    emotion: Mapped[str] = mapped_column(String(16), index=True)
    confidence: Mapped[float] = mapped_column(Float)
    scores: Mapped[dict] = mapped_column(JSON)
    reason: Mapped[str | None] = mapped_column(String(32))
    duration_s: Mapped[float] = mapped_column(Float)
    speech_ratio: Mapped[float] = mapped_column(Float)
    model_name: Mapped[str] = mapped_column(String(256))
    random_weights: Mapped[bool] = mapped_column(Boolean)
    payload: Mapped[dict] = mapped_column(JSON)
    embedding: Mapped[bytes | None] = mapped_column(LargeBinary)
    embedding_dim: Mapped[int | None] = mapped_column(Integer)
    output_dir: Mapped[str | None] = mapped_column(String(1024))
    audio_file: Mapped[str | None] = mapped_column(String(1024))

    @property
    def transcript(self) -> Transcript | None:
        """What was said (``Result.transcript``), from the stored result; None when it has none."""
        data = self.payload.get("transcript")
        return None if data is None else Transcript.from_dict(data)


class ResultWordsRow(Base):
    """The words of a result's transcript, as the search index keeps them (``remembering/search.py``).

    ``terms`` are ``bot_bridge.words.search_terms`` of the transcript, one
    space between them, written with the result in one transaction. On SQLite
    the FTS5 table ``result_words_fts`` (migration 0010) follows this table
    through triggers, its rowid this ``id``; on PostgreSQL the GIN index
    ``ix_result_words_terms`` holds the terms as a tsvector. A result's words
    go with it (``ON DELETE CASCADE``) or with ``SearchIndex.forget``.
    """

    __tablename__ = "result_words"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    result_id: Mapped[str] = mapped_column(ForeignKey("results.id", ondelete="CASCADE"), unique=True)
    terms: Mapped[str] = mapped_column(Text)


#: The terms of a result as PostgreSQL's full-text search reads them: each term one lexeme, as it is (the
#: words are cut and normalised in Python, the same for both databases, so no text search configuration).
TERMS_VECTOR = func.array_to_tsvector(func.string_to_array(ResultWordsRow.terms, " "))
Index("ix_result_words_terms", TERMS_VECTOR, postgresql_using="gin")


class VoiceNoteRow(Base):
    """One inbound chat message that needs an answer: a voice note, or a request for help.

    ``(platform, delivery_id)`` is unique: a platform's retry of the same
    delivery finds the row and is answered without being processed again.
    """

    __tablename__ = "voice_notes"
    __table_args__ = (UniqueConstraint("platform", "delivery_id", name="uq_voice_notes_delivery"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    platform: Mapped[str] = mapped_column(String(32), index=True)
    delivery_id: Mapped[str] = mapped_column(String(191))
    kind: Mapped[str] = mapped_column(String(16))
    chat_id: Mapped[str] = mapped_column(String(191), index=True)
    chat_name: Mapped[str | None] = mapped_column(String(256))
    sender_id: Mapped[str | None] = mapped_column(String(191))
    sender_name: Mapped[str | None] = mapped_column(String(256))
    message_id: Mapped[str | None] = mapped_column(String(191))
    thread_id: Mapped[str | None] = mapped_column(String(191))
    media: Mapped[dict | None] = mapped_column(JSON)
    language: Mapped[str | None] = mapped_column(String(16))
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    status: Mapped[str] = mapped_column(String(16), index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    lease_owner: Mapped[str | None] = mapped_column(String(128))
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    due_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    error_code: Mapped[str | None] = mapped_column(String(32))
    error_detail: Mapped[str | None] = mapped_column(Text)
    result_id: Mapped[str | None] = mapped_column(ForeignKey("results.id"), index=True)
    reply_text: Mapped[str | None] = mapped_column(Text)  # reply_mode reaction: the emotion reacted with
    reply_mode: Mapped[str | None] = mapped_column(String(16))  # message, reaction or silent; NULL: message
    reply_sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    reply_ref: Mapped[str | None] = mapped_column(String(191))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)

    def message(self) -> ChatMessage:
        """The chat message this note answers, as its adapter read it from the webhook."""
        columns = {name: getattr(self, name) for name in CHAT_MESSAGE_FIELDS}
        columns["media"] = None if self.media is None else Media(**self.media)
        return ChatMessage(**columns)


class Store:
    """Results and voice notes in SQL, result folders on disk."""

    def __init__(self, url: str, outputs_dir: Path) -> None:
        self.url = url
        self.outputs_dir = Path(outputs_dir)
        self.engine = _engine(url)
        self.session = sessionmaker(self.engine, expire_on_commit=False)
        migrate(self.engine)

    def close(self) -> None:
        self.engine.dispose()

    def check(self) -> None:
        """Raise if the database does not answer (readiness of web processes)."""
        with self.engine.connect() as connection:
            connection.execute(text("SELECT 1"))

    def save_result(
        self,
        result: Result,
        *,
        audio: bytes | None = None,
        audio_suffix: str = ".bin",
        embedding_file: bool = False,
        files: dict[str, bytes] | None = None,
    ) -> Path:
        """Store ``result`` in the database and its output folder, with ``files`` (name: bytes) beside it;
        returns the folder."""
        folder = self.outputs_dir / f"{result.created_at.astimezone(timezone.utc):%Y%m%d_%H%M%S}Z_{result.id}"
        folder.mkdir(parents=True)  # exclusive: a failed insert below removes only its own folder
        payload = result.to_dict()
        (folder / "result.json").write_text(json.dumps(payload, ensure_ascii=False, indent=2), encoding="utf-8")
        if embedding_file and result.embedding is not None:
            np.save(folder / "embedding.npy", result.embedding)
        if result.frame_embeddings is not None:
            np.save(folder / FRAME_EMBEDDINGS_FILE, result.frame_embeddings)
        audio_file = None
        if audio is not None:
            audio_file = folder / f"audio{audio_suffix}"
            audio_file.write_bytes(audio)
        for name, data in (files or {}).items():
            (folder / name).write_bytes(data)
        row = ResultRow(
            id=result.id,
            created_at=result.created_at,
            origin=result.origin,
            file_name=_fit(ResultRow, "file_name", result.file_name),
            emotion=result.emotion,
            confidence=result.confidence,
            scores=payload["scores"],
            reason=result.reason,
            duration_s=result.duration_s,
            speech_ratio=result.speech_ratio,
            model_name=result.model.get("name", ""),
            random_weights=result.random_weights,
            payload=payload,
            embedding=None if result.embedding is None else result.embedding.astype("<f4").tobytes(),
            embedding_dim=None if result.embedding is None else int(result.embedding.shape[0]),
            output_dir=str(folder),
            audio_file=None if audio_file is None else str(audio_file),
        )
        terms = search_terms(result.transcript.text) if result.transcript is not None else []
        try:
            with self.session.begin() as session:
                session.add(row)
                if terms:
                    session.flush()  # the result's row first: its words refer to it
                    session.add(ResultWordsRow(result_id=result.id, terms=" ".join(terms)))
        except Exception:
            shutil.rmtree(folder, ignore_errors=True)  # no folder without its row
            raise
        return folder

    def result(self, result_id: str) -> Result | None:
        with self.session() as session:
            row = session.get(ResultRow, result_id)
            return None if row is None else Result.from_dict(row.payload, _embedding(row))

    def result_row(self, result_id: str) -> ResultRow | None:
        with self.session() as session:
            return session.get(ResultRow, result_id)

    def embedding(self, result_id: str) -> np.ndarray | None:
        with self.session() as session:
            row = session.get(ResultRow, result_id)
            return None if row is None else _embedding(row)

    def result_file(self, result_id: str, name: str) -> Path | None:
        """The file ``name`` in the result's folder, when it was written (and this host holds the folder)."""
        row = self.result_row(result_id)
        if row is None or row.output_dir is None:
            return None
        path = Path(row.output_dir) / name
        return path if path.is_file() else None


    # --- chat voice notes (the durable side of bot_bridge/acting/worker.py) ---
    #
    # The row, not the queue, is the source of truth for each message the bot
    # must answer. Every transition is one conditional UPDATE, so two workers,
    # or a worker and the recovery sweep, can never both win the same note.

    def record_voice_note(self, message: ChatMessage) -> tuple[int, bool]:
        """Store ``message`` as a queued note: ``(id, True)``, or ``(id, False)`` if already recorded."""
        now = _utcnow()
        row = VoiceNoteRow(
            **_columns_of(message), status=NoteStatus.QUEUED, attempts=0, due_at=now, updated_at=now
        )
        try:
            with self.session.begin() as session:
                session.add(row)
            return row.id, True
        except IntegrityError:
            with self.session() as session:
                existing = session.scalar(
                    select(VoiceNoteRow.id).where(
                        VoiceNoteRow.platform == message.platform, VoiceNoteRow.delivery_id == message.delivery_id
                    )
                )
            if existing is None:
                raise
            return existing, False

    def voice_note(self, note_id: int) -> VoiceNoteRow | None:
        with self.session() as session:
            return session.get(VoiceNoteRow, note_id)

    def voice_notes(self, *, platform: str | None = None, status: str | None = None, limit: int = 100) -> list[VoiceNoteRow]:
        """The newest notes first, optionally of one platform or in one status."""
        query = select(VoiceNoteRow).order_by(VoiceNoteRow.id.desc()).limit(limit)
        if platform:
            query = query.where(VoiceNoteRow.platform == platform)
        if status:
            query = query.where(VoiceNoteRow.status == status)
        with self.session() as session:
            return list(session.scalars(query))

    def voice_note_counts(self) -> dict[tuple[str, str], int]:
        """How many notes each platform has in each status: ``{(platform, status): n}``."""
        query = select(VoiceNoteRow.platform, VoiceNoteRow.status, func.count()).group_by(
            VoiceNoteRow.platform, VoiceNoteRow.status
        )
        with self.session() as session:
            return {(platform, status): count for platform, status, count in session.execute(query)}

    def voice_note_backlog(self) -> dict[str, int]:
        """Notes not answered yet: ``waiting`` (due now), ``scheduled`` (a retry not due yet), ``working``."""
        now = _utcnow()
        state = case(
            (VoiceNoteRow.status != NoteStatus.QUEUED, "working"),
            (VoiceNoteRow.due_at <= now, "waiting"),
            else_="scheduled",
        )
        unanswered = (NoteStatus.QUEUED, NoteStatus.WORKING, NoteStatus.SENDING)
        query = select(state, func.count()).where(VoiceNoteRow.status.in_(unanswered)).group_by(state)
        backlog = dict.fromkeys(("waiting", "scheduled", "working"), 0)
        with self.session() as session:
            backlog.update({name: count for name, count in session.execute(query)})
        return backlog

    def claim_voice_note(self, note_id: int, owner: str, lease_s: float) -> VoiceNoteRow | None:
        """Take a queued, due note for ``lease_s`` seconds and count the attempt; None if not available."""
        now = _utcnow()
        with self.session.begin() as session:
            claimed = session.execute(
                update(VoiceNoteRow)
                .where(
                    VoiceNoteRow.id == note_id,
                    VoiceNoteRow.status == NoteStatus.QUEUED,
                    VoiceNoteRow.due_at <= now + CLAIM_TOLERANCE,
                )
                .values(
                    status=NoteStatus.WORKING,
                    lease_owner=owner,
                    lease_expires_at=now + timedelta(seconds=lease_s),
                    attempts=VoiceNoteRow.attempts + 1,
                    updated_at=now,
                )
            ).rowcount
            return session.get(VoiceNoteRow, note_id) if claimed else None

    def extend_lease(self, note_id: int, owner: str, lease_s: float) -> bool:
        now = _utcnow()
        return self._update_held(note_id, owner, lease_expires_at=now + timedelta(seconds=lease_s), updated_at=now)

    def save_reply(
        self, note_id: int, owner: str, text: str, *, result_id: str | None, error_code: str | None,
        error_detail: str | None, mode: str = "message"
    ) -> bool:
        """Keep the rendered reply (``mode`` message: its text; reaction: the emotion) before it is sent, so a
        retry sends the same without re-analysing."""
        return self._update_held(
            note_id, owner, reply_text=text, reply_mode=mode, result_id=result_id, error_code=error_code,
            error_detail=error_detail,
        )

    def finish_silently(self, note_id: int, owner: str, *, result_id: str | None, error_code: str | None,
                        error_detail: str | None) -> bool:
        """A note of a silent chat is done once analysed (or found unusable): nothing is sent."""
        return self._update_held(
            note_id, owner, status=NoteStatus.SILENT, reply_mode="silent", result_id=result_id, lease_owner=None,
            lease_expires_at=None, error_code=error_code, error_detail=error_detail,
        )

    def mark_sending(self, note_id: int, owner: str) -> bool:
        """From here until ``mark_replied`` a crash leaves the note ``unconfirmed``, never sent twice."""
        return self._update_held(note_id, owner, (NoteStatus.WORKING,), status=NoteStatus.SENDING)

    def mark_replied(
        self, note_id: int, reply_ref: str, error_code: str | None = None, error_detail: str | None = None
    ) -> None:
        """Record a send that happened, even if the lease was lost meanwhile: the reply is out.

        The note's error becomes the reply's own (``None`` unless the reply told the person what went
        wrong): a failed earlier try, or a send first thought unconfirmed, is no failure now.
        """
        now = _utcnow()
        with self.session.begin() as session:
            session.execute(
                update(VoiceNoteRow)
                .where(VoiceNoteRow.id == note_id, VoiceNoteRow.status.in_((NoteStatus.SENDING, NoteStatus.UNCONFIRMED)))
                .values(
                    status=NoteStatus.REPLIED,
                    reply_sent_at=now,
                    reply_ref=reply_ref,
                    error_code=error_code,
                    error_detail=error_detail,
                    lease_owner=None,
                    lease_expires_at=None,
                    updated_at=now,
                )
            )

    def mark_unconfirmed(self, note_id: int, owner: str, detail: str) -> bool:
        """A send that may have reached the chat (timed out after leaving): never sent again."""
        return self._update_held(
            note_id, owner, (NoteStatus.SENDING,), status=NoteStatus.UNCONFIRMED, lease_owner=None,
            lease_expires_at=None, error_code="reply_unconfirmed", error_detail=detail,
        )

    def retry_voice_note_later(
        self, note_id: int, owner: str, delay_s: float, error_code: str | None, detail: str | None = None
    ) -> bool:
        """Put a held note back in the queue, due in ``delay_s`` seconds; with ``error_code`` None the
        note keeps the error it has."""
        recorded = {} if error_code is None else {"error_code": error_code, "error_detail": detail}
        return self._update_held(
            note_id,
            owner,
            status=NoteStatus.QUEUED,
            due_at=_utcnow() + timedelta(seconds=delay_s),
            lease_owner=None,
            lease_expires_at=None,
            **recorded,
        )

    def fail_voice_note(self, note_id: int, owner: str, error_code: str, detail: str) -> bool:
        return self._update_held(
            note_id,
            owner,
            status=NoteStatus.FAILED,
            lease_owner=None,
            lease_expires_at=None,
            error_code=error_code,
            error_detail=detail,
        )

    def recover_voice_notes(self, *, overdue_s: float, queue_idle: bool) -> tuple[list[int], list[int]]:
        """Free what dead workers left behind: ``(ids to enqueue again, ids now unconfirmed)``.

        A note held past its lease goes back to the queue; one whose reply was
        being sent becomes ``unconfirmed`` (it may have been sent: never send
        twice). When the queue is idle, a queued note overdue by ``overdue_s``
        was lost before reaching the queue (or taken from it by a process that
        died before claiming it) and is enqueued again.
        """
        now = _utcnow()
        expired = (VoiceNoteRow.lease_expires_at < now,)
        requeue = self._transition((VoiceNoteRow.status == NoteStatus.WORKING, *expired),
                                        status=NoteStatus.QUEUED, due_at=now, lease_owner=None, lease_expires_at=None)
        unconfirmed = self._transition((VoiceNoteRow.status == NoteStatus.SENDING, *expired),
                                            status=NoteStatus.UNCONFIRMED, error_code="reply_unconfirmed",
                                            error_detail="the process died while sending the reply")
        if queue_idle:
            overdue = (VoiceNoteRow.status == NoteStatus.QUEUED,
                       VoiceNoteRow.due_at < now - timedelta(seconds=overdue_s))
            requeue += self._transition(overdue, due_at=now)
        return requeue, unconfirmed

    def release_voice_notes(self, owner_prefix: str) -> list[int]:
        """Hand back the notes a stopping process still works on: queued again, due now; their ids.

        The interrupted try is not counted. A note whose reply is being sent is
        left to finish (or, if the process dies, to become ``unconfirmed``).
        """
        return self._transition(
            (VoiceNoteRow.status == NoteStatus.WORKING, VoiceNoteRow.lease_owner.startswith(owner_prefix, autoescape=True)),
            status=NoteStatus.QUEUED, due_at=_utcnow(), lease_owner=None, lease_expires_at=None,
            attempts=VoiceNoteRow.attempts - 1,
        )

    def _update_held(self, note_id: int, owner: str, statuses: tuple[str, ...] = (NoteStatus.WORKING, NoteStatus.SENDING), **values) -> bool:
        """Update a note only while ``owner`` still holds it; False means the lease was lost."""
        values.setdefault("updated_at", _utcnow())
        with self.session.begin() as session:
            return bool(
                session.execute(
                    update(VoiceNoteRow)
                    .where(VoiceNoteRow.id == note_id, VoiceNoteRow.lease_owner == owner, VoiceNoteRow.status.in_(statuses))
                    .values(**values)
                ).rowcount
            )

    def _transition(self, conditions: tuple, **values) -> list[int]:
        """Apply ``values`` to every note matching ``conditions`` in one statement; the ids changed."""
        values.setdefault("updated_at", _utcnow())
        statement = update(VoiceNoteRow).where(*conditions).values(**values).returning(VoiceNoteRow.id)
        with self.session.begin() as session:
            return list(session.scalars(statement.execution_options(synchronize_session=False)))


# Any 64-bit number that no other program takes an advisory lock on in the same database.
MIGRATION_LOCK_KEY = 0x626F_7462_7269_6467  # "botbridg"


def migrate(engine, revision: str = "head") -> None:
    """Bring the database schema to ``revision`` (the newest migration by default).

    Several processes may start at once on an empty PostgreSQL database; a
    transaction-scoped advisory lock lets one migrate while the others wait,
    then find nothing left to do (PostgreSQL's DDL is transactional). SQLite
    needs no lock: its writers are serialised by the file lock. SQLite changes
    a column by copying its table (Alembic's batch mode), which dropping the
    old table refuses while foreign keys are enforced and rows point at it, so
    they are switched off for the migration (outside its transaction, where
    SQLite ignores the switch) and checked as a whole before it commits.
    """
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    sqlite = engine.dialect.name == "sqlite"
    with engine.connect() as connection:
        if sqlite:
            connection.exec_driver_sql("PRAGMA foreign_keys=OFF")
            connection.commit()
        with connection.begin():
            if connection.dialect.name == "postgresql":
                connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
            config.attributes["connection"] = connection
            command.upgrade(config, revision)
            if sqlite and (broken := connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()):
                raise RuntimeError(f"the migration left rows pointing at nothing: {broken[:5]}")
        if sqlite:
            connection.exec_driver_sql("PRAGMA foreign_keys=ON")
            connection.commit()


def _engine(url: str):
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 30})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(connection, _record):
            # WAL lets the web threads read while a worker writes; foreign keys are off by default.
            cursor = connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.close()

        return engine
    return create_engine(url, pool_pre_ping=True)


def _embedding(row: ResultRow) -> np.ndarray | None:
    if row.embedding is None:
        return None
    return np.frombuffer(row.embedding, dtype="<f4").copy()


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


def _columns_of(message: ChatMessage) -> dict:
    columns = {name: getattr(message, name) for name in CHAT_MESSAGE_FIELDS}
    columns["media"] = None if message.media is None else message.media.to_dict()
    for name in ("chat_name", "sender_name"):
        columns[name] = _fit(VoiceNoteRow, name, columns[name])
    return columns


def _fit(row_class, column: str, value: str | None) -> str | None:
    """Cut a name people chose (file, chat, sender) to its column: PostgreSQL refuses longer ones, SQLite not."""
    limit = row_class.__table__.c[column].type.length
    return value if value is None or len(value) <= limit else value[: limit - 1] + "…"
