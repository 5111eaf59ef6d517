"""Turn an uploaded voice note into 16 kHz mono float32 samples, or refuse it clearly.

``decode`` takes the bytes (or a path) a chat platform hands us: WeCom AMR-NB,
Telegram Ogg/Opus, Slack M4A/AAC or WebM/Opus, iPhone M4A (AAC or ALAC), MP3,
FLAC, WAV, the audio track of a video, and WeChat SILK. It returns the samples
the emotion model wants, or raises ``AudioError`` with a stable code.

Why PyAV (FFmpeg as a library) and not pydub, an ffmpeg subprocess or soundfile,
measured on the 2-core VM (see shared/notes/audio-facts.md):

* pydub is 4-6x slower (154 vs 27 ms for a 10 s AMR), reads float32 WAV as
  int32 (output correlates ~0.4 with the signal), resamples with
  ``audioop.ratecv`` (no anti-alias filter) and needs ``audioop``, which is gone
  in Python 3.13.
* An ffmpeg subprocess is 2-6x slower, needs a system ffmpeg whose AMR decoder
  drops DTX silence frames (1.2 s of a 15.7 s WeCom note), and returns nothing,
  with exit 0, for an MP4 with its index at the end read from a pipe. PyAV reads
  such files from a seekable ``BytesIO`` without temporary files.
* soundfile reads neither AMR nor M4A, and decodes a 10-hour FLAC bomb in
  full (83 s, 19.8 GB).

PyAV's wheel bundles ``libopencore_amrnb``, which decodes DTX AMR in full (the
native decoder raises on SID frames). Resampling is ``soxr`` (HQ), not
FFmpeg's default resampler: measured 48 kHz -> 16 kHz, soxr lets an 8.5 kHz tone
alias at -136 dB against -26 dB for swr, and is 6x faster. Stereo is mixed as
(L+R)/2 here, because FFmpeg's mono downmix gives (L+R)/sqrt(2), +3 dB.

SILK (WeChat personal chats) is decoded with ``silk-python`` (module
``pysilk``): a binding of the Skype SILK SDK, released steadily since 2022
(0.2.9, 2026-10), with wheels for CPython 3.8-3.13 and PyPy; 100 fuzzed and
truncated files raised ``SilkError`` and never crashed. We walk the packet
framing ourselves first, because its decoder trusts a negative packet length
(the 0xFFFF end marker some writers add), sets no length limit, and decodes
one 20 ms frame per packet (all WeChat writes). Without silk-python installed,
SILK is refused as ``unsupported_silk``.

Every length is counted while decoding, never taken from a header alone: a
470 KB FLAC can hold 10 hours of silence (4.4 GB as float32), with no length
in its header. Decoding stops as soon as ``max_duration_s`` is passed.
"""

from __future__ import annotations

import codecs
import io
import logging
import os
import struct
from dataclasses import dataclass

import av
import numpy as np
import soxr

from ..errors import AudioError

__all__ = ["SAMPLE_RATE", "AudioLimits", "DecodedAudio", "decode", "media_type"]

SAMPLE_RATE = 16000

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AudioLimits:
    max_bytes: int = 25_000_000
    max_duration_s: float = 300.0
    min_duration_s: float = 0.3


@dataclass
class DecodedAudio:
    samples: np.ndarray  # float32, mono, 16 kHz, contiguous
    sample_rate: int  # always 16000
    duration_s: float
    container: str  # e.g. "ogg", "mov,mp4,m4a,3gp,3g2,mj2", "amr", "wav", "silk"
    codec: str  # the decoder, e.g. "opus", "aac", "libopencore_amrnb", "pcm_s24le", "silk_v3"
    source_rate: int
    source_channels: int
    size_bytes: int


def decode(source: bytes | str | os.PathLike, limits: AudioLimits = AudioLimits()) -> DecodedAudio:
    """Decode ``source`` (the file's bytes, or a path to it) to 16 kHz mono float32.

    Raises ``AudioError`` with one of: ``empty_file``, ``too_large``,
    ``not_audio``, ``no_audio_stream``, ``truncated_audio``, ``no_samples``,
    ``invalid_samples``, ``too_long``, ``too_short``, ``unsupported_silk``,
    ``decode_failed``. Each refusal is also logged once, on one line, with what
    was seen and the sizes involved (never the file's contents).

    A path is read into memory (at most ``limits.max_bytes``) rather than handed
    to FFmpeg, so a string can never make FFmpeg open a URL or a playlist.
    """
    data = _read(source, limits)
    kind = _sniff(data)
    if kind in _NOT_AUDIO:
        raise _refuse("not_audio", f"content looks like {_NOT_AUDIO[kind]}", len(data))
    if kind == "silk":
        return _decode_silk(data, limits)
    if kind == "wav":
        _check_wav_length(data)
    elif kind == "mp4":
        _check_mp4_boxes(data)
    elif kind == "ogg":
        _check_ogg_ending(data)
    return _decode_ffmpeg(data, kind, limits)


