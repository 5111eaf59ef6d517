"""Search by what was said, on SQLite (FTS5) and PostgreSQL (full-text search): Chinese and English, voice notes
and uploads, results forgotten when asked and when deleted, transcripts stored before the index indexed."""

from __future__ import annotations

from datetime import timedelta

import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import create_engine, delete, func, select, text

from bot_bridge.remembering.results import Result
from bot_bridge.remembering.search import SearchIndex
from bot_bridge.remembering.store import MIGRATIONS_DIR, ResultRow, ResultWordsRow, Store
from tests.alert_helpers import NOON, add_chat_note, scores, transcript

ZH_REFUND = "我已经等了三个星期了，退款到底什么时候到？"
ZH_COMPLAINT = "我要投诉你们的客服"
EN_REFUND = "Where is my REFUND? I want my money back."
EN_THANKS = "Thank you, the refunds arrived."


@pytest.fixture
def store(database_url, tmp_path):
    store = Store(database_url, tmp_path / "outputs")
    yield store
    store.close()


@pytest.fixture
def said(store):
    """Two chat voice notes and two uploads, one minute apart, the newest last: name -> result id."""
    ids = {}
    for minute, (name, words) in enumerate([("zh_refund", ZH_REFUND), ("en_refund", EN_REFUND)]):
        ids[name] = add_chat_note(store, received_at=NOON + timedelta(minutes=minute), emotions={"angry": 0.8},
                                  said=words)
    for minute, (name, words) in enumerate([("zh_complaint", ZH_COMPLAINT), ("en_thanks", EN_THANKS)], start=2):
        upload = Result(scores=scores(happy=0.7), duration_s=4.0, speech_ratio=1.0, model={"name": "m"},
                        file_name=f"{name}.wav", transcript=transcript(words),
                        created_at=NOON + timedelta(minutes=minute, seconds=5))
        store.save_result(upload)
        ids[name] = upload.id
    add_chat_note(store, received_at=NOON + timedelta(minutes=9), emotions={"sad": 0.6})  # no transcript
    return ids


def found(index: SearchIndex, said: dict[str, str], query: str, **options) -> list[str]:
    names = {result_id: name for name, result_id in said.items()}
    return [names[match.result.id] for match in index.search(query, **options)]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("退款", ["zh_refund"]),
        ("什么时候 退款", ["zh_refund"]),  # every word, anywhere in the transcript
        ("退", ["zh_refund"]),  # the start of a word
        ("要投诉", ["zh_complaint"]),  # jieba cut the recording "我要 / 投诉": its characters still find it
        ("款到", ["zh_refund"]),  # two characters jieba never made a word of
        ("投诉 退款", []),
    ],
)
def test_chinese_is_found_by_its_words_without_spaces(store, said, query, expected):
    assert found(SearchIndex(store), said, query) == expected


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("refund", ["en_thanks", "en_refund"]),  # case ignored; a word finds its longer forms; newest first
        ("Refund money", ["en_refund"]),
        ("REFUN", ["en_thanks", "en_refund"]),
        ("money back", ["en_refund"]),
        ("refund 退款", []),
        ("monkey", []),
        ("?? 😡", []),  # no word in it
    ],
)
def test_english_is_found_by_its_words_and_their_starts(store, said, query, expected):
    assert found(SearchIndex(store), said, query) == expected


def test_voice_notes_or_uploads_alone_and_each_with_its_voice_note(store, said):
    index = SearchIndex(store)

    assert found(index, said, "refund", kind="chat") == ["en_refund"]
    assert found(index, said, "refund", kind="upload") == ["en_thanks"]
    [note_match] = index.search("退款")
    assert note_match.note.chat_name == "Support group" and note_match.result.transcript.text == ZH_REFUND
    assert index.search("投诉")[0].note is None  # an upload
    assert found(index, said, "refund", limit=1) == ["en_thanks"]


def test_forgotten_results_are_found_no_more_and_a_deleted_result_takes_its_words(store, said):
    index = SearchIndex(store)

    assert index.forget([said["zh_refund"], said["en_thanks"], "no-such-result"]) == 2
    assert found(index, said, "退款") == [] and found(index, said, "refund") == ["en_refund"]
    assert store.result(said["zh_refund"]).transcript.text == ZH_REFUND  # the result itself stays
    assert index.forget([]) == 0

    with store.session.begin() as session:  # as a deletion that forgot to call forget would
        session.execute(delete(ResultRow).where(ResultRow.id == said["zh_complaint"]))
    with store.session() as session:
        assert session.scalar(select(func.count()).select_from(ResultWordsRow)) == 1  # ON DELETE CASCADE
    assert found(index, said, "投诉") == []


def test_a_result_without_a_transcript_has_no_words_to_find(store, said):
    with store.session() as session:
        indexed = set(session.scalars(select(ResultWordsRow.result_id)))
    assert indexed == set(said.values())


def test_transcripts_stored_before_the_index_existed_are_indexed_by_its_migration(database_url, tmp_path):
    engine = create_engine(database_url)
    _migrate(engine, "0006")
    old = Result(scores=scores(angry=0.9), duration_s=3.0, speech_ratio=1.0, model={"name": "m"},
                 transcript=transcript(ZH_REFUND))
    payload = old.to_dict()
    columns = {"id": old.id, "created_at": old.created_at, "origin": "api", "emotion": "angry",
               "confidence": 0.9, "scores": payload["scores"], "duration_s": 3.0, "speech_ratio": 1.0,
               "model_name": "m", "random_weights": False, "payload": payload}
    results = ResultRow.__table__
    with engine.begin() as connection:
        connection.execute(results.insert().values(**columns))
        connection.execute(results.insert().values(**{**columns, "id": "no-transcript",
                                                      "payload": {**payload, "transcript": None}}))
    engine.dispose()

    store = Store(database_url, tmp_path / "outputs")  # migrates to the newest revision
    try:
        assert [match.result.id for match in SearchIndex(store).search("退款")] == [old.id]
    finally:
        store.close()


def test_sqlites_full_text_table_follows_the_words_through_its_triggers(tmp_path, said_sqlite):
    store, ids = said_sqlite
    with store.session.begin() as session:
        session.execute(text("UPDATE result_words SET terms = 'replaced words' WHERE result_id = :id"),
                        {"id": ids["en_refund"]})
    index = SearchIndex(store)
    assert [match.result.id for match in index.search("replaced")] == [ids["en_refund"]]
    assert [match.result.id for match in index.search("money")] == []


@pytest.fixture
def said_sqlite(tmp_path):
    store = Store(f"sqlite:///{tmp_path / 'fts.db'}", tmp_path / "outputs")
    ids = {"en_refund": add_chat_note(store, received_at=NOON, emotions={"angry": 0.8}, said=EN_REFUND)}
    yield store, ids
    store.close()


def _migrate(engine, revision: str) -> None:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, revision)
