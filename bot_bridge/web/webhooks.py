"""Chat webhooks: ``/webhooks/<path>`` for every configured platform, one generic route.

Each request is verified, recorded and answered, nothing more: the adapter
whose ``webhook_path`` matches checks the signature (a refusal is 401/403
with nothing stored and nothing downloaded), reads the messages, and each
message is committed to the database and queued before the answer leaves.
Downloading, decoding, the model and the reply happen in the queue's
workers, so the platforms' deadlines (Slack 3 s, WeCom 5 s) hold whatever
the model is doing. A platform without its secrets is off: 404; so is one
that receives without a webhook (Telegram polling, Slack Socket Mode).
"""

from __future__ import annotations

import logging

from flask import Blueprint, Response, abort, current_app, request

from adapters.base import WEBHOOK, Refused

from ..chat.messages import CaseInsensitiveDict, InboundRequest

log = logging.getLogger(__name__)

webhooks = Blueprint("webhooks", __name__)


@webhooks.route("/webhooks/<path:path>", methods=["GET", "POST"])
def receive(path: str):
    chat = current_app.extensions["bot_bridge"].chat
    adapter = next((a for a in chat.adapters.values() if a.webhook_path == path and a.receives == WEBHOOK), None)
    if adapter is None or request.method not in adapter.webhook_methods:
        abort(404)
    inbound = InboundRequest(
        method=request.method,
        path=path,
        query=request.args.to_dict(),
        headers=CaseInsensitiveDict(request.headers),
        body=request.get_data(cache=False),
    )
    try:
        adapter.verify(inbound)
    except Refused as refusal:
        log.warning("%s webhook refused (%d): %s", adapter.name, refusal.status, refusal.reason)
        return Response("", status=refusal.status)
    except Exception as error:  # noqa: BLE001 - what cannot be verified is refused, whatever broke
        log.warning("%s webhook refused (403): unverifiable (%s: %s)", adapter.name, type(error).__name__, error)
        return Response("", status=403)
    answer = chat.receive(adapter, inbound)
    return Response(answer.body, status=answer.status, content_type=answer.content_type, headers=answer.headers)
