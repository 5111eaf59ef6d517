"""The log's last line of defence: every configured secret is masked in whatever a log line carries.

Code never logs a secret on purpose (tests/test_worker.py and tests/test_escalation.py check the paths
that handle them); this checks the filter ``configure_logging`` installs, on the handler operators read.
"""

from __future__ import annotations

import io
import logging

import pytest

from bot_bridge.config import load_settings
from bot_bridge.logs import MASK, configure_logging

TELEGRAM_TOKEN = "7000000001:AAF-telegram-token-0123456789"
SIGNING_SECRET = "slack-signing-secret-abcdef"
ROBOT_KEY = "693a91f6-7xxx-4bc4-97a0-0ec2sifa5aaa"
API_TOKEN = "api-token-1234"
LONGER_API_TOKEN_PASSWORD = API_TOKEN + "-and-more"  # contains another secret: masked whole, not in part


@pytest.fixture
def operator_log():
    """What the handler ``configure_logging`` installs writes, with these secrets configured (into a buffer
    instead of stderr); the handler is removed afterwards."""
    settings = load_settings(
        environ={"TELEGRAM_BOT_TOKEN": TELEGRAM_TOKEN, "SLACK_SIGNING_SECRET": SIGNING_SECRET,
                 "SLACK_BOT_TOKEN": "xoxb-slack-bot-token-42", "BOT_BRIDGE_API_TOKEN": API_TOKEN},
        console__password=LONGER_API_TOKEN_PASSWORD,
        targets={"robot": {"platform": "wecom_robot", "chat_id": ROBOT_KEY}},
    )
    root = logging.getLogger()
    level = root.level
    configure_logging(settings)
    [handler] = [h for h in root.handlers if getattr(h, "_bot_bridge", False)]
    written = io.StringIO()
    handler.setStream(written)
    try:
        yield written.getvalue
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


def test_secrets_are_masked_in_messages_their_arguments_and_tracebacks(operator_log):
    log = logging.getLogger("bot_bridge.test_logs")
    log.warning("GET https://api.telegram.org/bot%s/getFile failed", TELEGRAM_TOKEN)
    log.warning(f"signature check with {SIGNING_SECRET} failed")
    try:
        raise ConnectionError(f"POST /cgi-bin/webhook/send?key={ROBOT_KEY}: connection reset")
    except ConnectionError:
        log.exception("robot %s unreachable", "desk")
    log.error("console password %s, api token %s", LONGER_API_TOKEN_PASSWORD, API_TOKEN)

    written = operator_log()

    for secret in (TELEGRAM_TOKEN, SIGNING_SECRET, ROBOT_KEY, API_TOKEN, "-and-more"):
        assert secret not in written
    assert f"/bot{MASK}/getFile" in written and f"send?key={MASK}: connection reset" in written
    assert f"console password {MASK}, api token {MASK}" in written
    assert "robot desk unreachable" in written and "Traceback" in written
