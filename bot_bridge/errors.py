"""Every way a request can fail, with a stable code and words for people.

A failure has three audiences. The code (``too_long``) is for programs and
never changes once published. The message is for the person who sent the
audio, in Chinese and in English, and names the problem without jargon. The
detail is for the operator's log: precise, technical, never shown to users
and never containing secrets.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ErrorKind:
    http_status: int
    zh: str
    en: str


ERROR_KINDS: dict[str, ErrorKind] = {
    "empty_file": ErrorKind(400, "文件是空的，没有任何内容。", "The file is empty."),
    "too_large": ErrorKind(
        413,
        "文件太大了（上限 {limit_mb} MB）。",
        "The file is too large (the limit is {limit_mb} MB).",
    ),
    "too_large_to_fetch": ErrorKind(
        413,
        "聊天平台只允许机器人下载 {limit_mb} MB 以内的文件，这个文件更大。请发送更短的录音。",
        "The chat platform lets bots download files of up to {limit_mb} MB only, and this one is larger. "
        "Please send a shorter recording.",
    ),
    "not_audio": ErrorKind(
        415,
        "这不是音频文件，无法识别其格式。",
        "This is not an audio file: its format was not recognised.",
    ),
    "unsupported_silk": ErrorKind(
        415,
        "暂不支持微信个人聊天的 SILK 语音，请转发为 AMR/MP3 或直接上传录音文件。",
        "WeChat personal-chat SILK voice is not supported; send the recording as AMR, MP3 or another common format.",
    ),
    "no_audio_stream": ErrorKind(
        422,
        "文件里没有音轨。",
        "The file contains no audio track.",
    ),
    "truncated_audio": ErrorKind(
        422,
        "音频文件不完整（可能在上传或转发时被截断），请重新发送。",
        "The audio file is incomplete (probably cut off while uploading or forwarding); please send it again.",
    ),
    "decode_failed": ErrorKind(
        422,
        "音频已损坏，无法解码。",
        "The audio is damaged and could not be decoded.",
    ),
    "no_samples": ErrorKind(
        422,
        "音频里没有任何声音数据。",
        "The audio contains no sound data.",
    ),
    "invalid_samples": ErrorKind(
        422,
        "音频数据异常（含无效数值），无法分析。",
        "The audio data is invalid (it contains non-numeric samples).",
    ),
    "too_short": ErrorKind(
        422,
        "录音太短了（至少需要 {limit_s} 秒）。",
        "The recording is too short (at least {limit_s} s is needed).",
    ),
    "too_long": ErrorKind(
        413,
        "录音太长了（上限 {limit_s} 秒）。",
        "The recording is too long (the limit is {limit_s} s).",
    ),
    "model_unavailable": ErrorKind(
        503,
        "情绪识别模型暂时不可用，请稍后再试。",
        "The emotion model is not available right now; please try again later.",
    ),
    "no_worker": ErrorKind(
        503,
        "暂时没有可用的分析进程，请稍后再试。",
        "No analysis worker is available right now; please try again later.",
    ),
    "analysis_timeout": ErrorKind(
        504,
        "分析用时过长，请稍后再试或上传更短的录音。",
        "The analysis took too long; please try again later or send a shorter recording.",
    ),
    "download_failed": ErrorKind(
        502,
        "无法从聊天平台下载这条语音，请稍后重新发送。",
        "The voice note could not be downloaded from the chat platform; please send it again later.",
    ),
    "invalid_request": ErrorKind(
        400,
        "请求不完整或格式不对：{problem}",
        "The request is incomplete or malformed: {problem}",
    ),
    "unauthorized": ErrorKind(
        401,
        "需要有效的访问令牌。",
        "A valid access token is required.",
    ),
    "token_required": ErrorKind(
        403,
        "通过 API 删除数据需要服务端先设置访问令牌（api.token）。",
        "Deleting through the API needs an access token set on the server (api.token).",
    ),
    "not_found": ErrorKind(
        404,
        "找不到这条记录。",
        "No such record.",
    ),
    "busy": ErrorKind(
        429,
        "同时进行的分析太多了，请等其中一个完成后再试。",
        "Too many analyses are running at once; please wait for one to finish and try again.",
    ),
    "request_timeout": ErrorKind(
        408,
        "请求在规定时间内没有完整送达，请重试。",
        "The request did not arrive in full in time; please try again.",
    ),
    "storage_full": ErrorKind(
        507,
        "服务器的存储空间已满，暂时无法保存，请稍后再试。",
        "The server's storage is full, so nothing can be saved right now; please try again later.",
    ),
    "internal_error": ErrorKind(
        500,
        "处理时出了点问题，我们已记录下来。",
        "Something went wrong while processing; it has been logged.",
    ),
}


class BotBridgeError(Exception):
    """A failure with a stable ``code``, bilingual user messages and an operator ``detail``."""

    def __init__(self, code: str, detail: str = "", **params: object) -> None:
        if code not in ERROR_KINDS:
            raise ValueError(f"unknown error code {code!r}")
        self.code = code
        self.detail = detail
        self.params = params
        super().__init__(f"{code}: {detail}" if detail else code)

    @property
    def http_status(self) -> int:
        return ERROR_KINDS[self.code].http_status

    def message(self, language: str = "en") -> str:
        """The user-facing message in ``zh``, ``en`` or ``both`` (Chinese, then English)."""
        kind = ERROR_KINDS[self.code]
        if language == "zh":
            return kind.zh.format(**self.params)
        if language == "both":
            return f"{kind.zh.format(**self.params)}\n{kind.en.format(**self.params)}"
        return kind.en.format(**self.params)

    def to_dict(self) -> dict:
        return {
            "code": self.code,
            "message": self.message("en"),
            "message_zh": self.message("zh"),
        }


class AudioError(BotBridgeError):
    """The input could not be turned into usable 16 kHz mono audio."""


class ModelUnavailable(BotBridgeError):
    """The model cannot be loaded; ``detail`` says how an operator fixes it."""

    def __init__(self, detail: str) -> None:
        super().__init__("model_unavailable", detail)
