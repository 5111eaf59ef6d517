"""decode(): every format a chat platform sends comes out as 16 kHz mono float32 of the
right length and content; every broken or hostile upload is refused quickly, with a
stable code, a bilingual message and one precise log line."""

from __future__ import annotations

import io
import logging
import struct
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import av
import numpy as np
import pytest
import soundfile as sf

from bot_bridge.errors import AudioError
from bot_bridge.hearing.audio import AudioLimits, decode
from tests import audio_fixtures as fx

SECONDS = 6.0
MP4 = "mov,mp4,m4a,3gp,3g2,mj2"
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def speech():
    return fx.speech_clip(SECONDS)


def similarity(decoded: np.ndarray, reference: np.ndarray, max_lag: int = 800) -> float:
    """Peak normalised cross-correlation within +-50 ms (codecs add a few ms of delay)."""
    n = min(len(decoded), len(reference))
    a, b = decoded[:n].astype(np.float64), reference[:n].astype(np.float64)
    size = 1 << int(np.ceil(np.log2(2 * n)))
    xc = np.fft.irfft(np.fft.rfft(a, size) * np.conj(np.fft.rfft(b, size)), size)
    lag = int(np.r_[np.arange(max_lag + 1), np.arange(-max_lag, 0)][np.argmax(np.r_[xc[: max_lag + 1], xc[-max_lag:]])])
    x, y = (a[lag:], b[: n - lag]) if lag >= 0 else (a[: n + lag], b[-lag:])
    return float(np.dot(x, y) / np.sqrt(np.dot(x, x) * np.dot(y, y)))


def rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64))))


# --------------------------------------------------------------------------
# Good inputs
# --------------------------------------------------------------------------

# fmt, container, decoder, source rate, minimum similarity with the source.
# All decode from bytes (a seekable BytesIO), so an M4A with its moov index last
# decodes in full: the ffmpeg-reading-a-pipe trap (empty output, exit 0) does not apply.
GOOD = [
    pytest.param("amr", "amr", "libopencore_amrnb", 8000, 0.80, id="wecom-amr-nb-dtx"),
    pytest.param("3gp_amr", MP4, "libopencore_amrnb", 8000, 0.80, id="android-3gp-amr"),
    pytest.param("ogg_opus", "ogg", "opus", 48000, 0.97, id="telegram-ogg-opus"),
    pytest.param("webm_opus", "matroska,webm", "opus", 48000, 0.97, id="browser-webm-opus-no-duration"),
    pytest.param("m4a_aac", MP4, "aac", 16000, 0.97, id="m4a-aac-moov-first"),
    pytest.param("m4a_aac_moov_end", MP4, "aac", 16000, 0.97, id="slack-m4a-aac-moov-last"),
    pytest.param("m4a_alac", MP4, "alac", 16000, 0.999, id="iphone-m4a-alac"),
    pytest.param("m4a_alac_moov_start", MP4, "alac", 16000, 0.999, id="m4a-alac-moov-first"),
    pytest.param("mp3", "mp3", "mp3float", 16000, 0.97, id="mp3"),
    pytest.param("flac16", "flac", "flac", 16000, 0.999, id="flac-16"),
    pytest.param("flac24", "flac", "flac", 16000, 0.999, id="flac-24"),
    pytest.param("wav_s16", "wav", "pcm_s16le", 16000, 0.999, id="wav-s16"),
    pytest.param("wav_s24", "wav", "pcm_s24le", 16000, 0.999, id="wav-s24"),
    pytest.param("wav_f32", "wav", "pcm_f32le", 16000, 0.999, id="wav-f32"),
    pytest.param("mp4_video", MP4, "aac", 48000, 0.97, id="mp4-h264-video-with-aac"),
    pytest.param("webm_video", "matroska,webm", "opus", 48000, 0.97, id="webm-vp8-video-with-opus"),
    pytest.param("silk", "silk", "silk_v3", 24000, 0.85, id="wechat-silk"),
]


