"""WeCom (企业微信) group robot: alerts posted to a group chat through the robot's webhook.

A group robot (群机器人) is a URL, ``/cgi-bin/webhook/send?key=KEY``, added
to a group by any member; it can only post, so it is an ``AlertSender``
and not a chat adapter. A target names it with ``platform: wecom_robot``
and the robot's key as ``chat_id``: the key is the whole credential, so it
belongs in a protected config file and never in a log line (calls are named
``wecom robot webhook/send``, never by their URL).

What WeCom allows a robot, and how this module keeps to it:

* markdown content up to 4096 bytes of UTF-8 (errcode 40058 beyond): the
  alert text limit, which the splitter measures in bytes;
* 20 messages a minute per robot (errcode 45009 beyond): sends are paced
  here, waiting for a free slot, so a long escalation or a digest with its
  chart is not refused halfway (``adapters._pacing``). A send waits for its
  own robot only, and stops waiting when the scheduler stops (``stop_waiting``);
* markdown has no escape character: in names people chose (chats, senders)
  the characters it reads as markup become their full-width forms
  (``escape_user_text``), so a Telegram user named ``[处理](http://x)``
  shows as ``［处理］（http://x）`` and is no link;
* images as base64 with the md5 of the raw bytes, at most 2 MB: a chart
  follows its text as a second message, and a chart over the limit is left
  out with a warning rather than failing the text that went before it.

``WECOM_API_BASE`` (a private WeCom deployment, or the tests' fake) applies
here as it does to the app adapter.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import logging

from bot_bridge.chat.outbound import OutboundError

from ._pacing import PacedRobot
from .base import TextLimit
from ._wecom_app import check_answer

log = logging.getLogger(__name__)

IMAGE_LIMIT_BYTES = 2 * 1024 * 1024
CALL = "wecom robot webhook/send"
#: What the robot's markdown reads as markup (headings, bold, links, code, quotes, <font>, <@mentions>), and
#: the full-width look-alike each becomes in a name; a line break would start a heading or a quote.
MARKDOWN_INERT = str.maketrans({
    "#": "＃", "*": "＊", "_": "＿", "[": "［", "]": "］", "(": "（", ")": "）", "`": "｀", ">": "＞", "<": "＜",
    "\n": " ", "\r": " ",
})


class WeComRobot(PacedRobot):
    name = "wecom_robot"
    environment = {"api_base": "WECOM_API_BASE"}
    default_api_base = "https://qyapi.weixin.qq.com"
    alert_text_limit = TextLimit(4096, "bytes")
    chat_id_is_secret = True

    def send_alert(self, chat_id: str, text: str, image: bytes | None = None) -> str:
        """Post ``text`` as markdown, then ``image``; ``chat_id`` is the robot's key. Returns ``""``:
        the robot's answer names no message."""
        self._send(chat_id, {"msgtype": "markdown", "markdown": {"content": text}})
        if image is not None and len(image) > IMAGE_LIMIT_BYTES:
            log.warning("wecom robot: a %d-byte image is over the robot's 2 MB limit; sent the text without it",
                        len(image))
        elif image is not None:
            picture = {"base64": base64.b64encode(image).decode("ascii"), "md5": hashlib.md5(image).hexdigest()}
            try:
                self._send(chat_id, {"msgtype": "image", "image": picture})
            except OutboundError as error:
                log.warning("wecom robot: the image after a message was not delivered: %s", error)
        return ""

    def escape_user_text(self, text: str) -> str:
        return text.translate(MARKDOWN_INERT)

    def _send(self, key: str, body: dict) -> None:
        self.wait_for_turn(key, CALL)
        self.http.call(
            "POST",
            f"{self.api_base}/cgi-bin/webhook/send",
            params={"key": key},
            json=body,
            call=CALL,
            check=functools.partial(check_answer, token_errors=frozenset()),
            delivers=True,
        )
