"""Where every action on a case arrives: a button pressed in a chat, or the console's.

A press is checked before anything changes: a button that is not
bot-bridge's, one posted by another deployment, or one naming a case this
deployment does not have is refused politely (the person is told, nothing
is written). Forged or stale presses never get here: the webhook refuses
them as it refuses any request that fails its platform's verification.

Then the change is made (``bot_bridge.remembering.case_changes``: one
conditional UPDATE, so of two people pressing at once one wins, and a press
delivered twice is recognised by the platform's id of it), the person is
answered at once in the platform's way (``ChatAdapter.answer_press``: Telegram
wants answerCallbackQuery for every press; Slack has had its HTTP 200), and
the case's messages are updated afterwards, in a thread (``CaseUpdates``), so
the answer never waits for them: both presses' people see the final state.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Callable
from zoneinfo import ZoneInfo

from adapters.base import ChatAdapter

from ..chat.messages import CaseAction
from ..chat.outbound import OutboundError
from ..config import Settings
from ..remembering.case_changes import Action, Actor, CaseChanges, Outcome
from ..remembering.labels import Labels
from ..remembering.store import Store
from .alerting import Target, say
from .case_cards import REFUSALS, SNOOZE_FOR, answer, read_button
from .case_messages import CaseUpdates
from .escalation import Escalator

log = logging.getLogger(__name__)

class CaseDesk:
    """Changes cases for the people working them, and tells them and every target what came of it."""

    def __init__(self, store: Store, settings: Settings, adapters: dict[str, ChatAdapter], escalator: Escalator,
                 clock: Callable[[], datetime]) -> None:
        self.changes = CaseChanges(store)
        self.settings = settings
        self.adapters = adapters
        self.escalator = escalator
        self.clock = clock
        self.updates = CaseUpdates(lambda case_id: escalator.messages.update_stale(clock(), case_id))

    def press(self, action: CaseAction) -> None:
        """A button pressed in a chat: check it, change the case, answer the person, then update the messages."""
        adapter = self.adapters[action.platform]
        target = self._target_of(action)
        language = target.language if target is not None else "both"
        button = read_button(action.value)
        refusal = self._refusal(button)
        if refusal is not None:
            log.info("%s button press %s refused: %s", action.platform, action.delivery_id, refusal)
            self._answer(adapter, action, say(language, *REFUSALS[refusal]), refused=True)
            return
        now = self.clock()
        if action.edit_token and action.message_ref:  # kept first: the update this press causes may use it
            self.escalator.messages.deliveries.keep_edit_token(button.case_id, action.message_ref, action.edit_token,
                                                               now)
        actor = Actor(f"{action.platform}:{action.actor_id}", action.actor_name or action.actor_id, action.platform)
        outcome = self.act(button.case_id, button.action, actor, now, press=action.delivery_id)
        if outcome.repeated:
            log.info("%s button press %s delivered again; handled already", action.platform, action.delivery_id)
            return
        zone = target.zone if target is not None else ZoneInfo(self.settings.console.timezone)
        self._answer(adapter, action, answer(outcome, button.action, language, zone), refused=not outcome.changed)

    def act(self, case_id: int, action: str, actor: Actor, now: datetime, *, press: str | None = None,
            note: str | None = None) -> Outcome:
        """Do ``action`` to the case for ``actor`` (a chat's press, or the console), then update its messages."""
        if action in Action.FEEDBACK:
            outcome = self._feedback(case_id, action, actor, now, press)
        else:
            until = now + SNOOZE_FOR if action == Action.SNOOZE else None
            outcome = self.changes.apply(case_id, action, actor, now, press=press, until=until, note=note)
        if outcome.changed:
            log.info("case %d: %s (%s)", case_id, action, actor.via)
            self.updates.soon(case_id)
        return outcome

    def stop(self) -> None:
        self.updates.stop()

    def _feedback(self, case_id: int, action: str, actor: Actor, now: datetime, press: str | None) -> Outcome:
        """Keep a verdict on a case's emotion (``Action.RIGHT``: confirmed, ``Action.WRONG``: rejected): on the
        case, with its audit entry, and as the label of the note its message showed, which calibration and
        ``export-labels`` read. Every verdict, from a chat's button or the console, is kept here."""
        outcome = self.changes.apply(case_id, action, actor, now, press=press)
        if outcome.changed:
            view = self.escalator.cases.view(case_id)
            Labels(self.escalator.store).record(view.result.id, emotion=view.case.emotion,
                                                verdict=Action.FEEDBACK[action], actor=actor.id,
                                                actor_name=actor.name, via=actor.via, case_id=case_id, at=now)
        return outcome

    def _refusal(self, button) -> str | None:
        if button is None:
            return "not_ours"
        if button.deployment != self.escalator.deployment:
            return "other_deployment"
        if not self.changes.exists(button.case_id):
            return "no_case"
        return None

    def _target_of(self, action: CaseAction) -> Target | None:
        """The target whose chat the press came from: its language and time zone are the answer's."""
        return next((target for target in self.escalator.targets.values()
                     if target.settings.platform == action.platform
                     and action.chat_id in target.settings.chat_id.split("|")), None)

    def _answer(self, adapter: ChatAdapter, action: CaseAction, text: str, *, refused: bool) -> None:
        try:
            adapter.answer_press(action, text, refused=refused)
        except OutboundError as error:  # the change stands; its messages show it
            log.warning("%s: could not answer button press %s: %s", action.platform, action.delivery_id, error)

