"""Shared fixtures. Everything a test needs is built by code at run time: random-weight
models in the published funasr format, synthesised audio, fresh SQLite databases."""

from __future__ import annotations

import pytest

from bot_bridge.config import load_settings
from bot_bridge.hearing import model_files
from bot_bridge.hearing.model import EmotionModel
from bot_bridge.hearing.model_files import make_random_model
from bot_bridge.hearing.sensevoice_files import make_random_sensevoice
from bot_bridge.hearing.transcriber import Transcriber
from bot_bridge.service import Service

# --- core: a tiny random-weight emotion2vec+ model, settings, the service, the web app ---


@pytest.fixture(autouse=True, scope="session")
def no_hub_downloads():
    """Tests never fetch weights: hub ids resolve from the local cache only, as on a machine offline.

    The default transcribe.model is a hub id; without this, a test service on a
    machine with internet would download SenseVoice (936 MB).
    """
    patch = pytest.MonkeyPatch()
    for hub in model_files.HUB_HOSTS:
        patch.setitem(model_files.HUB_HOSTS, hub, f"{hub}-hub.invalid")  # never resolves (RFC 2606)
    yield
    patch.undo()


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """A RANDOM-WEIGHT tiny emotion2vec+ directory (labels meaningless, architecture real)."""
    return make_random_model("tiny", tmp_path_factory.mktemp("models") / "tiny")


@pytest.fixture(scope="session")
def tiny_model(tiny_model_dir):
    return EmotionModel.load(load_settings(environ={}, model__name=str(tiny_model_dir)).model)


@pytest.fixture(scope="session")
def tiny_sensevoice_dir(tmp_path_factory):
    """A RANDOM-WEIGHT tiny SenseVoice-Small directory (words meaningless, architecture and format real)."""
    return make_random_sensevoice("tiny", tmp_path_factory.mktemp("models") / "sensevoice-tiny")


@pytest.fixture(scope="session")
def tiny_transcriber(tiny_sensevoice_dir):
    settings = load_settings(environ={}, transcribe__model=str(tiny_sensevoice_dir), model__threads=2)
    return Transcriber.load(settings.transcribe, settings.model)


#: What the angry model adds to its head's "angry" logit: with the tiny preset, angry then scores ~0.67 on any voice.
ANGRY_BIAS = {"angry": 4.0}


@pytest.fixture(scope="session")
def angry_model_dir(tmp_path_factory):
    """The tiny random model with its head biased towards angry (``make-random --bias angry=4``), marked as such:
    for tests of what follows an angry-sounding note (cases, alerts) through the real model."""
    return make_random_model("tiny", tmp_path_factory.mktemp("models") / "angry", bias=ANGRY_BIAS)


@pytest.fixture(scope="session")
def angry_model(angry_model_dir):
    return EmotionModel.load(load_settings(environ={}, model__name=str(angry_model_dir)).model)


@pytest.fixture
def settings(tmp_path, tiny_model_dir):
    """Settings isolated from the developer's environment and config file."""
    return load_settings(
        environ={},
        data_dir=str(tmp_path / "data"),
        model__name=str(tiny_model_dir),
        model__threads=2,
    )


@pytest.fixture
def service(settings, tiny_model):
    service = Service(settings, model=tiny_model)
    yield service
    service.close()


@pytest.fixture
def client(service):
    from bot_bridge.web import create_app

    return create_app(service=service).test_client()


# --- audio: synthesised voice notes (builders in tests/audio_fixtures.py) ---


@pytest.fixture(scope="session")
def flac_bombs(tmp_path_factory):
    """10 h of digital silence as ~455 KB FLAC files, built once per session.

    ``{"with_length": Path, "no_length": Path}``: the second has total_samples = 0
    in STREAMINFO, so only counting decoded samples can catch it.
    """
    from tests import audio_fixtures

    folder = tmp_path_factory.mktemp("audio-bombs")
    paths = {}
    for name, with_length in (("with_length", True), ("no_length", False)):
        paths[name] = folder / f"bomb-{name}.flac"
        paths[name].write_bytes(audio_fixtures.flac_bomb(total_samples_in_header=with_length))
    return paths


# --- scale-out: the real PostgreSQL and Redis on loopback (tests/services.py) ---


@pytest.fixture(scope="session")
def postgres_url():
    from tests.services import create_postgres_database, drop_postgres_database

    url = create_postgres_database()
    yield url
    drop_postgres_database(url)


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path):
    """Each test using this runs twice: on a SQLite file and on a fresh PostgreSQL database."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'store.db'}"
        return
    from tests.services import create_postgres_database, drop_postgres_database

    url = create_postgres_database()
    yield url
    drop_postgres_database(url)
