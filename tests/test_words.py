"""The words of a transcript, as rules, the search index and the digest read them: Chinese and English alike."""

from __future__ import annotations

import pytest

from adapters.base import TextLimit
from bot_bridge.words import ELLIPSIS, clip, find_keyword, recurring, search_terms, stopwords, words

COMPLAINT_ZH = "我已经等了三个星期了，退款到底什么时候到？"
COMPLAINT_EN = "Where is my refund? I have been waiting for three weeks and nobody answers my e-mails."


def test_chinese_is_cut_into_jiebas_words_and_other_text_at_what_is_not_a_letter_or_digit():
    assert words(COMPLAINT_ZH) == ["我", "已经", "等", "了", "三个", "星期", "了", "退款", "到底", "什么", "时候", "到"]
    assert words("Where is my REFUND? Café crème, e-mail 3.5") == ["where", "is", "my", "refund", "cafe", "creme",
                                                                 "e", "mail", "3", "5"]
    assert words("我要refund退款，ＲＥＦＵＮＤ！") == ["我要", "refund", "退款", "refund"]  # full-width letters too


def test_the_index_keeps_jiebas_words_their_parts_and_every_chinese_character():
    terms = search_terms("中华人民共和国的退款政策 Refund")

    assert {"中华人民共和国", "共和国", "人民", "退款", "政策", "退", "款", "refund"} <= set(terms)
    assert len(terms) == len(set(terms))


@pytest.mark.parametrize(
    ("keyword", "said", "found"),
    [
        ("退款", "我已经等了三个星期了，退款到底什么时候到", True),  # Chinese: anywhere, no spaces to bound it
        ("退款", "我要退钱", False),
        ("refund", "Where is my REFUND?", True),  # case-insensitive
        ("refund", "我要refund退款", True),  # Chinese characters beside a Latin word are no letters of it
        ("refund", "two refunds", False),  # Latin: whole words only
        ("refund", "a prerefund check", False),
        ("refund", "ｒｅｆｕｎｄ please", True),  # full-width letters are the same letters
        ("money back", "I want my money\nback now", True),  # any space between the words of a keyword
        ("café", "the CAFE was closed", True),  # accents of Latin letters do not count
    ],
)
def test_keywords_chinese_as_substrings_latin_as_whole_words_ignoring_case(keyword, said, found):
    assert (find_keyword([keyword], said) == keyword) is found


def test_the_first_keyword_of_the_rule_that_was_said_is_the_one_named():
    assert find_keyword(["投诉", "refund", "退款"], "refund 还有退款") == "refund"
    assert find_keyword(["Refund"], "refund!") == "Refund"  # as the rule writes it


def test_recurring_words_count_notes_not_repetitions_and_leave_stop_words_out():
    notes = ["我要退款，退款太慢了！", "退款什么时候到？你们的客服呢", "我要投诉你们的客服，还有退款",
             "Where is my refund", "refund now, I want a refund"]

    assert recurring(notes) == [("退款", 3), ("客服", 2), ("refund", 2)]  # ties: the first said first
    assert {"我要", "什么", "the", "want"} <= stopwords()
    assert recurring(notes, at_least=3) == [("退款", 3)]


@pytest.mark.parametrize(
    ("text", "max_chars", "clipped"),
    [
        (COMPLAINT_EN, 30, "Where is my refund? I have…"),  # between words
        (COMPLAINT_ZH * 3, 16, "我已经等了三个星期了，退款到底…"),  # between characters
        ("Supercalifragilisticexpialidocious", 8, "Superca…"),  # one word longer than the room: cut inside
        (COMPLAINT_EN, 200, COMPLAINT_EN),  # fits whole
        ("  two   spaces\nand a line  ", 40, "two spaces and a line"),
    ],
)
def test_clip_cuts_at_a_boundary_people_read_as_one(text, max_chars, clipped):
    assert clip(text, max_chars) == clipped
    assert len(clip(text, max_chars)) <= max_chars


def test_clip_fits_a_limit_measured_as_the_platform_counts():
    wecom = TextLimit(60, "bytes")  # a Chinese character is three bytes

    clipped = clip(COMPLAINT_ZH * 3, 200, lambda candidate: wecom.measure(candidate) <= wecom.size)

    assert clipped.endswith(ELLIPSIS) and wecom.measure(clipped) <= 60 < wecom.measure(clipped[:-1] + "退" + ELLIPSIS)
