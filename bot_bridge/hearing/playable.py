"""A copy of a kept recording that browsers can play, for the console's player.

WeCom voice notes are AMR, WeChat's are SILK, iPhone memos may be ALAC: no
browser plays those, and the console's player showed a dead ``0:00 / 0:00``.
When such audio is kept, a copy in AAC (M4A) is made once, at save time, from
the same 16 kHz mono samples the model heard, and kept beside the original
in the result's folder (so it goes wherever the folder goes). AAC, not
Ogg/Opus: every browser plays it, Safari on iPhones included. The original
bytes stay what ``/api/results/<id>/audio`` serves.
"""

from __future__ import annotations

import io
from fractions import Fraction

import av
import numpy as np

from .audio import SAMPLE_RATE, AudioLimits, decode

# Codecs every current browser plays in the container they arrived in (as PyAV names the decoders).
BROWSER_CODECS = frozenset({
    "aac", "mp3", "mp3float", "opus", "vorbis", "flac", "pcm_s16le", "pcm_s24le", "pcm_f32le", "pcm_u8",
})
PLAYABLE_FILE, PLAYABLE_MIMETYPE = "audio-playable.m4a", "audio/mp4"  # in the result's folder
BIT_RATE = 32_000  # plenty for 16 kHz mono speech


def playable_copy(data: bytes, codec: str, limits: AudioLimits = AudioLimits()) -> bytes | None:
    """AAC in M4A of ``data`` when browsers cannot play its ``codec``; ``None`` when they can."""
    if codec in BROWSER_CODECS:
        return None
    return _aac(decode(data, limits).samples)


def _aac(samples: np.ndarray) -> bytes:
    output = io.BytesIO()
    with av.open(output, "w", format="ipod") as container:
        stream = container.add_stream("aac", rate=SAMPLE_RATE)
        stream.layout = "mono"
        stream.codec_context.bit_rate = BIT_RATE
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(samples, dtype=np.float32)[None, :], format="fltp",
                                           layout="mono")
        frame.sample_rate = SAMPLE_RATE
        frame.pts, frame.time_base = 0, Fraction(1, SAMPLE_RATE)
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return output.getvalue()