@pytest.mark.parametrize("fmt, container, codec, source_rate, min_similarity", GOOD)
def test_each_format_decodes_to_16k_mono_with_its_full_length_and_content(
    fmt, container, codec, source_rate, min_similarity, speech
):
    data = fx.encode(speech, 16000, fmt)

    audio = decode(data)

    assert audio.sample_rate == 16000
    assert audio.samples.dtype == np.float32 and audio.samples.ndim == 1
    assert audio.samples.flags.c_contiguous
    assert audio.duration_s == pytest.approx(SECONDS, rel=0.02)
    assert audio.duration_s == len(audio.samples) / 16000
    assert (audio.container, audio.codec, audio.source_rate, audio.source_channels) == (container, codec, source_rate, 1)
    assert audio.size_bytes == len(data)
    assert similarity(audio.samples, speech) > min_similarity


@pytest.mark.parametrize("rate", [8000, 16000, 22050, 44100, 48000])
@pytest.mark.parametrize("fmt", ["wav_s16", "wav_s24", "wav_f32"])
@pytest.mark.parametrize("channels", [1, 2])
def test_wav_at_any_rate_and_sample_format_resamples_cleanly(rate, fmt, channels):
    left, right = fx.tone(440, 1.5, rate, 0.4), fx.tone(660, 1.5, rate, 0.2)
    source = np.stack([left, right], axis=1) if channels == 2 else left
    expected = (fx.tone(440, 1.5, 16000, 0.4) + fx.tone(660, 1.5, 16000, 0.2)) / 2 if channels == 2 else fx.tone(440, 1.5, 16000, 0.4)

    audio = decode(fx.encode(source, rate, fmt))

    assert (audio.source_rate, audio.source_channels) == (rate, channels)
    assert len(audio.samples) == round(1.5 * 16000)
    assert similarity(audio.samples, expected) > 0.999
    assert rms(audio.samples) == pytest.approx(rms(expected), rel=0.01)


@pytest.mark.parametrize("fmt", ["wav_s16", "flac24", "m4a_aac", "m4a_alac", "ogg_opus", "mp3", "webm_opus"])
def test_stereo_becomes_the_average_of_left_and_right_not_a_louder_downmix(fmt):
    """(L+R)/2: FFmpeg's own mono downmix would give (L+R)/sqrt(2), 3 dB louder."""
    left, right = fx.tone(440, 3, 48000, 0.4), fx.tone(660, 3, 48000, 0.2)
    expected = (fx.tone(440, 3, 16000, 0.4) + fx.tone(660, 3, 16000, 0.2)) / 2

    audio = decode(fx.encode(np.stack([left, right], axis=1), 48000, fmt))

    assert audio.source_channels == 2
    assert similarity(audio.samples, expected) > 0.98
    assert rms(audio.samples) == pytest.approx(rms(expected), rel=0.05)


def test_amr_with_dtx_silence_frames_decodes_in_full():
    """WeCom notes use DTX: pauses become SID/NO_DATA frames, which FFmpeg's native decoder rejects."""
    sentence = fx.speech_clip(3)
    note = np.concatenate([sentence, fx.silence(4), sentence])
    data = fx.encode(note, 16000, "amr")
    frame_types = amr_frame_types(data)
    assert frame_types.get(8, 0) > 5 and frame_types.get(15, 0) > 50  # SID and NO_DATA frames present

    audio = decode(data)

    assert audio.duration_s == pytest.approx(10.0, rel=0.02)
    assert similarity(audio.samples, note) > 0.8
    assert rms(audio.samples[int(3.5 * 16000) : int(6.5 * 16000)]) < 0.01  # the pause stays a pause


def test_a_path_and_bytes_decode_the_same(tmp_path, speech):
    data = fx.encode(speech, 16000, "m4a_aac_moov_end")
    path = tmp_path / "voice.m4a"
    path.write_bytes(data)

    from_path, from_str, from_bytes = decode(path), decode(str(path)), decode(data)

    assert np.array_equal(from_path.samples, from_bytes.samples)
    assert np.array_equal(from_str.samples, from_bytes.samples)
    assert from_path.size_bytes == len(data)


