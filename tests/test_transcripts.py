"""Transcripts: SenseVoice-Small through funasr, beside the emotion, on one decode and one VAD.

Every model here is a RANDOM-WEIGHT tiny one built at run time in the
published format, so the words are meaningless; what is checked is that
they are exactly funasr's words for the same audio, and that they travel
everywhere a result goes (API, result.json, the CLI) without ever reaching
the log.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import re
import time

import pytest
import sentencepiece
import torch
import yaml

from bot_bridge.config import load_settings
from bot_bridge.errors import ModelUnavailable
from bot_bridge.hearing import sensevoice_files
from bot_bridge.hearing.analysis import AnalysisOptions, analyse
from bot_bridge.hearing.model_files import RANDOM_MARKER, SENSEVOICE_BPE
from bot_bridge.hearing.transcriber import EMOTIONS, Transcriber, parse_output
from bot_bridge.hearing.vad import detect_speech, split_at_pauses
from bot_bridge.remembering.results import Result
from bot_bridge.service import Service
from tests.audio_fixtures import encode, speech_clip
from tests.test_api import post
from tests.test_cli import bot_bridge


def funasr_generate(model_dir, samples, language: str = "auto", use_itn: bool = True) -> str:
    """What a user of funasr gets: AutoModel.generate's raw text (tags included), dither off for repeatability."""
    from funasr import AutoModel

    with contextlib.redirect_stdout(io.StringIO()):
        automodel = AutoModel(model=str(model_dir), disable_update=True, device="cpu", ncpu=2, disable_pbar=True,
                              frontend_conf={"dither": 0.0})
    return automodel.generate(input=samples, language=language, use_itn=use_itn)[0]["text"]


def funasr_tags(raw: str) -> tuple[str | None, str | None]:
    """The language and emotion tags in funasr's raw text, as the bot-bridge result names them."""
    tags = re.findall(r"<\|([^|]*)\|>", raw)
    language = next((tag for tag in tags if tag in ("zh", "en", "yue", "ja", "ko", "nospeech")), None)
    emotion = next((tag for tag in tags if tag in EMOTIONS), None)
    return language, None if emotion is None else EMOTIONS[emotion]


def rich(raw: str) -> str:
    from funasr.utils.postprocess_utils import rich_transcription_postprocess

    return rich_transcription_postprocess(raw)


@pytest.fixture
def transcribing_settings(tmp_path, tiny_model_dir, tiny_sensevoice_dir):
    return load_settings(environ={}, data_dir=str(tmp_path / "data"), model__name=str(tiny_model_dir),
                         model__threads=2, transcribe__model=str(tiny_sensevoice_dir))


@pytest.fixture
def transcribing_client(transcribing_settings, tiny_model, tiny_transcriber):
    from bot_bridge.web import create_app

    service = Service(transcribing_settings, model=tiny_model, transcriber=tiny_transcriber)
    yield create_app(service=service).test_client()
    service.close()


# --- parity with funasr ---------------------------------------------------------------


@pytest.mark.parametrize("seconds", [3.0, 9.5])
def test_transcript_text_and_tags_equal_funasr_generate(tiny_sensevoice_dir, tiny_model, tiny_transcriber, seconds):
    samples = speech_clip(seconds)
    raw = funasr_generate(tiny_sensevoice_dir, samples)

    result = analyse(encode(samples, 16000, "wav_f32"), tiny_model, AnalysisOptions(), transcriber=tiny_transcriber)

    transcript = result.transcript
    assert raw and transcript.text == rich(raw)
    assert (transcript.language, transcript.sensevoice_emotion) == funasr_tags(raw)
    assert len(transcript.segments) == 1  # a note of up to 30 s is heard whole, as by generate
    speech = detect_speech(samples).segments
    assert transcript.segments[0].start == pytest.approx(speech[0][0]) and transcript.segments[0].end == pytest.approx(speech[-1][1])


@pytest.mark.parametrize(("language", "itn"), [("zh", False), ("en", True)])
def test_the_language_and_itn_settings_reach_the_network_as_in_generate(tiny_sensevoice_dir, language, itn):
    settings = load_settings(environ={}, transcribe__model=str(tiny_sensevoice_dir), transcribe__language=language,
                             transcribe__itn=itn, model__threads=2)
    transcriber = Transcriber.load(settings.transcribe, settings.model)
    samples = speech_clip(3.0)

    assert transcriber.hear(samples).raw == funasr_generate(tiny_sensevoice_dir, samples, language, itn)


def test_tags_are_read_from_sensevoice_rich_output():
    # The format of SenseVoice's published output: language, emotion, event, text normalisation, words.
    heard = parse_output("<|en|><|ANGRY|><|Laughter|><|withitn|>Where is my refund?")

    assert (heard.language, heard.emotion, heard.event) == ("en", "angry", "Laughter")
    assert heard.text == rich("<|en|><|ANGRY|><|Laughter|><|withitn|>Where is my refund?")
    assert "<|" not in heard.text and "Where is my refund?" in heard.text


# --- long notes: the emotion model's chunks --------------------------------------------


