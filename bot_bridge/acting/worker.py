"""Answering chat messages: every recorded voice note gets exactly one reply.

How a note travels (its states are ``store.NoteStatus``):

1. The webhook verifies the request, records the note (a committed row,
   ``queued``), puts its id on the queue and answers: the platform hears back
   in milliseconds whatever the model is doing. A redelivery of the same
   message finds its row (platform + delivery id are unique) and stops there.
2. A queue worker claims the row with a lease (``working``; one conditional
   UPDATE, so only one worker can win), renewed by a heartbeat while it
   downloads, analyses and renders; the reply text is stored before sending.
3. It marks the row ``sending``, sends, and records the send (``replied``,
   ``reply_sent_at``, ``reply_ref``). What is sent follows the chat's reply
   mode (``reply_modes``): a message, or a reaction on the voice note, sent
   through the same states; in a silent chat nothing is sent and the note
   ends ``silent`` once analysed.

Crashes: the lease of a worker that died while ``working`` stops being
renewed, and the recovery sweep queues the note again; the next try starts
from the stored reply if there is one. A worker that died while ``sending``
may or may not have delivered: the note becomes ``unconfirmed`` and is never
sent again (one reply at most beats two), and the operator is told in the log.

Failures: a transient one (platform down, rate limit, timeout, model not
loaded, a full disk) is tried again after ``queue.retry_delay_s``, tripled each time, up to
``queue.max_attempts`` tries (15 s, 45 s, 135 s, 405 s by default, so a
platform outage of ten minutes is survived). After the last, the person gets
a reply naming the problem when one can still be sent, and the note ends
``failed`` with one log line. Bad audio is not a failure: its reply says
what is wrong with it. An unexpected exception (a bug) gets one more try,
not five. A reply whose send timed out after the request left may have been
delivered (chat APIs have no idempotency key): it becomes ``unconfirmed``
and is not resent, as after a crash while sending.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Callable, ContextManager, Protocol

from adapters import adapter_classes, enabled_adapters
from adapters.base import ChatAdapter

from ..chat.messages import CaseAction, ChatMessage, InboundRequest, WebhookResponse
from ..chat.outbound import MaybeDelivered, OutboundError, OutboundHttp, TooLarge
from ..config import ReplySettings, Settings
from ..errors import AudioError, BotBridgeError, ModelUnavailable
from ..logs import secret_values
from ..metrics import count_error, count_note, observe_time_to_reply, timed_stage
from ..remembering.case_store import BOT_BRIDGE
from ..remembering.forgetting import FORGETTING, Counted, Forgetting, Selection
from ..remembering.results import Result
from ..remembering.store import Store, VoiceNoteRow
from .charts import changing_emotions, timeline_chart
from .heartbeat import Heartbeat
from .queue import WorkQueue
from .replies import render_error, render_forgotten, render_help, render_result
from .reply_modes import (
    COULD_NOT_TELL,
    MESSAGE,
    REACTION,
    SILENT,
    chat_mode,
    reaction_for,
    warn_about_missing_reactions,
)

log = logging.getLogger(__name__)

RETRY_GROWTH = 3
UNEXPECTED_FAILURE_TRIES = 2


def build_adapters(settings: Settings) -> dict[str, ChatAdapter]:
    """The configured platforms' adapters, sharing one outbound HTTP client that masks every secret."""
    for name, cls in adapter_classes().items():
        configured = settings.platforms.get(name, {})
        missing = [cls.environment.get(key, key) for key in cls.missing_settings(configured)]
        if configured and missing:
            log.warning("%s is off: %s not set", name, ", ".join(missing))
    adapters = enabled_adapters(settings.platforms, OutboundHttp(secrets=secret_values(settings)))
    warn_about_missing_reactions(settings.reply, adapters)
    return adapters


def reply_language(reply: ReplySettings, note: VoiceNoteRow) -> str:
    """The chat's own setting, else the sender's app language (when the default is both), else the default."""
    chosen = reply.languages.get(f"{note.platform}:{note.chat_id}")
    if chosen:
        return chosen
    if reply.language == "both" and note.language in ("zh", "en"):
        return note.language
    return reply.language