def test_streamed_wav_with_a_placeholder_length_is_accepted():
    """sox, espeak and ffmpeg write 0x7ffff000 / 0xffffffff when they cannot seek back."""
    for placeholder in (0x7FFFF000, 0xFFFFFFFF):
        assert decode(fx.streamed_wav(2.0, placeholder)).duration_s == pytest.approx(2.0, rel=0.01)


def test_silk_with_an_end_marker_decodes_in_full():
    assert decode(fx.silk_with_end_marker(3.0)).duration_s == pytest.approx(3.0, rel=0.02)


def test_audio_at_exactly_the_length_limit_is_accepted():
    audio = decode(fx.encode(fx.speech_clip(5), 16000, "m4a_aac"), AudioLimits(max_duration_s=5))
    assert audio.duration_s == pytest.approx(5, rel=0.02)


def test_concurrent_decodes_do_not_interfere(speech):
    formats = ["amr", "ogg_opus", "m4a_aac", "mp3", "flac16", "webm_opus"]
    inputs = {fmt: fx.encode(speech, 16000, fmt) for fmt in formats}
    expected = {fmt: decode(data).samples for fmt, data in inputs.items()}
    results: dict[str, np.ndarray] = {}

    def work(fmt):
        for _ in range(3):
            results[fmt] = decode(inputs[fmt]).samples

    threads = [threading.Thread(target=work, args=(fmt,)) for fmt in formats]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)

    for fmt in formats:
        assert np.array_equal(results[fmt], expected[fmt]), fmt


# --------------------------------------------------------------------------
# Bad inputs: each refused with its code, within 2 s, with one log line
# --------------------------------------------------------------------------

HLS_PLAYLIST = b"#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:10,\nfile:///etc/passwd\n#EXT-X-ENDLIST\n"

