"""The words of a transcript, read the same way for Chinese and for languages written with spaces.

Chinese is written without spaces, so "the words" of a transcript need a
segmenter: jieba (installed with funasr) cuts runs of Chinese characters
into words; everything else is split at whatever is not a letter or a
digit. Every reader of transcripts goes through this module, so that what
an escalation rule matches, what the search index stores and what a digest
counts are the same words:

* ``words`` and ``search_terms``: the words of a text, normalised (NFKC,
  case-folded, Latin accents removed): for the digest's counts and the
  search index (``bot_bridge.remembering.search``);
* ``find_keyword``: the first of an escalation rule's keywords said in a
  text. A keyword with a Chinese or Japanese character is found anywhere
  in the text, as a substring (there are no spaces to bound it); any other
  keyword only as a whole word: ``refund`` is in "Refund!" and in
  "我要refund", not in "refunds" or "prerefund";
* ``recurring``: the words said in several of a set of texts, stop words
  (``bot_bridge/stopwords/``) left out;
* ``clip``: a text cut to a length at a boundary people read as one: between
  words in Latin text, between characters in Chinese.
"""

from __future__ import annotations

import logging
import re
import unicodedata
from collections import Counter
from functools import cache
from pathlib import Path
from typing import Callable, Iterable

ELLIPSIS = "…"
#: Longer "words" are noise (a URL, a random model's babble): no index or count needs them.
MAX_WORD = 64
#: Scripts written without spaces between words: Hiragana, Katakana, CJK ideographs (and their extensions).
UNSPACED = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_HAN = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
# A letter or digit of a script written with spaces: what may not touch a Latin keyword on either side.
_SPACED_LETTER = f"(?:(?![{UNSPACED}])[^\\W_])"
_RUNS = re.compile(f"([{_HAN}]+)|((?:(?![{_HAN}])[^\\W_])+)")
_LATIN_ACCENTS = re.compile("[\u0300-\u036f]")
STOPWORDS_DIR = Path(__file__).parent / "stopwords"


def words(text: str) -> list[str]:
    """The words of ``text`` in order, normalised: jieba's words for Chinese, letter-and-digit runs otherwise."""
    found = []
    for han, other in _RUNS.findall(normalise(text)):
        found += _segmenter().lcut(han) if han else [other]
    return [word for word in found if len(word) <= MAX_WORD]


def search_terms(text: str) -> list[str]:
    """Every distinct term the search index keeps for ``text``: its words, and for Chinese also jieba's
    shorter words inside long ones (中华人民共和国: 中华, 人民, 共和国 …) and every single character, so
    that a word is found however jieba cut the sentence around it."""
    terms: dict[str, None] = {}
    for han, other in _RUNS.findall(normalise(text)):
        if han:
            terms.update(dict.fromkeys(_segmenter().cut_for_search(han)))
            terms.update(dict.fromkeys(han))
        elif len(other) <= MAX_WORD:
            terms[other] = None
    return list(terms)


def is_chinese(word: str) -> bool:
    """Whether ``word`` is written in Chinese characters only."""
    return bool(word) and re.fullmatch(f"[{_HAN}]+", word) is not None


def normalise(text: str) -> str:
    """``text`` as every reader here compares it: NFKC (full-width letters become ASCII), case-folded,
    without the accents of Latin letters (café: cafe). Japanese voicing marks are kept."""
    decomposed = unicodedata.normalize("NFKD", unicodedata.normalize("NFKC", text).casefold())
    return unicodedata.normalize("NFC", _LATIN_ACCENTS.sub("", decomposed))


def find_keyword(keywords: Iterable[str], text: str) -> str | None:
    """The first of ``keywords`` said in ``text`` (case and width ignored), as the rule wrote it; or None."""
    said = normalise(text)
    for keyword in keywords:
        if _keyword_pattern(keyword).search(said):
            return keyword
    return None


def recurring(texts: Iterable[str], *, at_least: int = 2, limit: int = 8) -> list[tuple[str, int]]:
    """The words said in at least ``at_least`` of ``texts``, with in how many, most often first (ties: the
    first said first); stop words, and words of one character, left out."""
    counts: Counter[str] = Counter()
    for text in texts:
        counts.update(list(dict.fromkeys(word for word in words(text) if len(word) > 1 and word not in stopwords())))
    return [(word, count) for word, count in counts.most_common() if count >= at_least][:limit]


def clip(text: str, max_chars: int, fits: Callable[[str], bool] = lambda _clipped: True) -> str:
    """``text``, or its longest start that ends between two words (between two characters in Chinese) and,
    with an ellipsis, is at most ``max_chars`` characters long and ``fits``; ``fits`` must hold for every
    shorter start when it holds for a longer one. A single word longer than the room is cut inside."""
    text = " ".join(text.split())
    if len(text) <= max_chars and fits(text):
        return text
    ends = [end for end in range(1, min(len(text), max_chars - len(ELLIPSIS)) + 1) if _is_boundary(text, end)]
    clipped = _longest(ends, lambda end: text[:end].rstrip() + ELLIPSIS, fits)
    if clipped is None:  # not even the first word fits: cut inside it
        clipped = _longest(range(1, min(len(text), max_chars - len(ELLIPSIS)) + 1), lambda end: text[:end] + ELLIPSIS,
                           fits)
    return clipped if clipped is not None else ""


@cache
def stopwords() -> frozenset[str]:
    """The Chinese and English stop words (``bot_bridge/stopwords/*.txt``; their README says where they come from)."""
    found = set()
    for path in sorted(STOPWORDS_DIR.glob("*.txt")):
        lines = path.read_text(encoding="utf-8").splitlines()
        found.update(normalise(line.strip()) for line in lines if line.strip() and not line.startswith("#"))
    return frozenset(found)


def _longest(ends, cut: Callable[[int], str], fits: Callable[[str], bool]) -> str | None:
    """``cut(end)`` for the largest of the increasing ``ends`` whose cut fits, by bisection."""
    ends = list(ends)
    low, high, best = 0, len(ends) - 1, None
    while low <= high:
        middle = (low + high) // 2
        if fits(cut(ends[middle])):
            best, low = cut(ends[middle]), middle + 1
        else:
            high = middle - 1
    return best


def _is_boundary(text: str, end: int) -> bool:
    """Whether ``text[:end]`` ends between words: at a space or punctuation, or beside an unspaced character."""
    before, after = text[end - 1], text[end] if end < len(text) else " "
    if not (before.isalnum() and after.isalnum()):
        return True
    return bool(re.match(f"[{UNSPACED}]", before) or re.match(f"[{UNSPACED}]", after))


@cache
def _keyword_pattern(keyword: str) -> re.Pattern:
    wanted = normalise(keyword.strip())
    body = r"\s+".join(re.escape(part) for part in wanted.split())
    if re.search(f"[{UNSPACED}]", wanted):
        return re.compile(body)
    return re.compile(f"(?<!{_SPACED_LETTER}){body}(?!{_SPACED_LETTER})")


@cache
def _segmenter():
    """jieba, loaded on first use (its dictionary takes about half a second), its log lines made DEBUG lines
    of bot-bridge's log instead of its own prints to stderr."""
    import jieba

    jieba.default_logger.removeHandler(jieba.log_console)
    jieba.default_logger.setLevel(logging.NOTSET)
    jieba.initialize()
    return jieba
