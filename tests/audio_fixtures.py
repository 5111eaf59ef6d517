"""Realistic test audio, built by code: no binary files live in the repository.

Three kinds of helpers:

* Signals, as float32 numpy arrays: ``speech_clip`` (real synthetic speech from
  espeak-ng, with natural pauses), ``tone``, ``chord``, ``pink_noise``,
  ``white_noise``, ``silence``.
* ``encode(samples, sample_rate, fmt)``: the bytes a chat platform would send,
  for every format in ``FORMATS``.
* Bad inputs: one builder per way an upload can be broken or hostile
  (``truncated_ogg``, ``flac_bomb``, ``png_as_audio`` ...).

Speech comes from espeak-ng (Debian package ``espeak-ng``): real phonemes,
which Silero VAD hears as speech (ratio 0.87-0.93, matching where the
sentences are), while tones, chords and noise come out at 0.000. Each
sentence is synthesised once per process (~20 ms each), so clips are cheap.
"""

from __future__ import annotations

import functools
import io
import os
import shutil
import struct
import subprocess
import tempfile
import zlib
from fractions import Fraction

import av
import numpy as np
import soundfile as sf
import soxr

__all__ = [
    "FORMATS",
    "amr_header_only",
    "chord",
    "corrupted_m4a",
    "empty_file",
    "encode",
    "flac_bomb",
    "inf_wav",
    "mp4_without_moov",
    "nan_wav",
    "pink_noise",
    "png_as_audio",
    "silence",
    "speech_clip",
    "speech_segments",
    "streamed_wav",
    "silk_with_end_marker",
    "text_as_audio",
    "tone",
    "truncated_flac",
    "truncated_mp4",
    "truncated_mp4_open_ended",
    "truncated_ogg",
    "truncated_silk",
    "video_without_audio",
    "wav_claiming_2gib",
    "wav_unknown_codec",
    "white_noise",
    "zero_sample_wav",
]

# --------------------------------------------------------------------------
# Signals
# --------------------------------------------------------------------------

_SENTENCES: tuple[tuple[str, str], ...] = (
    ("en-us", "I can't believe it, this is wonderful news!"),
    ("cmn", "你好，我刚刚看到你的消息，马上给你回电话。"),
    ("en-us+f3", "Please call me back when you get this message."),
    ("en-gb", "The meeting has been moved to three o'clock tomorrow afternoon."),
    ("cmn", "这件事情让我非常生气，你们为什么不早点告诉我？"),
    ("en-us+m3", "Honestly, I am a little tired today, but it is fine."),
    ("en-us+f2", "Could you send me the report before Friday?"),
    ("cmn", "谢谢你的帮助，我真的很开心。"),
    ("en-gb+f4", "We finally finished the project. Thank you all so much."),
    ("en-us", "Why is the delivery late again? I have been waiting all week."),
)
_SPEECH_RATE = 16000


def speech_clip(seconds: float, sample_rate: int = 16000) -> np.ndarray:
    """``seconds`` of speech, float32 mono: sentences with 0.3-1 s pauses between them.

    Deterministic for a given length. English and Mandarin sentences in a few
    espeak-ng voices; peak level about -6 dBFS. Needs the ``espeak-ng`` binary.
    """
    return _resampled(_speech_layout(float(seconds))[0], _SPEECH_RATE, sample_rate)


def speech_segments(seconds: float) -> list[tuple[float, float]]:
    """Where ``speech_clip(seconds)`` actually speaks: (start_s, end_s) per sentence."""
    return list(_speech_layout(float(seconds))[1])


def tone(freq_hz: float, seconds: float, sample_rate: int = 16000, amplitude: float = 0.5) -> np.ndarray:
    t = np.arange(round(seconds * sample_rate)) / sample_rate
    return (amplitude * np.sin(2 * np.pi * freq_hz * t)).astype(np.float32)