BAD = [
    pytest.param(fx.empty_file, "empty_file", id="empty-file"),
    pytest.param(fx.text_as_audio, "not_audio", id="text-renamed-as-audio"),
    pytest.param(fx.png_as_audio, "not_audio", id="png-renamed-as-audio"),
    pytest.param(lambda: HLS_PLAYLIST, "not_audio", id="hls-playlist-never-reaches-ffmpeg"),
    pytest.param(lambda: b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n" + bytes(2000), "not_audio", id="pdf"),
    pytest.param(lambda: np.random.default_rng(1).bytes(20000), "not_audio", id="random-bytes"),
    pytest.param(fx.truncated_ogg, "truncated_audio", id="ogg-cut-mid-page"),
    pytest.param(fx.mp4_without_moov, "truncated_audio", id="m4a-without-moov"),
    pytest.param(fx.truncated_mp4, "truncated_audio", id="m4a-cut-inside-mdat"),
    pytest.param(fx.truncated_mp4_open_ended, "truncated_audio", id="m4a-decodes-far-below-its-index"),
    pytest.param(fx.truncated_flac, "truncated_audio", id="flac-decodes-far-below-its-header"),
    pytest.param(fx.wav_claiming_2gib, "truncated_audio", id="wav-header-claims-2gib-holds-1s"),
    pytest.param(fx.zero_sample_wav, "no_samples", id="zero-sample-wav"),
    pytest.param(fx.amr_header_only, "no_samples", id="amr-header-only"),
    pytest.param(fx.nan_wav, "invalid_samples", id="nan-in-float-wav"),
    pytest.param(fx.inf_wav, "invalid_samples", id="inf-in-float-wav"),
    pytest.param(fx.video_without_audio, "no_audio_stream", id="video-without-audio"),
    pytest.param(lambda: fx.encode(fx.tone(440, 0.2), 16000, "wav_s16"), "too_short", id="0.2s-recording"),
    pytest.param(fx.corrupted_m4a, "decode_failed", id="m4a-with-garbage-audio-data"),
    pytest.param(fx.wav_unknown_codec, "decode_failed", id="wav-with-unknown-codec"),
    pytest.param(
        fx.truncated_silk, "truncated_audio", id="silk-cut-mid-packet",
    ),
]


@pytest.mark.parametrize("build, code", BAD)
def test_bad_input_is_refused_with_its_code_within_2s(build, code, caplog):
    data = build()
    caplog.set_level(logging.INFO, logger="bot_bridge.hearing.audio")

    started = time.perf_counter()
    with pytest.raises(AudioError) as refused:
        decode(data)
    elapsed = time.perf_counter() - started

    assert refused.value.code == code, refused.value.detail
    assert elapsed < 2.0
    assert_refusal_is_explained(refused.value, caplog, len(data))


@pytest.mark.parametrize("kind", ["with_length", "no_length"])
def test_ten_hour_flac_bomb_is_refused_as_too_long_within_2s(kind, flac_bombs, caplog):
    caplog.set_level(logging.INFO, logger="bot_bridge.hearing.audio")
    started = time.perf_counter()
    with pytest.raises(AudioError) as refused:
        decode(flac_bombs[kind])
    assert time.perf_counter() - started < 2.0
    assert refused.value.code == "too_long"
    assert "300" in refused.value.message("en") and "300" in refused.value.message("zh")
    assert_refusal_is_explained(refused.value, caplog, flac_bombs[kind].stat().st_size)


@pytest.mark.parametrize("kind", ["with_length", "no_length"])
def test_flac_bomb_is_refused_without_a_large_allocation(kind, flac_bombs):
    """Measured in a fresh process: peak RSS growth while refusing the bomb (uncapped: 4.4 GB)."""
    script = textwrap.dedent(
        """
        import resource, sys, time
        sys.path.insert(0, "tests")
        import audio_fixtures as fx
        from bot_bridge.hearing.audio import decode
        from bot_bridge.errors import AudioError
        decode(fx.encode(fx.tone(440, 1.0), 16000, "flac16"))  # warm up FFmpeg and numpy
        data = open(sys.argv[1], "rb").read()
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        try:
            decode(data)
        except AudioError as e:
            print(e.code, (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024)
        """
    )
    run = subprocess.run(
        [sys.executable, "-c", script, str(flac_bombs[kind])], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert run.returncode == 0, run.stderr
    code, grown_mb = run.stdout.split()
    assert code == "too_long"
    assert float(grown_mb) < 100


@pytest.mark.parametrize("fmt", ["amr", "webm_opus", "mp3"])
def test_too_long_is_caught_by_counting_when_the_container_has_no_length(fmt):
    data = fx.encode(fx.speech_clip(8), 16000, fmt)
    with pytest.raises(AudioError) as refused:
        decode(data, AudioLimits(max_duration_s=5))
    assert refused.value.code == "too_long"
    assert "stopped decoding" in refused.value.detail
    assert refused.value.params == {"limit_s": "5"}


@pytest.mark.parametrize("fmt", ["wav_s16", "flac16", "m4a_aac", "ogg_opus"])
def test_too_long_is_refused_from_the_header_before_decoding(fmt):
    data = fx.encode(fx.speech_clip(8), 16000, fmt)
    with pytest.raises(AudioError) as refused:
        decode(data, AudioLimits(max_duration_s=5))
    assert refused.value.code == "too_long"
    assert "header declares" in refused.value.detail


def test_too_long_silk_is_refused_by_counting_packets():
    data = fx.encode(fx.speech_clip(8), 16000, "silk")
    with pytest.raises(AudioError) as refused:
        decode(data, AudioLimits(max_duration_s=5))
    assert refused.value.code == "too_long"


def test_too_large_bytes_are_refused_before_decoding(speech):
    data = fx.encode(speech, 16000, "wav_s16")
    with pytest.raises(AudioError) as refused:
        decode(data, AudioLimits(max_bytes=100_000))
    assert refused.value.code == "too_large"
    assert refused.value.message("en") == "The file is too large (the limit is 0.1 MB)."


def test_too_large_file_is_refused_from_its_size_without_reading_it(tmp_path):
    path = tmp_path / "huge.ogg"
    with open(path, "wb") as f:
        f.truncate(30_000_000)  # sparse: 30 MB of nothing
    started = time.perf_counter()
    with pytest.raises(AudioError) as refused:
        decode(path)
    assert time.perf_counter() - started < 0.1
    assert refused.value.code == "too_large"
    assert "25 MB" in refused.value.message("en")


def test_too_short_message_names_the_minimum():
    with pytest.raises(AudioError) as refused:
        decode(fx.encode(fx.tone(440, 0.2), 16000, "wav_s16"))
    assert refused.value.message("en") == "The recording is too short (at least 0.3 s is needed)."


def test_silk_is_refused_as_unsupported_when_silk_python_is_missing(monkeypatch):
    data = b"\x02#!SILK_V3" + b"\x05\x00" + bytes(5)
    monkeypatch.setitem(sys.modules, "pysilk", None)  # makes `import pysilk` raise ImportError
    with pytest.raises(AudioError) as refused:
        decode(data)
    assert refused.value.code == "unsupported_silk"


def test_log_line_never_contains_the_file_contents(caplog):
    caplog.set_level(logging.INFO, logger="bot_bridge.hearing.audio")
    with pytest.raises(AudioError):
        decode(b"my password is hunter2, call me at 555-0100\n" * 10)
    assert "hunter2" not in caplog.text
    assert "not_audio" in caplog.text


def assert_refusal_is_explained(error: AudioError, caplog, size: int) -> None:
    """Bilingual message with its parameters filled in, and exactly one operator log line."""
    for language in ("en", "zh"):
        text = error.message(language)
        assert text and "{" not in text
    lines = [r.getMessage() for r in caplog.records if r.name == "bot_bridge.hearing.audio"]
    assert len(lines) == 1, lines
    assert error.code in lines[0] and f"({size} bytes)" in lines[0] and "\n" not in lines[0]


# --------------------------------------------------------------------------
# The fixtures are what they claim to be
# --------------------------------------------------------------------------


def amr_frame_types(data: bytes) -> dict[int, int]:
    sizes = [12, 13, 15, 17, 19, 20, 26, 31, 5, 0, 0, 0, 0, 0, 0, 0]
    counts: dict[int, int] = {}
    at = len(b"#!AMR\n")
    while at < len(data):
        kind = (data[at] >> 3) & 0x0F
        counts[kind] = counts.get(kind, 0) + 1
        at += 1 + sizes[kind]
    return counts


def test_fixture_webm_has_no_duration_like_mediarecorder():
    with av.open(io.BytesIO(fx.encode(fx.tone(440, 2), 16000, "webm_opus"))) as c:
        assert c.duration is None


def test_fixture_m4a_index_positions():
    x = fx.tone(440, 2)
    for fmt, moov_first in [("m4a_aac", True), ("m4a_aac_moov_end", False), ("m4a_alac", False), ("m4a_alac_moov_start", True)]:
        data = fx.encode(x, 16000, fmt)
        assert (data.index(b"moov") < data.index(b"mdat")) == moov_first, fmt


def test_fixture_flac24_is_24_bit_and_mp4_video_has_video():
    assert sf.info(io.BytesIO(fx.encode(fx.tone(440, 1), 16000, "flac24"))).subtype == "PCM_24"
    with av.open(io.BytesIO(fx.encode(fx.tone(440, 1), 16000, "mp4_video"))) as c:
        assert [s.type for s in c.streams] == ["video", "audio"]


def test_fixture_flac_bombs_are_small_and_one_hides_its_length(flac_bombs):
    for kind, path in flac_bombs.items():
        data = path.read_bytes()
        assert len(data) < 500_000
        total_samples = struct.unpack(">Q", data[18:26])[0] & ((1 << 36) - 1)
        assert total_samples == (0 if kind == "no_length" else 576_012_288)


def test_fixture_speech_clip_has_the_requested_length_and_pauses():
    for seconds in (3, 10, 30):
        clip = fx.speech_clip(seconds)
        assert clip.dtype == np.float32 and len(clip) == seconds * 16000
        segments = fx.speech_segments(seconds)
        gaps = [b[0] - a[1] for a, b in zip(segments, segments[1:])]
        assert all(0.3 <= g <= 1.0 for g in gaps)
    assert len(fx.speech_clip(3, sample_rate=48000)) == 3 * 48000
