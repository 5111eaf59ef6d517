"""Finding voice notes and uploads by what was said: full-text search over the transcripts.

Chinese has no spaces between words, so neither database can cut it into
words by itself, and a trigram index (FTS5's ``trigram`` tokenizer,
PostgreSQL's pg_trgm) cannot find the two-character words most Chinese
words are. The words are therefore cut in Python, the same way for both
databases (``bot_bridge.words``): jieba's words, the shorter words jieba
finds inside long ones, and every single character. ``result_words`` keeps
them per result, written with the result (``Store.save_result``); SQLite
searches them with an FTS5 table, PostgreSQL with a GIN index over them as
a tsvector (migration 0010).

A query is cut the same way. Every word of it must be found (AND), each as
the start of a stored word (``refund`` finds "refunds", 退 finds 退款); a
Chinese word is also found where jieba cut the recording's sentence
differently, by all of its characters. Results come newest first.

Deleting: a result's words are removed with its row (``ON DELETE
CASCADE``), and ``SearchIndex.forget(result_ids)`` removes them on its own.
Any code that deletes results, or deletes their transcripts while keeping
them, calls ``forget`` for those results: the words are personal data, and
a search must not find a recording by words it no longer holds.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Iterable

from sqlalchemy import Integer, cast, column, delete, select, text
from sqlalchemy.dialects.postgresql import TSQUERY

from ..words import is_chinese, words
from .store import TERMS_VECTOR, ResultRow, ResultWordsRow, Store, VoiceNoteRow

#: The longest query read: more words than this only narrow a search that has found nothing.
MAX_QUERY_WORDS = 16


@dataclass(frozen=True)
class Found:
    """A result whose transcript says every word asked for, and the chat voice note it answered (None: an upload)."""

    result: ResultRow
    note: VoiceNoteRow | None


class SearchIndex:
    """The transcripts of ``store``'s results, searchable by their words."""

    def __init__(self, store: Store) -> None:
        self.session = store.session
        self.dialect = store.engine.dialect.name

    def search(self, query: str, *, kind: str | None = None, before: datetime | None = None,
               limit: int = 50) -> list[Found]:
        """Results whose transcripts say every word of ``query``, newest first: of chat voice notes
        (``kind="chat"``), of uploads (``"upload"``) or both (None); ``before``: analysed before then."""
        terms = query_words(query)
        if not terms:
            return []
        matched = self._matching(terms)
        statement = (
            select(ResultRow, VoiceNoteRow)
            .outerjoin(VoiceNoteRow, VoiceNoteRow.result_id == ResultRow.id)
            .where(ResultRow.id.in_(matched))
            .order_by(ResultRow.created_at.desc(), ResultRow.id.desc())
            .limit(limit)
        )
        if kind == "chat":
            statement = statement.where(VoiceNoteRow.id.is_not(None))
        elif kind == "upload":
            statement = statement.where(VoiceNoteRow.id.is_(None))
        if before is not None:
            statement = statement.where(ResultRow.created_at < before)
        with self.session() as session:
            return [Found(result, note) for result, note in session.execute(statement)]

    def forget(self, result_ids: Iterable[str]) -> int:
        """Remove these results' words from the index (their rows stay); how many results had words there.

        The call every deletion of results or of their transcripts makes (the module's docstring says why)."""
        ids = list(result_ids)
        if not ids:
            return 0
        with self.session.begin() as session:
            return session.execute(delete(ResultWordsRow).where(ResultWordsRow.result_id.in_(ids))).rowcount

    def _matching(self, terms: list[str]):
        """The ids of the results whose words hold every one of ``terms``."""
        if self.dialect == "sqlite":
            fts = text("SELECT rowid FROM result_words_fts WHERE result_words_fts MATCH :query").bindparams(
                query=_fts5_query(terms)).columns(column("rowid", Integer))
            return select(ResultWordsRow.result_id).where(ResultWordsRow.id.in_(fts))
        return select(ResultWordsRow.result_id).where(TERMS_VECTOR.op("@@")(cast(_tsquery(terms), TSQUERY)))


def query_words(query: str) -> list[str]:
    """The words of a search, cut as the transcripts are (``bot_bridge.words.words``), each once."""
    return list(dict.fromkeys(words(query)))[:MAX_QUERY_WORDS]


def _fts5_query(terms: list[str]) -> str:
    """FTS5's query syntax: ``"退款"* OR ("退" AND "款")`` per word, the words joined by AND. The terms are
    letters and digits only (``bot_bridge.words``), so quoting them needs no escaping."""
    return " AND ".join(_either(term, lambda word: f'"{word}"*', lambda char: f'"{char}"', "OR", "AND")
                        for term in terms)


def _tsquery(terms: list[str]) -> str:
    """PostgreSQL's tsquery syntax for the same query: ``('退款':* | ('退' & '款'))`` per word, joined by &."""
    return " & ".join(_either(term, lambda word: f"'{word}':*", lambda char: f"'{char}'", "|", "&")
                      for term in terms)


def _either(term: str, prefix, exact, either: str, both: str) -> str:
    """A term as the start of a stored word; a Chinese word of several characters also as all its characters."""
    if not (is_chinese(term) and len(term) > 1):
        return prefix(term)
    return f"({prefix(term)} {either} ({f' {both} '.join(exact(char) for char in term)}))"
