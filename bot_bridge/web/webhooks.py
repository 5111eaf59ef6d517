"""Chat webhooks: ``/webhooks/<path>`` for every configured platform, one generic route.

Each request is verified, recorded and answered, nothing more: the adapter
whose ``webhook_path`` matches checks the signature (a refusal is 401/403
with nothing stored and nothing downloaded), reads the messages, and each
message is committed to the database and queued before the answer leaves.
Downloading, decoding, the model and the reply happen in the queue's
workers, so the platforms' deadlines (Slack 3 s, WeCom 5 s) hold whatever
the model is doing. A platform without its secrets is off: 404; so is one
that receives without a webhook (Telegram polling, Slack Socket Mode), unless
its webhook only wakes its puller (微信客服).
Button presses on cases' messages come the same way, verified the same
way, at the webhook or at the adapter's ``interaction_path`` (Slack's
``/webhooks/slack/interactions``).
"""

from __future__ import annotations

import logging

from flask import Blueprint, Response, abort, current_app, request

from adapters.base import WEBHOOK, Refused

from ..acting.worker import NotRecorded
from ..chat.messages import CaseInsensitiveDict, InboundRequest
from ..storage import is_storage_full, storage_full_error

log = logging.getLogger(__name__)

RETRY_AFTER_S = 60

webhooks = Blueprint("webhooks", __name__)


@webhooks.route("/webhooks/<path:path>", methods=["GET", "POST"])
def receive(path: str):
    chat = current_app.extensions["bot_bridge"].chat
    adapter = next((a for a in chat.adapters.values()
                    if path in (a.webhook_path, a.interaction_path)
                    and (a.receives == WEBHOOK or a.wakes_by_webhook)), None)
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
        answer = chat.receive(adapter, inbound)
    except NotRecorded as failure:  # the platform must deliver it again
        return _not_recorded(adapter.name, failure.message, failure.__cause__)
    return Response(answer.body, status=answer.status, content_type=answer.content_type, headers=answer.headers)


def _not_recorded(platform: str, message, error: Exception) -> Response:
    """503: the message could not be made durable, so the platform is asked to deliver it again later
    (every platform retries a webhook that did not get a 2xx answer)."""
    service = current_app.extensions["bot_bridge"]
    if is_storage_full(error):
        log.error("%s %s %s not recorded, answered 503 for a redelivery: %s", platform, message.kind,
                  message.delivery_id, storage_full_error(service.settings, error).detail)
    else:
        log.exception("%s %s %s not recorded, answered 503 for a redelivery", platform, message.kind,
                      message.delivery_id)
    return Response("", status=503, headers={"Retry-After": str(RETRY_AFTER_S)})