def chord(seconds: float, sample_rate: int = 16000) -> np.ndarray:
    """Music-like: a piano-ish progression (C, Am, F, G), one struck triad per second."""
    triads = ((261.6, 329.6, 392.0), (220.0, 261.6, 329.6), (174.6, 220.0, 261.6), (196.0, 246.9, 293.7))
    beat = sample_rate
    t = np.arange(beat) / sample_rate
    envelope = np.exp(-3.0 * t)
    out = np.zeros(round(seconds * sample_rate), np.float64)
    for i, start in enumerate(range(0, len(out), beat)):
        note = sum(
            sum(np.sin(2 * np.pi * f * h * t) / h**1.5 for h in (1, 2, 3, 4)) for f in triads[i % len(triads)]
        )
        n = min(beat, len(out) - start)
        out[start : start + n] = (note * envelope)[:n]
    return (0.5 * out / np.max(np.abs(out))).astype(np.float32)


def white_noise(seconds: float, sample_rate: int = 16000, level: float = 0.1, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (level * rng.standard_normal(round(seconds * sample_rate))).astype(np.float32)


def pink_noise(seconds: float, sample_rate: int = 16000, level: float = 0.1, seed: int = 0) -> np.ndarray:
    """1/f noise (shaped in the frequency domain), RMS ``level``."""
    n = round(seconds * sample_rate)
    rng = np.random.default_rng(seed)
    spectrum = np.fft.rfft(rng.standard_normal(n))
    f = np.fft.rfftfreq(n, 1 / sample_rate)
    spectrum[1:] /= np.sqrt(f[1:])
    spectrum[0] = 0
    x = np.fft.irfft(spectrum, n)
    return (level * x / np.sqrt(np.mean(x**2))).astype(np.float32)


def silence(seconds: float, sample_rate: int = 16000) -> np.ndarray:
    return np.zeros(round(seconds * sample_rate), np.float32)


@functools.lru_cache(maxsize=32)
def _speech_layout(seconds: float) -> tuple[np.ndarray, tuple[tuple[float, float], ...]]:
    sr = _SPEECH_RATE
    total = round(seconds * sr)
    rng = np.random.default_rng(int(seconds * 1000))
    parts = [np.zeros(int(0.25 * sr), np.float32)]
    segments = []
    pos = len(parts[0])
    i = int(rng.integers(len(_SENTENCES)))
    while pos < total:
        voiced = _sentence(*_SENTENCES[i % len(_SENTENCES)])
        segments.append((pos / sr, min(pos + len(voiced), total) / sr))
        pause = np.zeros(int(rng.uniform(0.3, 1.0) * sr), np.float32)
        parts += [voiced, pause]
        pos += len(voiced) + len(pause)
        i += 1
    clip = np.concatenate(parts)[:total].copy()
    fade = min(len(clip), int(0.02 * sr))
    clip[len(clip) - fade :] *= np.linspace(1, 0, fade, dtype=np.float32)
    clip.setflags(write=False)
    return clip, tuple(segments)


@functools.lru_cache(maxsize=None)
def _sentence(voice: str, text: str) -> np.ndarray:
    """One sentence from espeak-ng at 16 kHz, leading/trailing silence trimmed."""
    exe = shutil.which("espeak-ng")
    if exe is None:
        raise RuntimeError("speech fixtures need espeak-ng: apt-get install -y espeak-ng")
    wav = subprocess.run(
        [exe, "-v", voice, "-s", "165", "--stdout", text], check=True, capture_output=True, timeout=30
    ).stdout
    # espeak writes a streamed WAV (length placeholder 0x7ffff000), so read the PCM directly.
    rate = struct.unpack_from("<I", wav, 24)[0]
    pcm = np.frombuffer(wav[wav.index(b"data") + 8 :], "<i2").astype(np.float32) / 32768
    voiced = np.flatnonzero(np.abs(pcm) > 1e-3)
    pcm = pcm[voiced[0] : voiced[-1] + 1]
    x = soxr.resample(pcm, rate, _SPEECH_RATE).astype(np.float32)
    return 0.5 * x / np.max(np.abs(x))


def _resampled(x: np.ndarray, rate: int, target: int) -> np.ndarray:
    if rate == target:
        return np.array(x, np.float32)
    return soxr.resample(x, rate, target, quality="VHQ").astype(np.float32)


# --------------------------------------------------------------------------
# Encoders
# --------------------------------------------------------------------------

FORMATS: dict[str, str] = {
    "amr": "AMR-NB 12.2 kbit/s, 8 kHz, DTX on (SID/NO_DATA frames in pauses), as WeCom voice notes",
    "3gp_amr": "AMR-NB in 3GP (an MP4 relative), as Android voice recorders",
    "ogg_opus": "Opus in Ogg, 48 kHz, as Telegram voice notes",
    "webm_opus": "Opus in WebM written as a live stream: no duration, no cues, as browser MediaRecorder",
    "m4a_aac": "AAC-LC 64 kbit/s per channel in M4A, index (moov) before the data, with a priming edit list",
    "m4a_aac_moov_end": "AAC-LC in M4A, index (moov) after the data, as Slack and many phones",
    "m4a_alac": "ALAC (Apple Lossless) in M4A, index after the data, as iPhone Voice Memos (lossless)",
    "m4a_alac_moov_start": "ALAC in M4A, index before the data",
    "mp3": "MP3 (LAME), 64 kbit/s per channel",
    "flac16": "FLAC 16-bit",
    "flac24": "FLAC 24-bit",
    "wav_s16": "WAV PCM 16-bit",
    "wav_s24": "WAV PCM 24-bit",
    "wav_f32": "WAV IEEE float 32-bit",
    "mp4_video": "MP4 with an H.264 video track and an AAC audio track",
    "webm_video": "WebM with a VP8 video track and an Opus audio track",
    "silk": "WeChat personal-chat SILK v3 (\\x02#!SILK_V3), 24 kHz",
}

_AAC_RATES = (8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000)
_MP3_RATES = (8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000)


def encode(samples: np.ndarray, sample_rate: int, fmt: str) -> bytes:
    """Encode float samples (shape (n,) mono or (n, channels)) as ``fmt`` (a key of ``FORMATS``).

    Codecs with fixed rates resample first: AMR to 8 kHz, Opus to 48 kHz, SILK
    to 24 kHz (AMR and SILK also mix to mono); AAC and MP3 keep ``sample_rate``
    when the codec allows it, else use 48 / 44.1 kHz. Lossless formats keep
    ``sample_rate`` as it is.
    """
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; choose from {sorted(FORMATS)}")
    x = np.asarray(samples, np.float32)
    if x.ndim == 1:
        x = x[:, None]
    if fmt.startswith("wav_") or fmt.startswith("flac"):
        subtype = {"wav_s16": "PCM_16", "wav_s24": "PCM_24", "wav_f32": "FLOAT", "flac16": "PCM_16", "flac24": "PCM_24"}
        out = io.BytesIO()
        sf.write(out, x, sample_rate, format="WAV" if fmt.startswith("wav") else "FLAC", subtype=subtype[fmt])
        return out.getvalue()
    if fmt == "amr":
        return _pyav_encode(_mono(x), sample_rate, "amr", "libopencore_amrnb", 8000, bit_rate=12200, options={"dtx": "1"})
    if fmt == "3gp_amr":
        return _pyav_encode(_mono(x), sample_rate, "3gp", "libopencore_amrnb", 8000, bit_rate=12200, options={"dtx": "1"})
    if fmt == "ogg_opus":
        return _pyav_encode(x, sample_rate, "ogg", "libopus", 48000, bit_rate=32000)
    if fmt == "webm_opus":
        return _pyav_encode(x, sample_rate, "webm", "libopus", 48000, bit_rate=32000, seekable=False)
    if fmt.startswith("m4a_"):
        codec = "aac" if "aac" in fmt else "alac"
        rate = sample_rate if codec == "alac" or sample_rate in _AAC_RATES else 48000
        faststart = fmt in ("m4a_aac", "m4a_alac_moov_start")
        bit_rate = 64000 * x.shape[1] if codec == "aac" else None
        data = _pyav_encode(x, sample_rate, "ipod", codec, rate, bit_rate=bit_rate, faststart=faststart)
        return _with_aac_priming(data, rate) if codec == "aac" else data
    if fmt == "mp3":
        rate = sample_rate if sample_rate in _MP3_RATES else 44100
        return _pyav_encode(x, sample_rate, "mp3", "libmp3lame", rate, bit_rate=64000 * x.shape[1])
    if fmt == "mp4_video":
        return _pyav_encode(x, sample_rate, "mp4", "aac", 48000, bit_rate=64000, video="h264")
    if fmt == "webm_video":
        return _pyav_encode(x, sample_rate, "webm", "libopus", 48000, bit_rate=32000, video="libvpx")
    if fmt == "silk":
        import pysilk

        pcm = (np.clip(_resampled(_mono(x)[:, 0], sample_rate, 24000), -1, 1) * 32767).astype("<i2")
        out = io.BytesIO()
        pysilk.encode(io.BytesIO(pcm.tobytes()), out, 24000, 24000, tencent=True)
        return out.getvalue()
    raise AssertionError(fmt)


def _mono(x: np.ndarray) -> np.ndarray:
    return x.mean(axis=1, keepdims=True) if x.shape[1] > 1 else x


class _NonSeekableSink:
    """A write-only sink: muxers cannot go back to fill in duration or cues."""

    def __init__(self) -> None:
        self.data = bytearray()

    def write(self, b: bytes) -> int:
        self.data += b
        return len(b)


def _pyav_encode(
    x: np.ndarray,
    rate: int,
    container: str,
    codec: str,
    codec_rate: int,
    bit_rate: int | None = None,
    options: dict | None = None,
    seekable: bool = True,
    faststart: bool = False,
    video: str | None = None,
) -> bytes:
    channels = x.shape[1]
    if codec_rate != rate:
        x = soxr.resample(x, rate, codec_rate, quality="VHQ").astype(np.float32)
        rate = codec_rate
    layout = {1: "mono", 2: "stereo"}[channels]
    tmpdir = None
    if faststart:  # the faststart pass re-reads the output, so it needs a real file
        tmpdir = tempfile.mkdtemp(prefix="audio-fixture-")
        target: object = os.path.join(tmpdir, "out." + container)
    else:
        target = io.BytesIO() if seekable else _NonSeekableSink()
    try:
        with av.open(target, "w", format=container, options={"movflags": "faststart"} if faststart else {}) as out:
            vstream = None
            if video:
                vstream = out.add_stream(video, rate=10)
                vstream.width, vstream.height, vstream.pix_fmt = 64, 64, "yuv420p"
            astream = out.add_stream(codec, rate=rate, options=options or {})
            astream.layout = layout
            if bit_rate:
                astream.codec_context.bit_rate = bit_rate
            if vstream is not None:
                seconds = len(x) / rate
                for i in range(max(1, int(seconds * 10))):
                    img = np.full((64, 64, 3), (i * 7) % 256, np.uint8)
                    frame = av.VideoFrame.from_ndarray(img, format="rgb24")
                    frame.pts, frame.time_base = i, Fraction(1, 10)
                    for p in vstream.encode(frame):
                        out.mux(p)
                for p in vstream.encode(None):
                    out.mux(p)
            frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(x.T), format="fltp", layout=layout)
            frame.sample_rate = rate
            frame.pts, frame.time_base = 0, Fraction(1, rate)
            for p in astream.encode(frame):
                out.mux(p)
            for p in astream.encode(None):
                out.mux(p)
        if tmpdir:
            with open(target, "rb") as f:  # type: ignore[arg-type]
                return f.read()
        return bytes(target.data) if isinstance(target, _NonSeekableSink) else target.getvalue()  # type: ignore[union-attr]
    finally:
        if tmpdir:
            shutil.rmtree(tmpdir, ignore_errors=True)


