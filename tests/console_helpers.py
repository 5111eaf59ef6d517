"""Signing in to the console and analysing through it, as its pages do, with Flask's test client."""

from __future__ import annotations

import io
import re
import time

import pytest

from bot_bridge.web import create_app
from bot_bridge.web.console_access import ROLE_MARK
from tests.audio_fixtures import encode, speech_clip

PASSWORD = "correct horse battery"
JOB_DEADLINE_S = 60


@pytest.fixture
def app(settings, service):
    settings.console.password = PASSWORD
    return create_app(service=service)


@pytest.fixture
def browser(app):
    """A signed-in test client."""
    client = app.test_client()
    sign_in(client)
    return client


def csrf_from(html: str) -> str:
    match = re.search(r'name="csrf-token" content="([^"]+)"', html)
    assert match, "every console page carries its CSRF token"
    return match.group(1)


def sign_in(client, password: str = PASSWORD, next_page: str | None = None, name: str | None = None):
    """Sign in as ``name`` (none: the form's default, ``admin``, whose password the shared one became)."""
    token = csrf_from(client.get("/login").get_data(as_text=True))
    data = {"password": password, "csrf_token": token, **({"username": name} if name else {})}
    if next_page:
        data["next"] = next_page
    return client.post("/login", data=data)


def page_token(client) -> str:
    return csrf_from(client.get("/").get_data(as_text=True))


def start_analysis(client, audio: bytes, name: str = "note.wav", **form):
    """``POST /analyse`` as the analysis page sends it: the response that names the job."""
    data = {"file": (io.BytesIO(audio), name), "origin": "console", **form}
    return client.post("/analyse", data=data, headers={"X-CSRF-Token": page_token(client)})


def analyse(client, audio: bytes, name: str = "note.wav", **form) -> dict:
    """Start an analysis and follow its job to the end, as the page does: the job's last answer."""
    started = start_analysis(client, audio, name, **form)
    assert started.status_code == 202, started.get_json()
    return follow_job(client, started.get_json()["url"])


def follow_job(client, url: str, deadline_s: float = JOB_DEADLINE_S) -> dict:
    deadline = time.monotonic() + deadline_s
    while True:
        answer = client.get(url).get_json()
        if answer["state"] != "running":
            return answer
        assert time.monotonic() < deadline, f"the analysis did not finish in {deadline_s} s: {answer}"
        time.sleep(0.05)


def wav(seconds: float = 3.0) -> bytes:
    return encode(speech_clip(seconds), 16000, "wav_s16")


def required_role(app, endpoint: str) -> str | None:
    """The least role a console view is marked for (``console_access.allow``); None: not marked."""
    return getattr(app.view_functions[endpoint], ROLE_MARK, None)