class NotRecorded(Exception):
    """A message (or button press) of an update could not be made durable (``__cause__`` says why): the
    platform must deliver the update again, so it is neither acknowledged nor confirmed."""

    def __init__(self, message: ChatMessage | CaseAction) -> None:
        super().__init__(f"{message.platform} {message.kind} {message.delivery_id} not recorded")
        self.message = message


class Analyser(Protocol):
    """What the worker needs of the engine: analysing and storing a recording, and a turn with the cores."""

    def analyse(self, data: bytes, *, file_name: str | None, timeline: bool, origin: str,
                transcribe: bool | None) -> Result: ...

    def cpu_turn(self) -> ContextManager: ...


class ChatWorker:
    """Records incoming messages (web side) and answers them (queue side)."""

    def __init__(
        self, settings: Settings, store: Store, queue: WorkQueue, adapters: dict[str, ChatAdapter], analyser: Analyser,
        *, on_press: Callable[[CaseAction], None] | None = None,
    ) -> None:
        """``on_press`` handles a button pressed on a case's message (``case_desk.CaseDesk.press``)."""
        self.settings = settings
        self.store = store
        self.adapters = adapters
        self.queue = queue
        self.analyser = analyser
        self.on_press = on_press
        self._stopping = threading.Event()
        self._recovery: threading.Thread | None = None

    # -- web side ----------------------------------------------------------

    def receive(self, adapter: ChatAdapter, inbound: InboundRequest) -> WebhookResponse:
        """Read a verified webhook, or an update pulled or received over a connection, record each message it
        carries and handle each button press; the answer for the platform. Raises ``NotRecorded`` if recording
        failed (the platform sends it again)."""
        try:
            parsed = adapter.parse(inbound)
        except Exception as error:  # noqa: BLE001 - any shape the adapter cannot read
            # Acknowledged: the platform would send it again for a day, and no resend could be read either.
            log.error("%s update (%s) verified but unreadable, acknowledged and dropped (%s: %s)",
                      adapter.name, inbound.path, type(error).__name__, error)
            return WebhookResponse()
        for message in parsed.messages:
            try:
                created = self.accept(message)
            except Exception as error:  # noqa: BLE001 - whatever broke, the platform must send it again
                raise NotRecorded(message) from error
            log.info("%s %s %s %s", adapter.name, message.kind, message.delivery_id,
                     "recorded" if created else "already recorded (redelivery), not processed again")
        for action in parsed.actions:
            if self.on_press is None:
                log.warning("%s button press %s: this process handles no cases; ignored", adapter.name,
                            action.delivery_id)
                continue
            try:
                self.on_press(action)
            except Exception as error:  # noqa: BLE001 - whatever broke, the platform must send it again
                raise NotRecorded(action) from error
        return parsed.response

    def accept(self, message: ChatMessage) -> bool:
        """Record ``message`` durably and queue it; False if this delivery was already recorded."""
        note_id, created = self.store.record_voice_note(message)
        if created:
            try:
                self.queue.enqueue(note_id)
            except Exception:  # noqa: BLE001 - the row is committed; the recovery sweep queues it
                log.exception("note %d recorded but not queued; the recovery sweep will queue it", note_id)
        return created

    # -- queue side -----------------------------------------------------------

    def start(self, worker_threads: int = 1) -> None:
        """Run the queue's worker threads and the periodic recovery sweep in this process."""
        self.queue.start_consumer(worker_threads)
        self._stopping.clear()
        self._recovery = threading.Thread(target=self._recover_periodically, name="chat-recovery", daemon=True)
        self._recovery.start()

    def stop(self) -> None:
        """Take no more notes, finish those in hand within ``queue.shutdown_grace_s``, hand back the rest.

        Handing back (SIGTERM, a deploy) lets another worker take a note at
        once instead of after its lease runs out; this process's late answer,
        if it comes, finds the lease gone and is not sent.
        """
        self._stopping.set()
        if not self.queue.stop_consumer():
            for note_id in self.store.release_voice_notes(_process_owner()):
                log.warning("note %d: still in work at shutdown; handed back to the queue", note_id)
                self.queue.enqueue(note_id)
        if self._recovery is not None:
            self._recovery.join()
            self._recovery = None

    def recover(self) -> None:
        """Queue again what dead workers left, report what they may have half-sent, and finish the deletions
        they left marked (with no retention rule, nothing else would until the next deletion)."""
        requeue, unconfirmed = self.store.recover_voice_notes(
            overdue_s=self.settings.queue.lease_s, queue_idle=self.queue.is_idle()
        )
        for note_id in requeue:
            log.warning("note %d was left by a worker that stopped (or never reached the queue); queued again", note_id)
            self.queue.enqueue(note_id)
        for note_id in unconfirmed:
            log.error("note %d: the process died while sending its reply; it may be missing and is not resent", note_id)
        if finished := Forgetting(self.store, batch=self.settings.retention.batch).finish():
            log.warning("finished deleting %d results and notes that a stopped process had marked for deletion",
                        finished)

    def _recover_periodically(self) -> None:
        while not self._stopping.is_set():
            try:
                self.recover()
            except Exception:  # noqa: BLE001 - a failed sweep (database busy) is retried at the next one
                log.exception("recovery sweep failed")
            self._stopping.wait(self.settings.queue.recovery_interval_s)

    def process(self, note_id: int) -> None:
        """The queue's task: one try at answering one note, if it is still to be answered."""
        owner = f"{_process_owner()}{threading.current_thread().name}"
        note = self.store.claim_voice_note(note_id, owner, self.settings.queue.lease_s)
        if note is None:
            return  # answered already, not due yet, or another worker has it
        lease_s = self.settings.queue.lease_s
        with Heartbeat(lambda: self.store.extend_lease(note.id, owner, lease_s), lease_s / 3, f"lease-{note.id}"):
            _Attempt(self, note, owner).run()


