"""A stand-in for Telegram's Bot API on 127.0.0.1, so that ``make demo`` shows the chat side offline.

bot-bridge talks to it exactly as to api.telegram.org (``TELEGRAM_API_BASE``
points here): ``getFile`` and the file server hand out the demo's sample
recordings, and ``sendMessage`` / ``sendPhoto`` take the replies, alerts and
digests, which are shown on the demo's terminal. It serves nothing else and
no one but bot-bridge: answers have the Bot API's envelope
(``{"ok": true, "result": ...}``), calls with another token get its 401.
Werkzeug's threaded server runs it, in a thread of the demo's process.
"""

from __future__ import annotations

import itertools
import json
import logging
import threading
import time
from typing import Callable

from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

#: What the stand-in shows of each message bot-bridge sent: (chat id, text, whether a chart came with it).
Listener = Callable[[str, str, bool], None]


class TelegramStandIn:
    def __init__(self, token: str, files: dict[str, bytes], on_message: Listener) -> None:
        self.token = token
        self.files = files
        self.on_message = on_message
        self._message_ids = itertools.count(1)
        self._server = make_server("127.0.0.1", 0, self._app, threaded=True)
        logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no line per request on the demo's terminal

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_port}"

    def start(self) -> None:
        threading.Thread(target=self._server.serve_forever, name="telegram-stand-in", daemon=True).start()

    def stop(self) -> None:
        self._server.shutdown()

    @Request.application
    def _app(self, request: Request) -> Response:
        prefix, _, rest = request.path.lstrip("/").partition("/")
        if prefix == "file":  # /file/bot<token>/<file_path>
            token_part, _, file_path = rest.partition("/")
            if token_part != f"bot{self.token}":
                return _answer(401, {"ok": False, "error_code": 401, "description": "Unauthorized"})
            data = self.files.get(file_path.rpartition("/")[2].partition(".")[0])
            return Response(data, mimetype="audio/wav") if data is not None else Response(status=404)
        if prefix != f"bot{self.token}":
            return _answer(401, {"ok": False, "error_code": 401, "description": "Unauthorized"})
        params = request.get_json(silent=True) or request.form.to_dict()
        if rest == "getFile":
            return self._get_file(params.get("file_id", ""))
        if rest in ("sendMessage", "sendPhoto"):
            chat_id = str(params.get("chat_id"))
            self.on_message(chat_id, params.get("text") or params.get("caption") or "", rest == "sendPhoto")
            sent = {"message_id": next(self._message_ids), "date": int(time.time()), "chat": {"id": chat_id}}
            return _answer(200, {"ok": True, "result": sent})
        return _answer(200, {"ok": True, "result": True})  # setWebhook and the like: nothing to do here

    def _get_file(self, file_id: str) -> Response:
        if file_id not in self.files:
            return _answer(400, {"ok": False, "error_code": 400, "description": "Bad Request: invalid file_id"})
        result = {"file_id": file_id, "file_unique_id": file_id, "file_size": len(self.files[file_id]),
                  "file_path": f"samples/{file_id}.wav"}
        return _answer(200, {"ok": True, "result": result})


def _answer(status: int, body: dict) -> Response:
    return Response(json.dumps(body, ensure_ascii=False), status=status, mimetype="application/json")
