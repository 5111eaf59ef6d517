"""detect_speech() hears speech and only speech; split_at_pauses() cuts long notes in
their silences into contiguous chunks the emotion model can take."""

from __future__ import annotations

import copy
import functools
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import numpy as np
import pytest

from bot_bridge.hearing.audio import decode
from bot_bridge.hearing.vad import SpeechMap, detect_speech, split_at_pauses
from tests import audio_fixtures as fx

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """Silero is 3-8x slower on 2 threads when something else keeps a core busy (see
    bot_bridge/hearing/vad.py); one thread keeps this suite fast on a shared 2-core machine."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@functools.lru_cache(maxsize=None)
def speech_map(seconds: float) -> SpeechMap:
    return detect_speech(fx.speech_clip(seconds))

# --------------------------------------------------------------------------
# detect_speech
# --------------------------------------------------------------------------


@pytest.mark.parametrize("seconds", [3, 10, 30])
def test_speech_is_heard_as_speech(seconds):
    speech = speech_map(seconds)

    truth = sum(end - start for start, end in fx.speech_segments(seconds)) / seconds
    assert speech.ratio > 0.5
    assert speech.ratio == pytest.approx(truth, abs=0.1)  # measured 0.87-0.93 against 0.87-0.92


def test_speech_segments_line_up_with_the_sentences():
    sentences = fx.speech_segments(30)
    found = speech_map(30).segments

    def overlaps(a, b):
        return min(a[1], b[1]) - max(a[0], b[0]) > 0

    assert all(any(overlaps(seg, s) for s in sentences) for seg in found)
    assert all(any(overlaps(s, seg) for seg in found) for s in sentences if s[1] - s[0] > 1)
    assert all(0 <= start < end <= 30 for start, end in found)


@pytest.mark.parametrize("fmt", ["amr", "ogg_opus", "m4a_aac"])
def test_speech_survives_chat_codecs(fmt):
    audio = decode(fx.encode(fx.speech_clip(10), 16000, fmt))
    assert detect_speech(audio.samples).ratio > 0.5


NOT_SPEECH = [
    pytest.param(lambda: fx.silence(10), id="digital-silence"),
    pytest.param(lambda: fx.white_noise(10, level=0.1), id="white-noise"),
    pytest.param(lambda: fx.white_noise(10, level=0.3), id="loud-white-noise"),
    pytest.param(lambda: fx.pink_noise(10, level=0.1), id="pink-noise"),
    pytest.param(lambda: fx.pink_noise(10, level=0.3), id="loud-pink-noise"),
    pytest.param(lambda: fx.chord(10), id="piano-chords"),
    pytest.param(lambda: fx.tone(440, 10), id="sine-tone"),
]


@pytest.mark.parametrize("build", NOT_SPEECH)
def test_silence_noise_and_music_are_not_speech(build):
    assert detect_speech(build()).ratio < 0.1  # measured 0.000 for each


def test_other_sample_rates_are_accepted():
    assert detect_speech(fx.speech_clip(5, sample_rate=8000), 8000).ratio > 0.5
    assert detect_speech(fx.speech_clip(5, sample_rate=48000), 48000).ratio > 0.5


def test_empty_audio_has_no_speech():
    assert detect_speech(np.zeros(0, np.float32)) == SpeechMap(0.0, [])


def test_stereo_arrays_are_refused():
    with pytest.raises(ValueError):
        detect_speech(np.zeros((16000, 2), np.float32))


def test_concurrent_calls_give_the_same_answers_as_one_at_a_time():
    """The Silero model keeps recurrent state; sharing it unguarded would mix up calls."""
    clips = {name: build() for name, build in [
        ("speech", lambda: fx.speech_clip(6)),
        ("noise", lambda: fx.pink_noise(6)),
        ("speech-amr", lambda: decode(fx.encode(fx.speech_clip(6), 16000, "amr")).samples),
    ]}
    expected = {name: detect_speech(x) for name, x in clips.items()}
    got: dict[str, list[SpeechMap]] = {name: [] for name in clips}

    def work(name):
        for _ in range(2):
            got[name].append(detect_speech(clips[name]))

    threads = [threading.Thread(target=work, args=(name,)) for name in clips for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)

    for name in clips:
        assert got[name] == [expected[name]] * 4


def test_torch_thread_count_is_left_as_it_was():
    """``import silero_vad`` sets torch to 1 thread process-wide; detect_speech must undo that."""
    script = textwrap.dedent(
        """
        import sys, torch
        sys.path.insert(0, "tests")
        import audio_fixtures as fx
        from bot_bridge.hearing.vad import detect_speech
        torch.set_num_threads(3)
        detect_speech(fx.speech_clip(1))
        after_vad = torch.get_num_threads()
        import silero_vad  # already imported: no further effect
        print(after_vad, torch.get_num_threads())
        """
    )
    run = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == ["3", "3"]


def test_importing_silero_vad_really_does_change_the_thread_count():
    """Why the restore exists. If a silero-vad upgrade stops doing this, this fails: the restore can go."""
    script = "import torch; torch.set_num_threads(3); import silero_vad; print(torch.get_num_threads())"
    run = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "1"


# --------------------------------------------------------------------------
# split_at_pauses
# --------------------------------------------------------------------------


def chunks_for(segments, duration, max_chunk=30.0):
    return split_at_pauses(SpeechMap(ratio=0.0, segments=segments), duration, max_chunk)


@pytest.mark.parametrize("duration", [0.0, 0.5, 12.0, 30.0])
def test_audio_up_to_the_chunk_length_is_one_chunk(duration):
    assert chunks_for([(0.1, 0.4)], duration) == [(0.0, duration)]


SPLITS = [
    pytest.param(
        [(0, 18), (20, 29), (29.5, 45)], 45.0, [(0.0, 19.0), (19.0, 45.0)],
        id="cut-in-the-middle-of-the-longest-pause",
    ),
    pytest.param(
        [(0, 100)], 100.0, [(0.0, 30.0), (30.0, 60.0), (60.0, 90.0), (90.0, 100.0)],
        id="no-pause-cut-at-the-limit",
    ),
    pytest.param(
        [(1, 40)], 40.0, [(0.0, 30.0), (30.0, 40.0)],
        id="a-pause-only-before-the-speech-is-not-used-for-a-tiny-chunk-of-silence",
    ),
    pytest.param(
        [], 70.0, [(0.0, 22.5), (22.5, 45.0), (45.0, 70.0)],
        id="no-speech-at-all-is-one-long-pause",
    ),
    pytest.param(
        [(0, 10), (11, 25), (25.4, 28.5), (28.6, 50)], 50.0, [(0.0, 25.2), (25.2, 50.0)],
        id="prefers-the-longest-pause-in-the-second-half",
    ),
    pytest.param(
        [(0, 3), (4, 34), (34.5, 60)], 60.0, [(0.0, 3.5), (3.5, 33.5), (33.5, 60.0)],
        id="an-early-pause-beats-cutting-mid-speech",
    ),
]


@pytest.mark.parametrize("segments, duration, expected", SPLITS)
def test_split_examples(segments, duration, expected):
    chunks = chunks_for(segments, duration)
    assert [c for chunk in chunks for c in chunk] == pytest.approx([c for chunk in expected for c in chunk])


def test_split_does_not_change_the_speech_map():
    speech = SpeechMap(0.5, [(0.0, 20.0), (25.0, 60.0)])
    before = copy.deepcopy(speech)
    split_at_pauses(speech, 60.0)
    assert speech == before


def test_split_tolerates_unsorted_overlapping_and_out_of_range_segments():
    chunks = chunks_for([(50, 70), (-1, 10), (5, 20), (65, 80)], 75.0)
    assert_chunk_properties(chunks, [(0, 20), (50, 75)], 75.0, 30.0)


def test_split_refuses_a_non_positive_chunk_length():
    with pytest.raises(ValueError):
        chunks_for([], 10.0, max_chunk=0)


def random_speech(rng: np.random.Generator, duration: float) -> list[tuple[float, float]]:
    segments, at = [], float(rng.uniform(0, 2))
    while at < duration:
        length = float(rng.choice([rng.uniform(0.2, 3), rng.uniform(3, 15), rng.uniform(15, 70)], p=[0.5, 0.4, 0.1]))
        segments.append((at, min(duration, at + length)))
        at += length + float(rng.choice([rng.uniform(0.05, 0.4), rng.uniform(0.4, 3)]))
    return segments


@pytest.mark.parametrize("seed", range(300))
def test_split_properties_hold_for_random_speech(seed):
    rng = np.random.default_rng(seed)
    duration = float(rng.uniform(0.1, 400))
    max_chunk = float(rng.choice([5.0, 10.0, 30.0]))
    segments = random_speech(rng, duration)

    chunks = split_at_pauses(SpeechMap(0.0, segments), duration, max_chunk)

    assert_chunk_properties(chunks, segments, duration, max_chunk)


def assert_chunk_properties(chunks, segments, duration, max_chunk):
    """Contiguous cover of [0, duration]; chunks <= max_chunk; a cut lands in speech only when forced."""
    assert chunks[0][0] == 0.0 and chunks[-1][1] == duration
    assert all(a[1] == b[0] for a, b in zip(chunks, chunks[1:]))
    assert all(0 < end - start <= max_chunk + 1e-9 for start, end in chunks) or duration == 0
    speech = merged(segments, duration)
    for start, cut in chunks[:-1]:
        inside_speech = any(s < cut < e for s, e in speech)
        if inside_speech:
            # forced: no pause begins inside the window, and the cut is at the limit
            assert not any(start < e < start + max_chunk and e < duration for s, e in speech if e > start), (start, cut)
            assert cut == pytest.approx(start + max_chunk)
        elif any(start + max_chunk / 2 < e < start + max_chunk for _, e in speech if e > start):
            assert cut - start >= max_chunk / 2 - 1e-9  # a pause in the second half was available


def merged(segments, duration):
    out: list[list[float]] = []
    for s, e in sorted((max(0.0, s), min(duration, e)) for s, e in segments):
        if e <= s:
            continue
        if out and s <= out[-1][1]:
            out[-1][1] = max(out[-1][1], e)
        else:
            out.append([s, e])
    return [tuple(x) for x in out]


def test_a_three_minute_note_is_cut_only_in_its_pauses():
    seconds = 180

    chunks = split_at_pauses(speech_map(seconds), seconds, 30.0)

    sentences = fx.speech_segments(seconds)
    assert len(chunks) >= 6 and all(end - start <= 30 for start, end in chunks)
    for _, cut in chunks[:-1]:
        assert not any(s < cut < e for s, e in sentences), cut
