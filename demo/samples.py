"""The demo's sample voice notes: sentences a customer might say, spoken by espeak-ng.

They are synthesised when the demo starts (no recording lives in the
repository) and sent to bot-bridge as Telegram updates from a chat whose
name says they are samples, so the console, the alerts and the digests all
say it too. Each has a fixed ``update_id``: Telegram's idempotency key, so a
demo started again on the same data directory records them once.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from dataclasses import dataclass

SAMPLE_CHAT = {"id": -1009990000001, "type": "supergroup", "title": "示例群 Sample chat (make demo)"}
ESPEAK_RATE_WPM = "160"


@dataclass(frozen=True)
class Sample:
    update_id: int
    voice: str  # an espeak-ng voice
    text: str  # what it says
    sender: dict  # Telegram's ``from``

    @property
    def file_id(self) -> str:
        return f"sample-{self.update_id}"


_ALICE = {"id": 9990001, "is_bot": False, "first_name": "Sample Alice", "username": "sample_alice", "language_code": "en"}
_WANG = {"id": 9990002, "is_bot": False, "first_name": "示例小王", "username": "sample_wang", "language_code": "zh"}
_BOB = {"id": 9990003, "is_bot": False, "first_name": "Sample Bob", "username": "sample_bob", "language_code": "en"}

SAMPLES = (
    Sample(990001, "en-us", "Hello, I ordered a coffee machine two weeks ago and it still has not arrived. "
                            "Can you tell me where it is?", _ALICE),
    Sample(990002, "cmn", "你好，我上周买的耳机已经坏了，我想退货，请尽快帮我处理。", _WANG),
    Sample(990003, "en-gb", "This is the third time I am calling about the same problem. Every time, someone "
                            "promises to call me back, and nobody ever does. I am tired of waiting. "
                            "Please let me speak to a manager today.", _BOB),
)
#: A text message asking the bot what it does (``/start``), answered with the help text.
HELP_REQUEST = (990004, "/start", _ALICE)


def synthesise() -> tuple[dict[str, bytes], str | None]:
    """Each sample's recording (WAV) by file id, or nothing and the reason (espeak-ng is not installed)."""
    espeak = shutil.which("espeak-ng")
    if espeak is None:
        return {}, "espeak-ng is not installed (apt-get install espeak-ng), so there are no sample voice notes"
    return {
        sample.file_id: subprocess.run(
            [espeak, "-v", sample.voice, "-s", ESPEAK_RATE_WPM, "--stdout", sample.text],
            check=True, capture_output=True, timeout=60,
        ).stdout
        for sample in SAMPLES
    }, None


def updates(recordings: dict[str, bytes]) -> list[dict]:
    """The Telegram updates that deliver the samples (those with a recording) and the help request."""
    now = int(time.time())
    found = [
        _update(sample.update_id, sample.sender, now, audio={
            "file_id": sample.file_id, "file_unique_id": sample.file_id, "duration": _duration_s(recording),
            "mime_type": "audio/x-wav", "file_name": f"{sample.file_id}.wav", "file_size": len(recording),
        })
        for sample in SAMPLES if (recording := recordings.get(sample.file_id)) is not None
    ]
    update_id, text, sender = HELP_REQUEST
    return found + [_update(update_id, sender, now, text=text)]


def _update(update_id: int, sender: dict, now: int, **content) -> dict:
    message = {"message_id": update_id - 990000, "date": now, "chat": SAMPLE_CHAT, "from": sender, **content}
    return {"update_id": update_id, "message": message}


def _duration_s(wav: bytes) -> int:
    """espeak-ng writes 22050 Hz 16-bit mono, with a placeholder length in the header: count the bytes."""
    return max(1, round((len(wav) - 44) / (22050 * 2)))