def _with_aac_priming(data: bytes, rate: int) -> bytes:
    """Write the encoder delay into the M4A edit list, as iTunes-style encoders do.

    FFmpeg's AAC encoder primes 1024 samples, but PyAV does not pass that to the
    muxer, so the edit list says "start at 0" and a decoder would play 64 ms of
    priming at 16 kHz. Real phone recordings carry the right edit list.
    """
    b = bytearray(data)
    at = b.find(b"elst")
    if at < 0:
        return data
    # elst: type, version+flags, entry count, then (segment duration, media time, rate) per entry.
    media_time = at + 16
    if struct.unpack_from(">i", b, media_time)[0] == 0:
        struct.pack_into(">i", b, media_time, 1024)
        seg = struct.unpack_from(">I", b, at + 12)[0]
        # the movie timescale (mvhd) is 1000 for PyAV's muxer; trim the priming from the shown length
        struct.pack_into(">I", b, at + 12, max(0, seg - round(1024 * 1000 / rate)))
    return bytes(b)


# --------------------------------------------------------------------------
# Bad and hostile inputs
# --------------------------------------------------------------------------


def empty_file() -> bytes:
    return b""


def text_as_audio() -> bytes:
    """A chat message saved as voice.ogg."""
    return "你好！This is a text note, renamed voice.ogg by mistake.\n第二行。\n".encode() * 20


