"""The words of a daily digest, in its target's language (zh, en or both).

One block gives the whole picture, then one block per chat: its voice notes
against the previous day and the 7-day average, the share of each emotion,
the angry share with the same comparisons, the words that recur in its angry
notes, its escalations and up to three notes that met the chat's escalation
rule, strongest first, with links and a quote of what each said (clipped to
``QUOTE_CHARACTERS``), and how many of its notes were deleted since (counted,
never listed). Blocks are packed into as few messages as the
platform's limit allows (``alerting.pack``).
"""

from __future__ import annotations

import functools
from datetime import datetime

from .alerting import local_time, pack, result_link, say
from .replies import label, said_line

MINUS = "−"
#: What a digest quotes of each note it lists, at most.
QUOTE_CHARACTERS = 80


def render_digest(digest, public_url: str | None, *, late_since: datetime | None = None) -> list[str]:
    """The digest's messages; ``late_since``: when it was due, if it goes out late."""
    blocks = [_overview(digest, late_since)] + [_chat(chat, digest.target, public_url) for chat in digest.chats]
    return [text for text, _ in pack(blocks, digest.target.limit, functools.partial(_title, digest))]


def _title(digest, part: int, parts: int) -> str:
    target, period = digest.target, digest.period
    suffix = f" ({part}/{parts})" if parts > 1 else ""
    title = "📊 " + say(target.language, "每日情绪摘要", "Daily emotion digest") + f" · {period.day.isoformat()}{suffix}"
    start, end = local_time(period.start, target.zone), local_time(period.end, target.zone)
    span = f"{start} → {end} ({target.settings.timezone})"
    return f"{title}\n{span}"


def _overview(digest, late_since: datetime | None) -> str:
    language = digest.target.language
    lines = []
    if late_since is not None:
        due = local_time(late_since, digest.target.zone)
        lines.append("⏰ " + say(language, f"补发：原定 {due} 发送时 bot-bridge 没有运行",
                                 f"Sent late: bot-bridge was not running at {due}"))
    if digest.empty:
        lines.append(say(language, "这段时间没有语音。", "No voice notes in this period."))
        return "\n".join(lines)
    notes = sum(chat.notes for chat in digest.chats)
    escalations = sum(chat.escalations for chat in digest.chats)
    chats = len(digest.chats)
    lines.append(say(language, f"共 {notes} 条语音，来自 {chats} 个聊天，升级 {escalations} 次",
                     f"In all: {notes} voice notes from {chats} chat{'s' if chats != 1 else ''}, "
                     f"{escalations} escalation{'s' if escalations != 1 else ''}"))
    return "\n".join(lines)


def _chat(chat, target, public_url: str | None) -> str:
    language = target.language
    lines = [f"▍{target.user_text(chat.chat_name)}", _notes_line(chat, language)]
    if chat.shares:
        lines.append("  ".join(label(emotion, share, language) for emotion, share in chat.shares.items()))
        lines.append(_angry_line(chat, language))
    if chat.angry_words:
        counted = " · ".join(f"{target.user_text(word)} ×{count}" for word, count in chat.angry_words)
        lines.append(say(language, f"愤怒语音里反复出现的词：{counted}", f"Words that recur in angry notes: {counted}"))
    lines.append(say(language, f"升级 {chat.escalations} 次", f"Escalations: {chat.escalations}"))
    if chat.over_rule:
        lines.append(say(language, "达到升级规则的语音，最强烈的在前：", "Over the escalation rule, strongest first:"))
        for number, line in enumerate(chat.over_rule, start=1):
            note, result = line.note.note, line.note.result
            who = target.user_text(note.sender_name or note.sender_id or "?")
            when = local_time(note.received_at, target.zone, "%m-%d %H:%M")  # the period spans two dates
            keyword = f" · 🔑 {target.user_text(line.match.keyword)}" if line.match.keyword else ""
            lines.append(f"{number}. {label(line.match.emotion, line.match.score, language)}{keyword} · {who} · "
                         f"{when} · {result_link(public_url, result.id)}")
            quote = said_line(result.transcript, language, QUOTE_CHARACTERS, escape=target.user_text)
            if quote:
                lines.append(f"   {quote}")
    if chat.deleted:
        were = "was" if chat.deleted == 1 else "were"
        lines.append("🗑 " + say(language, f"其中 {chat.deleted} 条语音已删除（应要求或到保留期限）：仍计入数字，不再列出或引用",
                                 f"{chat.deleted} of these voice notes {were} deleted since (on request or by "
                                 "retention): counted, no longer listed or quoted"))
    return "\n".join(lines)


def _notes_line(chat, language: str) -> str:
    now, previous, average = chat.notes, chat.previous_notes, chat.average_notes
    zh = f"语音 {now} 条（前一天 {previous}，{_signed(now - previous)}；7 日平均 {average:.1f}，{_signed(now - average, 1)}）"
    en = (f"Voice notes: {now} (previous day {previous}, {_signed(now - previous)}; "
          f"7-day average {average:.1f}, {_signed(now - average, 1)})")
    return say(language, zh, en)


def _angry_line(chat, language: str) -> str:
    today = chat.angry_share()
    against = []
    for (zh_name, en_name), share in ((("前一天", "previous day"), chat.angry_share(1)),
                                      (("7 日平均", "7-day average"), chat.average_angry_share)):
        if share is None:
            against.append((f"{zh_name}无数据", f"no {en_name}"))
        else:
            points = _signed((today - share) * 100)
            against.append((f"{zh_name} {share:.0%}，{points} 个百分点", f"{en_name} {share:.0%}, {points} pts"))
    zh = f"愤怒占比 {today:.0%}（{'；'.join(zh for zh, _ in against)}）"
    en = f"Angry share: {today:.0%} ({'; '.join(en for _, en in against)})"
    return say(language, zh, en)


def _signed(value: float, decimals: int = 0) -> str:
    """``+3``, ``−2``, ``±0`` (a true minus sign, which reads better than a hyphen)."""
    text = f"{abs(value):.{decimals}f}"
    if float(text) == 0:
        return f"±{text}"
    return ("+" if value > 0 else MINUS) + text
