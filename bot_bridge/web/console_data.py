"""The console's Data page: what the deployment keeps, its retention rules and the next sweep, and deleting on
request: one result, every note of a sender, or of a chat.

Deleting goes through ``remembering/forgetting.py`` like the chat's
``forget`` and ``bot-bridge purge``, and leaves one audit entry. The forms
are POSTs carrying the session's CSRF token, checked by the console's guard
like every console POST. The page and deleting are an *admin*'s, and the
audit entry names the signed-in account.
"""

from __future__ import annotations

from flask import Blueprint, abort, redirect, render_template, request, url_for

from ..acting.retention import Retention
from ..remembering.audit import AuditLog
from ..remembering.forgetting import Forgetting, Selection
from .api import service
from .console import add_security_headers, console_actor, require_sign_in_and_csrf
from .console_access import allow

data = Blueprint("data", __name__)
data.before_request(require_sign_in_and_csrf)
data.after_request(add_security_headers)

#: What the delete form may name, and how each becomes a selection.
SELECTIONS = {
    "result": lambda key: Selection.of_results([key]),
    "sender": lambda key: Selection.of_sender(*_platform_and_id(key)),
    "chat": lambda key: Selection.of_chat(*_platform_and_id(key)),
}


@data.get("/data")
@allow("admin")
def data_page():
    settings = service().settings
    store = service().store
    deletions = AuditLog(store).entries(action="data.delete", limit=20)
    return render_template("data.html", kept=Retention(store, settings.retention).kept(), rules=settings.retention,
                           deletions=deletions, deleted=request.args.get("deleted"))


@data.post("/data/delete")
@allow("admin")
def delete():
    """Delete what the form names (``what``: result, sender or chat; ``key``: its id, ``platform:id`` for a
    sender or chat), then back to the Data page saying how many notes and results went."""
    what, key = request.form.get("what"), (request.form.get("key") or "").strip()
    if what not in SELECTIONS or not key:
        abort(400)
    try:
        selection = SELECTIONS[what](key)
    except ValueError:
        abort(400)
    settings = service().settings
    deleted = Forgetting(service().store, batch=settings.retention.batch).forget(
        selection, actor=console_actor(), via="console")
    return redirect(url_for("data.data_page", deleted=f"{deleted.notes}/{deleted.results}"))


def _platform_and_id(key: str) -> tuple[str, str]:
    platform, _, identifier = key.partition(":")
    if not platform or not identifier:
        raise ValueError(f"{key!r} is not platform:id")
    return platform, identifier