def png_as_audio() -> bytes:
    """A small, valid PNG image (a screenshot sent as a voice note)."""
    width = height = 32
    raw = b"".join(b"\0" + bytes([200, 30, 30]) * width for _ in range(height))

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


def amr_header_only() -> bytes:
    """The AMR magic and nothing else: what a failed WeCom download can leave."""
    return b"#!AMR\n"


def zero_sample_wav() -> bytes:
    out = io.BytesIO()
    sf.write(out, np.zeros(0, np.float32), 16000, format="WAV", subtype="PCM_16")
    return out.getvalue()


def nan_wav(seconds: float = 2.0) -> bytes:
    """Float WAV whose middle holds NaN samples."""
    x = tone(440, seconds)
    x[len(x) // 2 : len(x) // 2 + 100] = np.nan
    return encode(x, 16000, "wav_f32")


def inf_wav(seconds: float = 2.0) -> bytes:
    x = tone(440, seconds)
    x[len(x) // 3] = np.inf
    return encode(x, 16000, "wav_f32")


def wav_claiming_2gib(seconds: float = 1.0) -> bytes:
    """A 16 kHz s16 WAV holding ``seconds`` whose header claims 2 GiB of data."""
    b = bytearray(encode(tone(440, seconds), 16000, "wav_s16"))
    data = b.index(b"data")
    struct.pack_into("<I", b, data + 4, 2**31)
    struct.pack_into("<I", b, 4, 2**31 + data + 8 - 8)
    return bytes(b)


def streamed_wav(seconds: float = 2.0, placeholder: int = 0x7FFFF000) -> bytes:
    """A valid WAV written to a pipe: the length fields hold a placeholder (sox/espeak use 0x7ffff000)."""
    b = bytearray(encode(speech_clip(seconds), 16000, "wav_s16"))
    data = b.index(b"data")
    struct.pack_into("<I", b, data + 4, placeholder)
    struct.pack_into("<I", b, 4, (placeholder + data) & 0xFFFFFFFF)
    return bytes(b)


def truncated_ogg(seconds: float = 5.0, keep: float = 0.6) -> bytes:
    """Telegram voice note cut off mid-upload: ends inside an Ogg page."""
    data = encode(speech_clip(seconds), 16000, "ogg_opus")
    return data[: int(len(data) * keep)]


def mp4_without_moov(seconds: float = 5.0) -> bytes:
    """M4A cut before its index (moov at the end never arrived)."""
    data = encode(speech_clip(seconds), 16000, "m4a_aac_moov_end")
    return data[: data.index(b"moov") - 4]


def truncated_mp4(seconds: float = 10.0, keep: float = 0.4) -> bytes:
    """M4A with its index first, cut inside the audio data."""
    data = encode(speech_clip(seconds), 16000, "m4a_aac")
    return data[: int(len(data) * keep)]


def truncated_mp4_open_ended(seconds: float = 10.0, keep: float = 0.4) -> bytes:
    """Like ``truncated_mp4``, but the data box says "to the end of the file" (size 0).

    Nothing in the box structure shows the cut; only the index (10 s) against
    what decodes (4 s) does.
    """
    b = bytearray(truncated_mp4(seconds, keep))
    struct.pack_into(">I", b, b.index(b"mdat") - 4, 0)
    return bytes(b)


def truncated_flac(seconds: float = 6.0, keep: float = 0.5) -> bytes:
    """FLAC whose header gives the length (total_samples), cut in half."""
    data = encode(speech_clip(seconds), 16000, "flac16")
    return data[: int(len(data) * keep)]


def corrupted_m4a(seconds: float = 4.0) -> bytes:
    """A complete M4A whose audio data was overwritten with random bytes."""
    data = bytearray(encode(speech_clip(seconds), 16000, "m4a_aac"))
    start = data.index(b"mdat") + 4
    data[start:] = np.random.default_rng(7).bytes(len(data) - start)
    return bytes(data)


def wav_unknown_codec(seconds: float = 1.0) -> bytes:
    """A WAV whose format tag (0x1234) names no codec FFmpeg knows."""
    b = bytearray(encode(tone(440, seconds), 16000, "wav_s16"))
    struct.pack_into("<H", b, 20, 0x1234)
    return bytes(b)


def silk_with_end_marker(seconds: float = 3.0) -> bytes:
    """SILK as some writers end it: a 0xFFFF packet length after the last packet."""
    return encode(speech_clip(seconds), 16000, "silk") + b"\xff\xff"


def truncated_silk(seconds: float = 3.0) -> bytes:
    data = encode(speech_clip(seconds), 16000, "silk")
    return data[: len(data) // 2 + 1]


def video_without_audio(seconds: float = 2.0) -> bytes:
    """An MP4 with an H.264 track and no audio track."""
    out = io.BytesIO()
    with av.open(out, "w", format="mp4") as c:
        s = c.add_stream("h264", rate=10)
        s.width, s.height, s.pix_fmt = 64, 64, "yuv420p"
        for i in range(int(seconds * 10)):
            frame = av.VideoFrame.from_ndarray(np.full((64, 64, 3), i * 9 % 256, np.uint8), format="rgb24")
            frame.pts, frame.time_base = i, Fraction(1, 10)
            for p in s.encode(frame):
                c.mux(p)
        for p in s.encode(None):
            c.mux(p)
    return out.getvalue()


def flac_bomb(hours: float = 10.0, total_samples_in_header: bool = True, sample_rate: int = 16000) -> bytes:
    """``hours`` of digital silence as a ~470 KB FLAC (16 kHz, 16-bit, mono).

    Built frame by frame instead of encoded (encoding 10 h takes ~10 s and gives
    6.8 MB): each 16384-sample frame is a CONSTANT subframe of value 0, 13
    bytes. With ``total_samples_in_header=False`` STREAMINFO says "length
    unknown" (total_samples = 0), as a streaming encoder writes it.
    """
    rate_codes = {8000: 0b0100, 16000: 0b0101, 22050: 0b0110, 24000: 0b0111, 32000: 0b1000, 44100: 0b1001, 48000: 0b1010}
    block = 16384
    frames = -(-round(hours * 3600 * sample_rate) // block)
    total = frames * block if total_samples_in_header else 0
    info = struct.pack(">HH", block, block) + b"\0\0\0" + b"\0\0\0"
    # 20-bit rate, 3-bit channels-1 (0), 5-bit bits-1 (15), 36-bit total samples, then MD5 (0 = not set).
    packed = (sample_rate << 44) | (0 << 41) | (15 << 36) | total
    info += packed.to_bytes(8, "big") + b"\0" * 16
    out = bytearray(b"fLaC" + bytes([0x80]) + len(info).to_bytes(3, "big") + info)
    fixed = bytes([0xFF, 0xF8, (0b1110 << 4) | rate_codes[sample_rate], 0b0000_100_0])
    for n in range(frames):
        header = fixed + chr(n).encode("utf-8", "surrogatepass")
        header += bytes([_crc8(header)])
        frame = header + b"\x00\x00\x00"  # subframe: CONSTANT, value 0 (16 bits)
        out += frame + _crc16(frame).to_bytes(2, "big")
    return bytes(out)


def _crc_tables() -> tuple[list[int], list[int]]:
    t8, t16 = [], []
    for i in range(256):
        c8, c16 = i, i << 8
        for _ in range(8):
            c8 = ((c8 << 1) ^ 0x07) & 0xFF if c8 & 0x80 else (c8 << 1) & 0xFF
            c16 = ((c16 << 1) ^ 0x8005) & 0xFFFF if c16 & 0x8000 else (c16 << 1) & 0xFFFF
        t8.append(c8)
        t16.append(c16)
    return t8, t16


_CRC8, _CRC16 = _crc_tables()


def _crc8(data: bytes) -> int:
    c = 0
    for b in data:
        c = _CRC8[c ^ b]
    return c


def _crc16(data: bytes) -> int:
    c = 0
    for b in data:
        c = ((c << 8) & 0xFFFF) ^ _CRC16[(c >> 8) ^ b]
    return c