def test_a_long_note_is_transcribed_in_the_emotion_model_chunks_each_with_its_times(
    tiny_sensevoice_dir, tiny_model, tiny_transcriber
):
    samples = speech_clip(16.0)
    options = AnalysisOptions(max_chunk_s=5.0)
    chunks = split_at_pauses(detect_speech(samples), 16.0, options.max_chunk_s)

    result = analyse(encode(samples, 16000, "wav_f32"), tiny_model, options, transcriber=tiny_transcriber)

    segments = result.transcript.segments
    assert len(chunks) >= 3 and len(segments) == len(chunks)
    for (start, end), segment in zip(chunks, segments):
        assert start <= segment.start < segment.end <= end
        assert segment.text == rich(funasr_generate(tiny_sensevoice_dir, samples[int(start * 16000) : int(end * 16000)]))
    assert result.transcript.text == " ".join(segment.text for segment in segments)
    assert {"model", "transcribe"} <= set(result.timings_ms)


def test_a_note_without_speech_has_an_empty_transcript(tiny_model, tiny_transcriber):
    result = analyse(encode(speech_clip(3.0) * 0, 16000, "wav_s16"), tiny_model, transcriber=tiny_transcriber)

    assert result.reason == "no_speech"
    assert (result.transcript.text, result.transcript.segments, result.transcript.language) == ("", [], None)


# --- where the words appear: API, result.json, the stored result, the CLI --------------


def test_the_api_result_and_result_json_carry_the_transcript(transcribing_client, transcribing_settings):
    response = post(transcribing_client, encode(speech_clip(4.0), 16000, "ogg_opus"), "note.ogg")

    assert response.status_code == 201, response.json
    transcript = response.json["transcript"]
    assert transcript["text"] and transcript["segments"][0]["text"]
    assert set(transcript) >= {"text", "language", "segments", "events", "sensevoice_emotion", "model"}
    assert transcript["random_weights"] is True and "MEANINGLESS" in transcript["warning"]
    assert "transcribe" in response.json["timings_ms"]
    assert any("RANDOM WEIGHTS" in line for line in response.json["log"])

    folder = next(transcribing_settings.outputs_dir.iterdir())
    assert json.loads((folder / "result.json").read_text(encoding="utf-8"))["transcript"] == transcript
    assert transcribing_client.get(f"/api/results/{response.json['id']}").json["transcript"] == transcript
    assert Result.from_dict(response.json).to_dict()["transcript"] == transcript  # what a worker hands a web process


def test_transcribe_false_gives_the_emotion_alone(transcribing_client):
    note = encode(speech_clip(3.0), 16000, "wav_s16")
    with_words = post(transcribing_client, note, "note.wav").json
    without = post(transcribing_client, note, "note.wav", transcribe="false").json

    assert without["transcript"] is None and "transcribe" not in without["timings_ms"]
    assert without["scores"] == with_words["scores"]
    assert post(transcribing_client, note, "note.wav", transcribe="perhaps").json["code"] == "invalid_request"


def test_transcripts_are_never_logged(transcribing_client, caplog):
    with caplog.at_level(logging.DEBUG):
        result = post(transcribing_client, encode(speech_clip(3.0), 16000, "wav_s16"), "note.wav").json

    words = [result["transcript"]["text"]] + [segment["text"] for segment in result["transcript"]["segments"]]
    assert all(len(text) > 3 for text in words)
    assert not any(text in caplog.text for text in words)


def test_the_openapi_document_describes_the_transcript_and_the_flag(client):
    document = client.get("/api/openapi.json").json
    predict = document["paths"]["/api/predict"]["post"]

    assert "transcribe" in predict["requestBody"]["content"]["multipart/form-data"]["schema"]["properties"]
    result = predict["responses"]["201"]["content"]["application/json"]["schema"]
    assert set(result["properties"]["transcript"]["required"]) == {
        "text", "language", "segments", "events", "sensevoice_emotion", "model"}


def test_predict_shows_the_words_and_says_they_are_meaningless(tmp_path, tiny_model_dir, tiny_sensevoice_dir):
    note = tmp_path / "note.wav"
    note.write_bytes(encode(speech_clip(3.0), 16000, "wav_s16"))

    run = bot_bridge("predict", str(note), model_dir=tiny_model_dir, data_dir=tmp_path / "d",
                     BOT_BRIDGE_TRANSCRIBE_MODEL=str(tiny_sensevoice_dir))

    assert run.returncode == 0, run.stderr
    assert "said (RANDOM WEIGHTS: meaningless): " in run.stdout
    words = run.stdout.rsplit("said (RANDOM WEIGHTS: meaningless): ", 1)[1].strip()
    assert words and words not in run.stderr


def test_make_random_refuses_a_preset_of_the_other_kind(tmp_path):
    run = bot_bridge("model", "make-random", "--kind", "sensevoice", "--preset", "large", str(tmp_path / "x"),
                     model_dir="unused", data_dir=tmp_path)

    assert run.returncode == 2 and "sensevoice has the presets tiny, small" in run.stderr
    assert not (tmp_path / "x").exists()


# --- without SenseVoice's weights: emotions as before, and how to add transcripts -------


