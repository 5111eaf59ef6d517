"""DingTalk (钉钉) group custom robot: alerts posted to a group chat through the robot's signed webhook.

A custom robot (自定义机器人) is a URL, ``/robot/send?access_token=TOKEN``,
added to a group by any member; it can only post, so it is an
``AlertSender`` and not a chat adapter. A target names it with ``platform:
dingtalk_robot`` and, as ``chat_id``, the robot's access token and its
signing secret joined by a colon: ``TOKEN:SEC...`` (the secret DingTalk
shows when the robot's security setting is 加签; a robot secured by keywords
or IP addresses alone takes ``TOKEN``). The chat id is the whole credential,
so it belongs in a protected config file and never in a log line (calls are
named ``dingtalk robot send``, never by their URL).

What DingTalk asks of a robot, and how this module keeps to it:

* each send is signed: ``timestamp`` (ms) and ``sign`` =
  base64(HMAC-SHA256(secret, ``timestamp + "\\n" + secret``)) in the query,
  the timestamp within an hour of DingTalk's clock (``adapters.dingtalk.signature``);
* 20 messages a minute per robot, beyond which DingTalk throttles the robot
  for 10 minutes (errcode 130101): sends are paced here, waiting for a free
  slot (``adapters._pacing``), and stop waiting when the scheduler stops;
* alerts go as ``text`` messages, which DingTalk shows as written (links
  still open): nothing people chose can become markup, nothing to escape;
* a custom robot posts no uploaded image (its image messages take a public
  URL only): a chart is left out, and the log says so.

``DINGTALK_OAPI_BASE`` (a private deployment, or the tests' fake) applies here
as it does to the app robot's session webhooks.
"""

from __future__ import annotations

import functools
import logging
import time

from ._pacing import PacedRobot
from .base import TextLimit
from .dingtalk import DEFAULT_OAPI_BASE, check_oapi, signature

log = logging.getLogger(__name__)

CALL = "dingtalk robot send"


class DingTalkRobot(PacedRobot):
    name = "dingtalk_robot"
    environment = {"api_base": "DINGTALK_OAPI_BASE"}
    default_api_base = DEFAULT_OAPI_BASE
    alert_text_limit = TextLimit(6000, "bytes")  # DingTalk's limit is on the request (20 KB); a margin for JSON
    chat_id_is_secret = True

    def send_alert(self, chat_id: str, text: str, image: bytes | None = None) -> str:
        """Post ``text``; ``chat_id`` is ``TOKEN:SECRET`` (or ``TOKEN``). Returns ``""``: the robot's answer names
        no message."""
        token, _, secret = chat_id.partition(":")
        self.wait_for_turn(token, CALL)
        query = {"access_token": token}
        if secret:
            timestamp = str(int(time.time() * 1000))
            query.update(timestamp=timestamp, sign=signature(secret, timestamp))
        self.http.call("POST", f"{self.api_base}/robot/send", params=query, call=CALL, delivers=True,
                       check=functools.partial(check_oapi, token_rejections=False),
                       json={"msgtype": "text", "text": {"content": text}})
        if image is not None:
            log.info("dingtalk robot: a custom robot posts no uploaded image; the chart was left out")
        return ""