def _process_owner() -> str:
    """The start of every lease owner name this process writes: host and pid."""
    return f"{socket.gethostname()}:{os.getpid()}:"


@dataclass(frozen=True)
class _Reply:
    """What to answer: ``text`` (mode message), the emotion to react with (mode reaction), or nothing (silent)."""

    mode: str
    text: str | None = None
    result_id: str | None = None
    error_code: str | None = None
    error_detail: str | None = None


class _Attempt:
    """One try at answering one claimed note."""

    def __init__(self, worker: ChatWorker, note: VoiceNoteRow, owner: str) -> None:
        self.worker = worker
        self.settings = worker.settings
        self.store = worker.store
        self.note = note
        self.owner = owner
        self.message = note.message()
        self.language = reply_language(self.settings.reply, note)
        self.adapter = worker.adapters.get(note.platform)
        self.mode = chat_mode(self.settings.reply, self.adapter, note.platform, note.chat_id)
        self.last = note.attempts >= self.settings.queue.max_attempts
        self.what = f"{note.platform} note {note.id} (delivery {note.delivery_id}, try {note.attempts})"

    def run(self) -> None:
        adapter = self.adapter
        if adapter is None:
            self._give_up("platform_off", f"{self.note.platform} is not configured in this process")
            return
        reply = self._reply(adapter)
        if reply is None:
            return  # a retry is scheduled, or the note was given up
        if reply.mode == SILENT:
            self._finish_silently(reply)
            return
        saved = self.store.save_reply(
            self.note.id,
            self.owner,
            reply.text,
            mode=reply.mode,
            result_id=reply.result_id,
            error_code=reply.error_code,
            error_detail=reply.error_detail,
        )
        if saved:
            self._send(adapter, reply)
        else:
            log.warning("%s: lease lost before sending; another worker has it", self.what)
            self._drop_if_deleted(reply.result_id)

    # -- what to say -----------------------------------------------------------

    def _reply(self, adapter: ChatAdapter) -> _Reply | None:
        if self.note.reply_text is not None:
            return _Reply(self.note.reply_mode or MESSAGE, self.note.reply_text, self.note.result_id,
                          self.note.error_code, self.note.error_detail)
        if self.note.attempts > self.settings.queue.max_attempts:
            # Only a crash during each earlier try gets here: do not run that work again.
            return self._error_reply(BotBridgeError("internal_error", "every try ended with the process dying"))
        try:
            return self._compose(adapter)
        except Exception as failure:  # noqa: BLE001 - every failure either retries or becomes a reply
            return self._after_failure(failure)

    def _compose(self, adapter: ChatAdapter) -> _Reply:
        if self.note.kind in ("forget", "deleted"):
            return self._forget()
        if self.note.kind == "help":
            if self.mode == SILENT:
                return _Reply(SILENT)
            audio = self.settings.audio
            return _Reply(  # in reaction mode too: a reaction cannot explain anything, and the person asked
                MESSAGE,
                render_help(
                    self.language,
                    max_duration_s=audio.max_duration_s,
                    chart_min_duration_s=self.settings.reply.chart_min_duration_s,
                    keeps_audio=audio.keep_audio,
                )
            )
        try:
            result = self._analyse(adapter)
        except AudioError as error:
            log.info("%s: bad audio: %s", self.what, error)
            return self._error_reply(error)
        if self.mode == SILENT:
            return _Reply(SILENT, result_id=result.id)
        if self.mode == REACTION:
            return _Reply(REACTION, reaction_for(result), result.id)
        note, reply = self.note, self.settings.reply
        with_chart = bool(changing_emotions(result, reply.chart_min_duration_s))
        text = render_result(result, self.language, transcript=reply.transcript_for(note.platform, note.chat_id),
                             limit=adapter.reply_limit(with_chart))
        return _Reply(MESSAGE, text, result.id)

    def _forget(self) -> _Reply:
        """Delete what the sender asked to (``forget``) or what the platform deleted or recalled (``deleted``)."""
        note = self.note
        forgetting = Forgetting(self.store, batch=self.settings.retention.batch)
        if note.kind == "deleted":
            deleted = Selection.of_platform_item(note.platform, note.media["ref"])
            if forgetting.count(deleted, keep_note=note.id):  # most deleted or recalled messages were no notes
                forgetting.forget(deleted, actor=f"{note.platform}:platform", via=note.platform, keep_note=note.id)
            return _Reply(SILENT)
        deleted = Counted() if note.sender_id is None else forgetting.forget(
            Selection.of_sender(note.platform, note.sender_id), actor=f"{note.platform}:{note.sender_id}",
            via=note.platform, keep_note=note.id)
        if self.mode == SILENT:
            return _Reply(SILENT)
        return _Reply(MESSAGE, render_forgotten(self.language, deleted.notes))

    def _drop_if_deleted(self, result_id: str | None) -> None:
        """A result analysed for a note deleted meanwhile (``forget`` during the analysis) goes too."""
        note = self.store.voice_note(self.note.id)
        if result_id is not None and (note is None or note.status == FORGETTING):
            Forgetting(self.store).forget(Selection.of_results([result_id]), actor=BOT_BRIDGE, via=BOT_BRIDGE,
                                          audited=False)
            log.info("%s: deleted while analysed; its result is deleted too", self.what)

    def _analyse(self, adapter: ChatAdapter):
        media = self.message.media
        max_bytes = self.settings.audio.max_bytes
        too_large = AudioError("too_large", f"{media.size_bytes} bytes", limit_mb=round(max_bytes / 1e6))
        platform_limit = adapter.max_download_bytes
        if platform_limit and media.size_bytes and media.size_bytes > platform_limit:
            raise AudioError("too_large_to_fetch", f"{media.size_bytes} bytes", limit_mb=platform_limit // 2**20)
        if media.size_bytes and media.size_bytes > max_bytes:
            raise too_large
        try:
            with timed_stage("download"):
                audio = adapter.fetch_audio(self.message, max_bytes)
        except TooLarge:
            raise too_large from None
        transcribe = self.settings.transcribe.enabled_for(self.note.platform, self.note.chat_id)
        return self.worker.analyser.analyse(audio, file_name=media.file_name, timeline=True, origin=self.note.platform,
                                            transcribe=transcribe)

    def _after_failure(self, failure: Exception) -> _Reply | None:
        """Retry a transient failure; after the last try, or for a final one, tell the person."""
        if isinstance(failure, OutboundError):
            retryable, error = failure.retryable, BotBridgeError("download_failed", str(failure))
        elif isinstance(failure, BotBridgeError):
            # Both pass by themselves: a model still loading, a disk that gets space again.
            retryable, error = isinstance(failure, ModelUnavailable) or failure.code == "storage_full", failure
        else:
            # One more try rides out a blip (a dropped database connection); a bug would fail every time.
            log.exception("%s: unexpected failure", self.what)
            retryable = self.note.attempts < UNEXPECTED_FAILURE_TRIES
            error = BotBridgeError("internal_error", f"{type(failure).__name__}: {failure}")
        if retryable and not self.last:
            self._retry(error.code, error.detail, getattr(failure, "retry_after_s", None))
            return None
        if self.mode == SILENT:  # nobody is told in a silent chat: it simply failed
            self._give_up(error.code, error.detail)
            return None
        return self._error_reply(error)

    def _error_reply(self, error: BotBridgeError) -> _Reply:
        count_error(error.code, "chat")
        codes = {"error_code": error.code, "error_detail": error.detail}
        if self.mode == SILENT:
            return _Reply(SILENT, **codes)
        if self.mode == REACTION:
            return _Reply(REACTION, COULD_NOT_TELL, **codes)
        return _Reply(MESSAGE, render_error(error, self.language), **codes)

    # -- saying it ---------------------------------------------------------------

    def _finish_silently(self, reply: _Reply) -> None:
        if not self.store.finish_silently(self.note.id, self.owner, result_id=reply.result_id,
                                          error_code=reply.error_code, error_detail=reply.error_detail):
            log.warning("%s: lease lost before finishing; another worker has it", self.what)
            self._drop_if_deleted(reply.result_id)
            return
        count_note(SILENT)
        log.info("%s: kept, nothing sent (reply mode silent)%s", self.what,
                 f"; {reply.error_code}" if reply.error_code else "")

    def _send(self, adapter: ChatAdapter, reply: _Reply) -> None:
        image = self._chart(reply.result_id) if reply.mode == MESSAGE else None
        if not self.store.mark_sending(self.note.id, self.owner):
            log.warning("%s: lease lost before sending; another worker has it", self.what)
            return
        try:
            with timed_stage("reply"):
                if reply.mode == REACTION:
                    reference = adapter.send_reaction(self.message, reply.text)
                else:
                    reference = adapter.send_reply(self.message, reply.text, image)
        except MaybeDelivered as failure:
            count_error("reply_unconfirmed", "chat")
            count_note(reply.mode)
            self.store.mark_unconfirmed(self.note.id, self.owner, str(failure))
            log.error("%s: %s", self.what, failure)
            return
        except OutboundError as failure:
            if failure.retryable and not self.last:
                # The note keeps its reply's own error (none, or what the reply tells the person): a send that
                # works next time must not be recorded as failed. The log and the metric count this one.
                self._retry("send_failed", str(failure), failure.retry_after_s, keep_reply_error=True)
            else:
                self._give_up("send_failed", str(failure))
            return
        except Exception as failure:  # noqa: BLE001 - the send may have happened: never try it again
            log.exception("%s: unexpected failure while sending", self.what)
            self._give_up("send_failed", f"{type(failure).__name__}: {failure}")
            return
        self.store.mark_replied(self.note.id, reference, reply.error_code, reply.error_detail)
        count_note(reply.mode)
        observe_time_to_reply(self.note.platform, (datetime.now(timezone.utc) - self.note.received_at).total_seconds())
        outcome = "reacted" if reply.mode == REACTION else "replied"
        if reply.error_code:
            outcome = f"{outcome} to an error ({reply.error_code})"
        log.info("%s: %s as %s", self.what, outcome, reference)

    def _chart(self, result_id: str | None) -> bytes | None:
        if result_id is None:
            return None
        try:
            with self.worker.analyser.cpu_turn():  # drawing is CPU work: not beside the model
                return timeline_chart(self.store.result(result_id), self.settings.reply.chart_min_duration_s)
        except Exception:  # noqa: BLE001 - a broken chart must not cost the person the reply
            log.exception("%s: timeline chart failed; replying without it", self.what)
            return None

    def _retry(self, code: str, detail: str, after_s: float | None, *, keep_reply_error: bool = False) -> None:
        delay = self.settings.queue.retry_delay_s * RETRY_GROWTH ** (self.note.attempts - 1)
        delay = max(delay, after_s or 0.0)
        count_error(code, "chat")
        recorded = (None, None) if keep_reply_error else (code, detail)
        if self.store.retry_voice_note_later(self.note.id, self.owner, delay, *recorded):
            log.warning("%s: %s (%s); trying again in %g s", self.what, code, detail, delay)
            self.worker.queue.enqueue(self.note.id, delay)

    def _give_up(self, code: str, detail: str) -> None:
        count_error(code, "chat")
        count_note(self.mode)
        self.store.fail_voice_note(self.note.id, self.owner, code, detail)
        log.error("%s FAILED after %d tries: %s: %s", self.what, self.note.attempts, code, detail)
