"""What ``bot-bridge predict`` reads and how it shows what it found, for a person at a terminal.

A folder stands for the audio files under it: people point the command at
``calls/`` or at ``audio/*`` with sub-folders among the files. Each result
is one row of a table whose columns line up in a terminal, where a Chinese
character or an emoji takes two cells, and each row ends with the folder the
result was saved in, so it can be opened (``result.json``, ``embedding.npy``),
and, where ``public_url`` says where the console is, the result's page there.
Whether the model has random weights is said once per run, on stderr, by the
model's own warning, not on every row.
"""

from __future__ import annotations

import unicodedata
from pathlib import Path

from .emotions import BY_KEY
from .errors import BotBridgeError
from .remembering.results import NO_SPEECH, Result

#: What a folder is searched for (any case); a file named on the command line is read whatever its name.
AUDIO_SUFFIXES = frozenset(
    ".aac .aif .aiff .amr .awb .caf .flac .m4a .mka .mkv .mov .mp3 .mp4 .oga .ogg .opus .silk .slk .wav .weba .webm"
    " .wma .3gp".split()
)
NO_SPEECH_LABEL = "没有说话声 No speech"
HEADER = ("EMOTION", "CONFIDENCE", "LENGTH", "FILE", "RESULT")


class NoAudioFiles(ValueError):
    """A folder named on the command line holds no audio file."""


def audio_files(names: tuple[str, ...]) -> list[str]:
    """The files to analyse: each name as given, a folder replaced by the audio files under it (sorted).

    A name that does not exist stays in the list, so that its row says so.
    """
    found = []
    for name in names:
        path = Path(name)
        if not path.is_dir():
            found.append(name)
            continue
        inside = sorted(str(f) for f in path.rglob("*") if f.suffix.lower() in AUDIO_SUFFIXES and f.is_file())
        if not inside:
            raise NoAudioFiles(f"{name} holds no audio files (looked for {', '.join(sorted(AUDIO_SUFFIXES))})")
        found += inside
    return found


class ResultTable:
    """Rows of ``emotion  confidence  length  file  result-folder``, aligned for a terminal."""

    def __init__(self, files: list[str]) -> None:
        labels = [_label(emotion) for emotion in BY_KEY] + [f"{BY_KEY['unknown'].emoji} {NO_SPEECH_LABEL}"]
        self.widths = (max(map(cells, labels)), len(HEADER[1]), 8, max(map(cells, files + [HEADER[3]])))

    def header(self) -> str:
        return self._row(*HEADER)

    def result(self, name: str, result: Result, folder: Path, page: str | None = None) -> str:
        if result.reason == NO_SPEECH:
            label, confidence = f"{BY_KEY['unknown'].emoji} {NO_SPEECH_LABEL}", "—"
        else:
            label, confidence = _label(result.emotion), f"{result.confidence:.0%}"
        where = shown_path(folder) + (f"  {page}" if page else "")
        return self._row(label, confidence, f"{result.duration_s:.1f} s", name, where) + _said(result)

    def error(self, name: str, error: BotBridgeError) -> str:
        return self._row(f"✗ {error.code}", "—", "—", name, error.message("en"))

    def _row(self, label: str, confidence: str, length: str, name: str, last: str) -> str:
        label_width, confidence_width, length_width, name_width = self.widths
        cells_ = (_pad(label, label_width), _pad(confidence, confidence_width, right=True),
                  _pad(length, length_width, right=True), _pad(name, name_width), last)
        return "  ".join(cells_)


def _said(result: Result) -> str:
    """The transcript on a line of its own under the row, for the person who ran ``predict`` (never a log)."""
    transcript = result.transcript
    if transcript is None:
        return ""
    meaningless = " (RANDOM WEIGHTS: meaningless)" if transcript.random_weights else ""
    return f"\n    said{meaningless}: {transcript.text or '(nothing)'}"


def cells(text: str) -> int:
    """Terminal cells ``text`` takes: wide (Chinese, emoji) two, combining marks and variation selectors none."""
    return sum(
        0 if unicodedata.combining(char) or char == "\ufe0f" else 2 if unicodedata.east_asian_width(char) in "WF" else 1
        for char in text
    )


def shown_path(path: Path) -> str:
    """``path`` relative to the working directory when it lies below it, else as it is."""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _label(emotion: str) -> str:
    e = BY_KEY[emotion]
    return f"{e.emoji} {e.zh} {e.en}"


def _pad(text: str, width: int, right: bool = False) -> str:
    room = " " * max(width - cells(text), 0)
    return room + text if right else text + room