# Decoded lengths may exceed the true length by codec padding (an AAC frame is
# 1024 samples); do not refuse a 300.0 s note because it decodes to 300.05 s.
_LENGTH_TOLERANCE_S = 0.25

# Declared lengths we trust for an early refusal and for spotting truncation:
# these containers store an exact length (an index, a sample count, a last
# granule). MP3 and AMR lengths are guesses from the bitrate.
_EXACT_LENGTH_CONTAINERS = {"flac", "wav", "ogg", "mov,mp4,m4a,3gp,3g2,mj2", "matroska,webm", "w64", "aiff", "caf"}
_INDEXED_CONTAINERS = {"flac", "mov,mp4,m4a,3gp,3g2,mj2"}

# A corrupt packet or two is a glitch, not a broken file (FFmpeg's CLI skips them too).
_MAX_BAD_PACKETS = 10

# FFmpeg's native AMR decoders fail on DTX silence frames; opencore's do not.
_DECODER_OVERRIDES = {"amrnb": "libopencore_amrnb", "amrwb": "libopencore_amrwb"}


def media_type(container: str) -> tuple[str, str]:
    """File suffix and MIME type for kept audio of ``container`` (as ``DecodedAudio.container`` names it).

    Kept uploads are served back to browsers, so their type comes from what
    the decoder found, never from the uploader's file name (``x.html`` would
    otherwise be served as a web page). Containers browsers do not play
    (SILK) are opaque bytes.
    """
    return _MEDIA_TYPES.get(container, (".bin", "application/octet-stream"))


_MEDIA_TYPES = {
    "amr": (".amr", "audio/amr"),
    "ogg": (".ogg", "audio/ogg"),
    "matroska,webm": (".webm", "audio/webm"),
    "mov,mp4,m4a,3gp,3g2,mj2": (".m4a", "audio/mp4"),
    "mp3": (".mp3", "audio/mpeg"),
    "flac": (".flac", "audio/flac"),
    "wav": (".wav", "audio/wav"),
}


def _refuse(code: str, detail: str, size: int, level: int = logging.INFO, **params: object) -> AudioError:
    log.log(level, "audio refused: %s: %s (%d bytes)", code, detail, size)
    return AudioError(code, detail, **params)


def _num(x: float) -> str:
    return f"{x:g}"


# --------------------------------------------------------------------------
# Reading and sniffing
# --------------------------------------------------------------------------


