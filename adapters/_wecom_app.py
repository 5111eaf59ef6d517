"""What WeCom's self-built app and 微信客服 share: the encrypted callback, the access token, media downloads.

Both are WeCom corp apps: their callbacks are sealed the same way (checked
with wechatpy's ``WeChatCrypto``, AES-256-CBC, against wechatpy's published
vectors in the tests): ``msg_signature`` is SHA-1 over the token, timestamp,
nonce and ciphertext; decryption must succeed and name our CorpID; the
timestamp must be within 5 minutes, so a captured callback cannot be
replayed later. Both fetch voice with ``media/get`` and call the API with an
access token cached for its ``expires_in`` (7200 s; WeCom throttles
``gettoken``) and fetched again when a call says it expired or is invalid
(errcodes 40014, 42001, 40001). Not an adapter module: the leading
underscore keeps it out of the platform discovery.
"""

from __future__ import annotations

import functools

from wechatpy.enterprise.crypto import WeChatCrypto
from wechatpy.enterprise.exceptions import InvalidCorpIdException
from wechatpy.exceptions import InvalidSignatureException

from bot_bridge.chat.messages import ChatMessage, InboundRequest
from bot_bridge.chat.outbound import RateLimited, Rejected, TryAgain, check_status, raise_for_transient

from ._tokens import CachedToken, TokenRejected
from .base import ChatAdapter, Refused, TextLimit, check_fresh

TOKEN_ERRORS = frozenset({40001, 40014, 42001})  # invalid credential, invalid token, token expired
RATE_LIMITED = 45009  # api freq out of limit
SYSTEM_BUSY = -1


class WeComCallbackApp(ChatAdapter):
    """A WeCom corp app reached through its encrypted callback (``corp_id``, ``corp_secret``, ``token``,
    ``encoding_aes_key`` settings)."""

    webhook_methods = ("GET", "POST")
    default_api_base = "https://qyapi.weixin.qq.com"
    alert_text_limit = TextLimit(2048, "bytes")  # message/send and kf/send_msg cut longer text

    def __init__(self, settings: dict, http=None) -> None:
        super().__init__(settings, http)
        key = settings["encoding_aes_key"]
        if len(key) != 43:
            raise ValueError(f"{self.environment['encoding_aes_key']} must be the 43 characters WeCom shows, "
                             f"not {len(key)}")
        self._crypto = WeChatCrypto(settings["token"], key, settings["corp_id"])
        self._token = CachedToken(self._fetch_token, name=self.name)

    def verify(self, request: InboundRequest) -> None:
        check_fresh(request.query.get("timestamp"), self.clock())
        try:
            self._decrypt(request)
        except InvalidSignatureException:
            raise Refused(401, "msg_signature does not match") from None
        except InvalidCorpIdException:
            raise Refused(403, "the message was sealed for another CorpID") from None
        except Exception as error:  # noqa: BLE001 - anything undecryptable is refused, whatever broke
            raise Refused(401, f"undecryptable callback ({type(error).__name__})") from None

    def fetch_audio(self, message: ChatMessage, max_bytes: int) -> bytes:
        def download(token: str) -> bytes:
            return self.http.download(
                f"{self.api_base}/cgi-bin/media/get",
                params={"access_token": token, "media_id": message.media.ref},
                call="wecom media/get",
                max_bytes=max_bytes,
                check=_check_media,
            )

        return self._token.run(download)

    def _upload_image(self, image: bytes) -> str:
        uploaded = self._api("media/upload", query={"type": "image"}, files={"media": ("timeline.png", image, "image/png")})
        return uploaded["media_id"]

    def _api(self, path: str, *, query: dict | None = None, **kwargs) -> dict:
        def call(token: str) -> dict:
            return self.http.call(
                "POST",
                f"{self.api_base}/cgi-bin/{path}",
                params={"access_token": token, **(query or {})},
                call=f"wecom {path}",
                check=check_answer,
                **kwargs,
            )

        return self._token.run(call)

    def _fetch_token(self) -> tuple[str, float]:
        answer = self.http.call(
            "GET",
            f"{self.api_base}/cgi-bin/gettoken",
            params={"corpid": self.settings["corp_id"], "corpsecret": self.settings["corp_secret"]},
            call="wecom gettoken",
            check=functools.partial(check_answer, token_errors=frozenset()),
        )
        return answer["access_token"], float(answer.get("expires_in", 7200))

    def _decrypt(self, request: InboundRequest) -> str:
        query = request.query
        signature, timestamp, nonce = query["msg_signature"], query["timestamp"], query["nonce"]
        if request.method == "GET":
            return self._crypto.check_signature(signature, timestamp, nonce, query["echostr"])
        return self._crypto.decrypt_message(request.body, signature, timestamp, nonce)


def check_answer(response, token_errors: frozenset[int] = TOKEN_ERRORS) -> dict:
    """WeCom answers HTTP 200 with ``errcode``; 0 is success. Codes are compared, never messages."""
    raise_for_transient(response)
    try:
        body = response.json()
    except ValueError:
        raise TryAgain(f"HTTP {response.status_code} without a JSON body") from None
    code = body.get("errcode", 0)
    if code == 0:
        return body
    if code in token_errors:
        raise TokenRejected(f"errcode {code}")
    if code == RATE_LIMITED:
        raise RateLimited(None, "WeCom errcode 45009 (api freq out of limit)")
    if code == SYSTEM_BUSY:
        raise TryAgain("WeCom errcode -1 (system busy)")
    # errmsg continues with a hint and the caller's IP: keep its first clause.
    raise Rejected(f"WeCom errcode {code} ({str(body.get('errmsg', '')).split(',')[0]})")


def _check_media(response) -> None:
    """media/get answers the file itself, or a JSON error with HTTP 200."""
    check_status(response)
    if response.headers.get("Content-Type", "").startswith(("application/json", "text/plain")):
        check_answer(response)
        raise Rejected("media/get answered JSON without the file")