def test_missing_weights_leave_emotions_untouched_and_readyz_says_how_to_add_transcripts(
    tmp_path, tiny_model_dir, tiny_model, caplog
):
    from bot_bridge.web import create_app

    settings = load_settings(environ={}, data_dir=str(tmp_path / "data"), model__name=str(tiny_model_dir),
                             transcribe__model=str(tmp_path / "no-sensevoice-here"))
    without_transcripts = load_settings(environ={}, data_dir=str(tmp_path / "off"), model__name=str(tiny_model_dir),
                                        transcribe__enabled=False)
    note = encode(speech_clip(3.0), 16000, "wav_s16")
    service = Service(settings, model=tiny_model)
    client = create_app(service=service).test_client()

    with caplog.at_level(logging.WARNING):
        first, second = post(client, note, "a.wav").json, post(client, note, "b.wav").json
    reference = Service(without_transcripts, model=tiny_model)
    plain = create_app(service=reference).test_client()
    expected = post(plain, note, "c.wav").json

    for result in (first, second):
        assert result["transcript"] is None
        assert (result["emotion"], result["scores"]) == (expected["emotion"], expected["scores"])
        assert any("no transcript" in line for line in result["log"])
    assert caplog.text.count("no transcripts: SenseVoice") == 1  # tried once, not per note

    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json["state"] == "ready"
    transcriber = ready.json["transcriber"]
    assert transcriber["state"] == "failed" and "does not exist" in transcriber["detail"]
    assert "bot-bridge model download iic/SenseVoiceSmall" in transcriber["fix"]
    assert "BOT_BRIDGE_TRANSCRIBE_MODEL" in transcriber["fix"]
    assert plain.get("/readyz").json["transcriber"]["state"] == "off"
    service.close()
    reference.close()


def test_the_default_hub_id_offline_fails_fast_and_names_the_fix(tmp_path, monkeypatch):
    monkeypatch.setenv("MODELSCOPE_CACHE", str(tmp_path / "empty-cache"))
    settings = load_settings(environ={})

    started = time.perf_counter()
    with pytest.raises(ModelUnavailable) as raised:
        Transcriber.load(settings.transcribe, settings.model)

    assert time.perf_counter() - started < 5
    assert "bot-bridge model download iic/SenseVoiceSmall" in raised.value.detail
    assert "BOT_BRIDGE_TRANSCRIBE_MODEL" in raised.value.detail and "transcribe.model" in raised.value.detail


# --- the random-weight directory: the published format ---------------------------------


def test_make_random_sensevoice_writes_the_published_format_marked_random(tiny_sensevoice_dir, tiny_transcriber):
    assert "MEANINGLESS" in (tiny_sensevoice_dir / RANDOM_MARKER).read_text(encoding="utf-8")
    assert tiny_transcriber.info.random_weights is True
    assert (tiny_sensevoice_dir / "model.pt").stat().st_size < 6_000_000
    metas = json.loads((tiny_sensevoice_dir / "configuration.json").read_text(encoding="utf-8"))["file_path_metas"]
    assert metas == {"init_param": "model.pt", "config": "config.yaml", "tokenizer_conf": {"bpemodel": SENSEVOICE_BPE},
                     "frontend_conf": {"cmvn_file": "am.mvn"}}
    config = yaml.safe_load((tiny_sensevoice_dir / "config.yaml").read_text(encoding="utf-8"))
    assert (config["model"], config["encoder"], config["tokenizer"]) == (
        "SenseVoiceSmall", "SenseVoiceEncoderSmall", "SentencepiecesTokenizer")

    bpe = sentencepiece.SentencePieceProcessor(model_file=str(tiny_sensevoice_dir / SENSEVOICE_BPE))
    assert bpe.get_piece_size() == 25055
    for tag, token_id in {"zh": 24884, "en": 24885, "ko": 24896, "HAPPY": 25001, "NEUTRAL": 25004,
                          "EMO_UNKNOWN": 25009, "withitn": 25016, "woitn": 25017}.items():
        assert bpe.encode(f"<|{tag}|>") == [token_id]
    assert bpe.decode([24884, 25003, 24993, 25016]) == "<|zh|><|ANGRY|><|Speech|><|withitn|>"


def test_the_small_preset_has_the_published_size():
    with torch.device("meta"):
        network = sensevoice_files.build_network(sensevoice_files.sensevoice_config("small"))
    assert sum(p.numel() for p in network.parameters()) == 233_999_167


def test_a_checkpoint_that_does_not_fit_the_config_is_refused(tmp_path, tiny_sensevoice_dir):
    import shutil

    deeper = tmp_path / "deeper"
    shutil.copytree(tiny_sensevoice_dir, deeper)
    config = yaml.safe_load((deeper / "config.yaml").read_text(encoding="utf-8"))
    config["encoder_conf"]["num_blocks"] = 3  # the checkpoint has 2
    (deeper / "config.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    settings = load_settings(environ={}, transcribe__model=str(deeper), model__threads=2)

    with pytest.raises(ModelUnavailable, match=r"weights missing.*encoders\.1"):
        Transcriber.load(settings.transcribe, settings.model)
