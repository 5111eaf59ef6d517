"""Chat webhooks: ``/webhooks/<path>`` for every configured platform, one generic route.

Each request is verified, recorded and answered, nothing more: the adapter
whose ``webhook_path`` matches checks the signature (a refusal is 401/403
with nothing stored and nothing downloaded), reads the messages, and each
message is committed to the database and queued before the answer leaves.
Downloading, decoding, the model and the reply happen in the queue's
workers, so the platforms' deadlines (Slack 3 s, WeCom 5 s) hold whatever
the model is doing. A platform without its secrets is off: 404.
"""

from __future__ import annotations

import logging

from flask import Blueprint, Response, abort, current_app, request

from adapters.base import Refused

from ..chat.messages import CaseInsensitiveDict, InboundRequest

log = logging.getLogger(__name__)

webhooks = Blueprint("webhooks", __name__)


@webhooks.route("/webhooks/<path:path>", methods=["GET", "POST"])
def receive(path: str):
    chat = current_app.extensions["bot_bridge"].chat
    adapter = next((a for a in chat.adapters.values() if a.webhook_path == path), None)
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
    try:
        parsed = adapter.parse(inbound)
    except Exception as error:  # noqa: BLE001 - any shape the adapter cannot read
        # Acknowledged: the platform would resend a non-2xx answer for a day, and no resend can be read either.
        log.error("%s webhook verified but unreadable, acknowledged and dropped (%s: %s)",
                  adapter.name, type(error).__name__, error)
        return Response("", status=200)
    for message in parsed.messages:
        created = chat.accept(message)
        log.info(
            "%s %s %s %s",
            adapter.name,
            message.kind,
            message.delivery_id,
            "recorded" if created else "already recorded (redelivery), not processed again",
        )
    answer = parsed.response
    return Response(answer.body, status=answer.status, content_type=answer.content_type, headers=answer.headers)