def _read(source: bytes | str | os.PathLike, limits: AudioLimits) -> bytes:
    """The file's bytes, refusing empty and oversized files before any decoding."""
    limit_mb = _num(limits.max_bytes / 1_000_000)
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        if len(data) > limits.max_bytes:
            raise _refuse("too_large", f"{len(data)} bytes > limit {limits.max_bytes}", len(data), limit_mb=limit_mb)
    else:
        with open(source, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size > limits.max_bytes:
                raise _refuse("too_large", f"file of {size} bytes > limit {limits.max_bytes}", size, limit_mb=limit_mb)
            data = f.read(limits.max_bytes + 1)
        if len(data) > limits.max_bytes:  # it grew while we looked
            raise _refuse("too_large", f"over {limits.max_bytes} bytes", len(data), limit_mb=limit_mb)
    if not data:
        raise _refuse("empty_file", "0 bytes", 0)
    return data


_NOT_AUDIO = {
    "png": "a PNG image",
    "jpeg": "a JPEG image",
    "gif": "a GIF image",
    "webp": "a WebP image",
    "pdf": "a PDF document",
    "zip": "a ZIP archive (or an Office document)",
    "text": "text",
}

_MP4_FIRST_BOXES = {b"ftyp", b"moov", b"mdat", b"free", b"skip", b"wide", b"styp", b"pnot"}


def _sniff(data: bytes) -> str | None:
    """A first guess from magic bytes; ``None`` leaves it to FFmpeg's probing."""
    head = data[:16]
    if head.startswith((b"#!SILK_V3", b"\x02#!SILK_V3")):
        return "silk"
    if head.startswith(b"#!AMR"):
        return "amr"
    if head.startswith(b"OggS"):
        return "ogg"
    if head.startswith(b"fLaC"):
        return "flac"
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        return "wav"
    if head[4:8] in _MP4_FIRST_BOXES:
        return "mp4"
    if head.startswith(b"\x1a\x45\xdf\xa3"):
        return "matroska"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head.startswith((b"GIF87a", b"GIF89a")):
        return "gif"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    if head.startswith(b"%PDF"):
        return "pdf"
    if head.startswith(b"PK\x03\x04"):
        return "zip"
    if _looks_like_text(data[:4096]):
        # Also keeps FFmpeg's text demuxers (HLS playlists, concat lists) from
        # ever seeing an upload: those can open other files and URLs.
        return "text"
    return None


def _looks_like_text(sample: bytes) -> bool:
    if b"\0" in sample:
        return False
    try:
        text = codecs.getincrementaldecoder("utf-8")().decode(sample, final=False)
    except UnicodeDecodeError:
        return False
    controls = sum(1 for c in text if ord(c) < 32 and c not in "\t\n\r\f")
    return controls <= len(text) // 100


# --------------------------------------------------------------------------
# Structural checks FFmpeg does not make
# --------------------------------------------------------------------------

# Writers that cannot seek back leave a placeholder length; FFmpeg then reads to the end.
_WAV_LENGTH_PLACEHOLDERS = {0, 0xFFFFFFFF, 0x7FFFFFFF, 0x7FFFF000}


def _check_wav_length(data: bytes) -> None:
    """Refuse a WAV whose data chunk claims far more than the file holds.

    FFmpeg quietly decodes what is there (1 s of a header claiming 2 GiB).
    """
    pos, rate, block = 12, 0, 0
    for _ in range(64):
        if pos + 8 > len(data):
            return
        chunk, size = struct.unpack_from("<4sI", data, pos)
        if chunk == b"fmt " and size >= 16 and pos + 24 <= len(data):
            _, _, rate, _, block = struct.unpack_from("<HHIIH", data, pos + 8)
        if chunk == b"data":
            have = len(data) - pos - 8
            if size in _WAV_LENGTH_PLACEHOLDERS or have >= 0.9 * size:
                return
            per_s = rate * block
            seconds = f" (~{size / per_s:.1f} s vs ~{have / per_s:.1f} s)" if per_s else ""
            raise _refuse(
                "truncated_audio",
                f"wav: data chunk declares {size} bytes, file holds {have}{seconds}",
                len(data),
            )
        pos += 8 + size + (size & 1)


def _check_mp4_boxes(data: bytes) -> None:
    """Refuse an MP4/M4A cut short: a top-level box runs past the end, or there is no index.

    Without its ``moov`` box (written last by many recorders) nothing can be
    decoded; FFmpeg only says "invalid data".
    """
    pos, seen = 0, []
    while pos + 8 <= len(data):
        size, kind = struct.unpack_from(">I4s", data, pos)
        header = 8
        if size == 1:
            if pos + 16 > len(data):
                break
            size, header = struct.unpack_from(">Q", data, pos + 8)[0], 16
        elif size == 0:
            size = len(data) - pos
        if size < header or not all(32 < c < 127 for c in kind):
            break  # trailing bytes that are not a box
        name = kind.decode("ascii")
        seen.append(name)
        if pos + size > len(data):
            raise _refuse(
                "truncated_audio",
                f"mp4: '{name}' box at offset {pos} declares {size} bytes, {len(data) - pos} present; "
                f"boxes: {','.join(seen)}",
                len(data),
            )
        pos += size
    if "moov" not in seen and "moof" not in seen:
        raise _refuse("truncated_audio", f"mp4: no moov box (index); boxes: {','.join(seen)}", len(data))


_OGG_MAX_PAGE = 27 + 255 + 255 * 255


def _check_ogg_ending(data: bytes) -> None:
    """Refuse an Ogg file whose last page is cut off.

    FFmpeg decodes a truncated Ogg without complaint and even reports the
    shortened length, so look at the last page: it must end exactly at the end
    of the file. ("OggS" can also occur inside a packet, hence the search for
    a page that fits before declaring the file cut.)
    """
    size = len(data)
    window = max(0, size - 2 * _OGG_MAX_PAGE)
    overrun = None
    at = data.rfind(b"OggS", window)
    while at >= 0:
        end = _ogg_page_end(data, at)
        if end == size:
            if not data[at + 5] & 0x04:
                log.info("ogg: last page complete but without end-of-stream flag (%d bytes)", size)
            return
        if end is not None and end > size and overrun is None:
            overrun = (at, end)
        at = data.rfind(b"OggS", window, at)
    if overrun is not None:
        at, end = overrun
        raise _refuse(
            "truncated_audio",
            f"ogg: last page at offset {at} needs at least {end - at} bytes, {size - at} present",
            size,
        )


def _ogg_page_end(data: bytes, at: int) -> int | None:
    """Where the Ogg page starting at ``at`` ends (at least), or None if it is not a page."""
    if at + 27 > len(data):
        return at + 27
    if data[at + 4] != 0:  # stream structure version
        return None
    segments = data[at + 26]
    table = data[at + 27 : at + 27 + segments]
    if len(table) < segments:
        return at + 27 + segments
    return at + 27 + segments + sum(table)


# --------------------------------------------------------------------------
# FFmpeg decoding
# --------------------------------------------------------------------------

_IMAGE_DEMUXERS = {"image2", "gif", "apng", "webp", "ico", "bmp"}


def _decode_ffmpeg(data: bytes, kind: str | None, limits: AudioLimits) -> DecodedAudio:
    size = len(data)
    try:
        container = av.open(io.BytesIO(data), metadata_errors="ignore")
    except av.error.FFmpegError as e:
        if kind is None:
            raise _refuse("not_audio", f"FFmpeg recognised no audio format ({e.strerror})", size) from None
        raise _refuse("decode_failed", f"{kind}: FFmpeg could not open it ({e.strerror})", size, logging.WARNING) from None
    with container:
        fmt = container.format.name
        stream = container.streams.best("audio") or next(iter(container.streams.audio), None)
        if stream is None:
            kinds = sorted({s.type for s in container.streams})
            if "video" in kinds and fmt not in _IMAGE_DEMUXERS and not fmt.endswith("_pipe"):
                raise _refuse("no_audio_stream", f"{fmt}: streams {kinds}, none audio", size)
            raise _refuse("not_audio", f"{fmt}: streams {kinds}, an image or text format", size)

        declared = _declared_seconds(container, stream)
        exact = declared is not None and fmt in _EXACT_LENGTH_CONTAINERS
        if exact and declared > limits.max_duration_s + _LENGTH_TOLERANCE_S:
            raise _refuse(
                "too_long",
                f"{fmt}: header declares {declared:.1f} s > limit {_num(limits.max_duration_s)} s",
                size,
                limit_s=_num(limits.max_duration_s),
            )

        if stream.codec_context is None:
            raise _refuse("decode_failed", f"{fmt}: audio stream {stream.index} has a codec FFmpeg cannot decode", size, logging.WARNING)
        name = stream.codec_context.name
        if name in _DECODER_OVERRIDES:
            decoder = av.CodecContext.create(_DECODER_OVERRIDES[name], "r")
        else:
            decoder = stream.codec_context
        codec = decoder.name
        source_channels = stream.codec_context.channels
        source_rate = stream.codec_context.sample_rate

        out = _To16k()
        decoded_s = 0.0
        bad_packets = 0
        packet_error = demux_error = None
        cap_s = limits.max_duration_s + _LENGTH_TOLERANCE_S
        try:
            for packet in container.demux(stream):
                try:
                    frames = decoder.decode(packet)
                except av.error.FFmpegError as e:
                    bad_packets += 1
                    packet_error = e
                    if bad_packets > _MAX_BAD_PACKETS:
                        break
                    continue
                for frame in frames:
                    if frame.sample_rate <= 0:
                        bad_packets += 1
                        continue
                    mono = _mono_float(frame, fmt, codec, decoded_s, size)
                    decoded_s += frame.samples / frame.sample_rate
                    if decoded_s > cap_s:
                        raise _refuse(
                            "too_long",
                            f"{fmt}/{codec}: stopped decoding at {decoded_s:.1f} s > limit "
                            f"{_num(limits.max_duration_s)} s (header declared "
                            f"{'no length' if declared is None else f'{declared:.1f} s'})",
                            size,
                            limit_s=_num(limits.max_duration_s),
                        )
                    source_rate = source_rate or frame.sample_rate
                    source_channels = source_channels or frame.layout.nb_channels
                    out.push(mono, frame.sample_rate)
        except av.error.FFmpegError as e:  # the demuxer gave up
            demux_error = e
        samples = out.finish()

    what = f"{fmt}/{codec} {source_rate} Hz x{source_channels}"
    got = f"decoded {decoded_s:.2f} s" + (f" of {declared:.2f} s declared" if declared is not None else "")
    errors = ""
    if bad_packets:
        errors += f", {bad_packets} bad packets (last: {packet_error.strerror})"
    if demux_error is not None:
        errors += f", demuxer stopped: {demux_error.strerror}"
    if bad_packets > _MAX_BAD_PACKETS:
        raise _refuse("decode_failed", f"{what}: {got}{errors}", size, logging.WARNING)
    if declared is not None and fmt in _INDEXED_CONTAINERS and decoded_s < 0.9 * declared and declared - decoded_s > 0.5:
        raise _refuse("truncated_audio", f"{what}: {got}{errors}", size)
    if not samples.size:
        if errors:
            raise _refuse("decode_failed", f"{what}: {got}{errors}", size, logging.WARNING)
        raise _refuse("no_samples", f"{what}: {got}", size)
    if errors:
        # Errors are forgiven only when (nearly) all the audio came out anyway: a
        # glitched packet, or junk after a complete stream. MP3/AMR lengths are estimates.
        complete = declared is not None and decoded_s >= (0.98 if exact else 0.5) * declared
        if not complete:
            raise _refuse("decode_failed", f"{what}: {got}{errors}", size, logging.WARNING)
        log.warning("audio decoded despite errors: %s: %s%s (%d bytes)", what, got, errors, size)
    return _finish(samples, fmt, codec, source_rate, source_channels, size, limits)


def _declared_seconds(container: av.container.InputContainer, stream: av.audio.stream.AudioStream) -> float | None:
    if stream.duration is not None and stream.time_base is not None and stream.duration > 0:
        return float(stream.duration * stream.time_base)
    if container.duration is not None and container.duration > 0:
        return container.duration / 1_000_000
    return None


_SCALE = {np.dtype(np.int16): 1 / 32768, np.dtype(np.int32): 1 / 2**31, np.dtype(np.int64): 1 / 2**63}


def _mono_float(frame: av.AudioFrame, fmt: str, codec: str, at_s: float, size: int) -> np.ndarray:
    """One decoded frame as float32 mono: channels averaged, (L+R)/2."""
    a = frame.to_ndarray()
    channels = frame.layout.nb_channels
    if not frame.format.is_planar:
        a = a.reshape(-1, channels).T
    if a.dtype == np.uint8:
        a = (a.astype(np.float32) - 128) / 128
    elif a.dtype in _SCALE:
        a = a.astype(np.float32) * np.float32(_SCALE[a.dtype])
    else:
        a = a.astype(np.float32, copy=False)
        if not np.isfinite(a).all():
            bad = ~np.isfinite(a)
            first = np.flatnonzero(bad.any(axis=0))[0]
            raise _refuse(
                "invalid_samples",
                f"{fmt}/{codec}: {int(bad.sum())} NaN/Inf samples in a frame, first at "
                f"{at_s + first / frame.sample_rate:.3f} s",
                size,
            )
    return a[0] if channels == 1 else a.mean(axis=0)


class _To16k:
    """Streams mono float32 at any rate into 16 kHz, a block at a time.

    Blocks keep soxr's per-call overhead low for codecs with tiny frames
    (AMR: 160 samples). A rate change mid-stream starts a new resampler.
    """

    _BLOCK = 16384

    def __init__(self) -> None:
        self._rate = 0
        self._resampler: soxr.ResampleStream | None = None
        self._pending: list[np.ndarray] = []
        self._pending_n = 0
        self._out: list[np.ndarray] = []

    def push(self, x: np.ndarray, rate: int) -> None:
        if rate != self._rate:
            self._flush(last=True)
            self._rate = rate
            self._resampler = None if rate == SAMPLE_RATE else soxr.ResampleStream(rate, SAMPLE_RATE, 1, dtype="float32", quality="HQ")
        self._pending.append(x)
        self._pending_n += len(x)
        if self._pending_n >= self._BLOCK:
            self._flush()

    def finish(self) -> np.ndarray:
        self._flush(last=True)
        if not self._out:
            return np.zeros(0, np.float32)
        return np.ascontiguousarray(np.concatenate(self._out), dtype=np.float32)

    def _flush(self, last: bool = False) -> None:
        x = np.concatenate(self._pending) if self._pending else np.zeros(0, np.float32)
        self._pending, self._pending_n = [], 0
        if self._resampler is not None:
            x = self._resampler.resample_chunk(x, last=last)
            if last:
                self._resampler = None
                self._rate = 0
        if len(x):
            self._out.append(x)


def _finish(samples: np.ndarray, fmt: str, codec: str, rate: int, channels: int, size: int, limits: AudioLimits) -> DecodedAudio:
    duration = len(samples) / SAMPLE_RATE
    if duration > limits.max_duration_s + _LENGTH_TOLERANCE_S:
        raise _refuse(
            "too_long",
            f"{fmt}/{codec}: {duration:.1f} s > limit {_num(limits.max_duration_s)} s",
            size,
            limit_s=_num(limits.max_duration_s),
        )
    if duration < limits.min_duration_s:
        raise _refuse(
            "too_short",
            f"{fmt}/{codec}: {duration:.3f} s < minimum {_num(limits.min_duration_s)} s",
            size,
            limit_s=_num(limits.min_duration_s),
        )
    return DecodedAudio(
        samples=samples,
        sample_rate=SAMPLE_RATE,
        duration_s=duration,
        container=fmt,
        codec=codec,
        source_rate=rate,
        source_channels=channels,
        size_bytes=size,
    )


# --------------------------------------------------------------------------
# WeChat SILK
# --------------------------------------------------------------------------

_SILK_RATE = 24000  # WeChat encodes at 24 kHz; SILK files do not store a rate
_SILK_FRAME_S = 0.02  # every packet holds at least one 20 ms frame
_SILK_MAX_PACKET = 960  # pysilk's own bound at 24 kHz


def _decode_silk(data: bytes, limits: AudioLimits) -> DecodedAudio:
    """Decode WeChat SILK v3: a magic line, then packets of (int16 LE length, payload).

    The packet walk bounds the length before decoding (each packet is at least
    20 ms), spots a cut-off last packet, and drops the optional 0xFFFF end
    marker that pysilk would misread.
    """
    size = len(data)
    try:
        import pysilk
    except ImportError:
        raise _refuse("unsupported_silk", "SILK v3 and silk-python is not installed", size, logging.WARNING) from None
    pos = data.index(b"#!SILK_V3") + 9
    packets = 0
    cap = int((limits.max_duration_s + _LENGTH_TOLERANCE_S) / _SILK_FRAME_S)
    while pos + 2 <= size:
        (length,) = struct.unpack_from("<h", data, pos)
        if length < 0:
            break
        if length == 0 or length > _SILK_MAX_PACKET:
            raise _refuse("decode_failed", f"silk: packet {packets} at offset {pos} has length {length}", size)
        if pos + 2 + length > size:
            raise _refuse(
                "truncated_audio",
                f"silk: packet {packets} at offset {pos} needs {length} bytes, {size - pos - 2} present",
                size,
            )
        pos += 2 + length
        packets += 1
        if packets > cap:
            raise _refuse(
                "too_long",
                f"silk: over {packets} packets (>= {packets * _SILK_FRAME_S:.1f} s) > limit {_num(limits.max_duration_s)} s",
                size,
                limit_s=_num(limits.max_duration_s),
            )
    if packets == 0:
        raise _refuse("no_samples", "silk: header without packets", size)
    pcm = io.BytesIO()
    try:
        pysilk.decode(io.BytesIO(data[:pos]), pcm, _SILK_RATE)
    except pysilk.SilkError as e:
        raise _refuse("decode_failed", f"silk: {packets} packets, decoder error {e}", size, logging.WARNING) from None
    x = np.frombuffer(pcm.getvalue(), "<i2").astype(np.float32) / 32768
    samples = soxr.resample(x, _SILK_RATE, SAMPLE_RATE, quality="HQ").astype(np.float32) if x.size else x
    if not samples.size:
        raise _refuse("no_samples", f"silk: {packets} packets decoded to nothing", size)
    return _finish(np.ascontiguousarray(samples), "silk", "silk_v3", _SILK_RATE, 1, size, limits)
