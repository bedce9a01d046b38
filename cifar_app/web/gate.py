"""The access policy at the server: one ASGI middleware in front of every route, Streamlit's own
included (``dashboard.py`` hands it to ``st.App``). What is allowed is decided in ``access.py``; this
module only finds, for each request, the action it is and whether the visitor holds the key.

- ``PUT/DELETE /_stcore/upload_file/...`` is ``Action.CHANGE``: refused (403) before its body is
  read unless allowed; an allowed upload still has to declare its length, and a session's uploads
  are capped in count and bytes (``UPLOAD_FILES``, ``UPLOAD_BYTES``);
- ``GET /media/...`` (downloads, images drawn for a session) is ``Action.DOWNLOAD``;
- ``/_stcore/metrics`` is internal: only with the key on an exposed server;
- on the websocket (``/_stcore/stream``), a message asking the server to clear its caches is
  ``Action.CHANGE`` and dropped when not allowed; on an exposed server, the path of the main script
  in Streamlit's session message is blanked (it is a server folder);
- everything else (the app's HTML, scripts, styles, health) passes: the pages decide themselves.
"""

from __future__ import annotations

import threading
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from cifar_app.web import access

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

UPLOAD_FILES = 64  # files one browser session may upload
UPLOAD_BYTES = 200 * 2**20  # bytes one browser session may upload, all files together
UPLOAD = "/_stcore/upload_file/"
MEDIA = "/media/"
METRICS = "/_stcore/metrics"
STREAM = "/_stcore/stream"


def _cookies(scope: Scope) -> dict[str, str]:
    """The request's cookies, parsed as Starlette parses them (leniently: one malformed cookie of
    another app on this host does not hide the others)."""
    from starlette.requests import cookie_parser

    raw = b"; ".join(v for k, v in scope.get("headers", []) if k == b"cookie").decode("latin-1")
    return cookie_parser(raw)


def _header(scope: Scope, name: bytes) -> str | None:
    return next((v.decode("latin-1") for k, v in scope.get("headers", []) if k == name), None)


class Gate:
    """ASGI middleware applying ``access.Policy`` to Streamlit's routes (see the module docstring)."""

    def __init__(self, app: Callable, policy: access.Policy | None = None, base_url_path: str = "") -> None:
        self.app = app
        self.policy = policy or access.Policy(token_required=False)
        base = base_url_path.strip("/")
        self.base = f"/{base}" if base else ""
        self._uploads: dict[str, tuple[int, int]] = {}  # session id -> (files, bytes) accepted
        self._lock = threading.Lock()

    def _granted(self, scope: Scope) -> bool:
        keys = (
            _header(scope, access.ROUTE_KEY_HEADER.lower().encode()),
            _cookies(scope).get(access.KEY_COOKIE),
        )
        return access.key_granted(keys, access.server_token()[0])

    def _allows(self, action: access.Action, scope: Scope) -> bool:
        return self.policy.allows(action, not self.policy.token_required or self._granted(scope))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = str(scope.get("path", ""))
        if self.base and path.startswith(self.base):
            path = path[len(self.base) :]
        if scope["type"] == "http":
            refusal = self._refusal(scope, path)
            if refusal is not None:
                await _respond(send, *refusal)
                return
        elif scope["type"] == "websocket" and path == STREAM:
            receive = self._filtered(scope, receive)
            if self.policy.token_required:
                send = _without_script_path(send)
        await self.app(scope, receive, send)

    def _refusal(self, scope: Scope, path: str) -> tuple[int, str] | None:
        """(status, message) when the request may not go on; None when it may."""
        method = scope.get("method", "GET")
        if path.startswith(UPLOAD) and method in ("PUT", "DELETE", "POST"):
            if not self._allows(access.Action.CHANGE, scope):
                return 403, "uploads need the access token"
            if method == "DELETE":
                return None
            return self._count_upload(path, _header(scope, b"content-length"))
        if path.startswith(MEDIA) and not self._allows(access.Action.DOWNLOAD, scope):
            return 403, "files need the access token"
        if path == METRICS and self.policy.token_required and not self._granted(scope):
            return 403, "this needs the access token"
        return None

    def _count_upload(self, path: str, length: str | None) -> tuple[int, str] | None:
        session = path[len(UPLOAD) :].split("/", 1)[0]
        try:
            size = int(length or "")
        except ValueError:
            return 411, "an upload must declare its length"
        if size < 0:
            return 400, "a negative length"
        with self._lock:
            files, used = self._uploads.get(session, (0, 0))
            if files + 1 > UPLOAD_FILES:
                return 429, f"at most {UPLOAD_FILES} uploads per session"
            if used + size > UPLOAD_BYTES:
                return 413, f"at most {UPLOAD_BYTES // 2**20} MB of uploads per session"
            self._uploads[session] = (files + 1, used + size)
        return None

    def _filtered(self, scope: Scope, receive: Receive) -> Receive:
        """``receive`` without the websocket messages this visitor may not send."""
        allowed = self._allows(access.Action.CHANGE, scope)

        async def filtered() -> Message:
            while True:
                message = await receive()
                if allowed or message.get("type") != "websocket.receive" or not message.get("bytes"):
                    return message
                if _back_message_kind(message["bytes"]) not in FORBIDDEN_BACK_MESSAGES:
                    return message

        return filtered


FORBIDDEN_BACK_MESSAGES = frozenset({"clear_cache"})  # server state a visitor may not change


def _back_message_kind(data: bytes) -> str | None:
    from streamlit.proto.BackMsg_pb2 import BackMsg

    msg = BackMsg()
    try:
        msg.ParseFromString(data)
    except Exception:  # noqa: BLE001 - not a BackMsg: Streamlit itself will refuse it
        return None
    return msg.WhichOneof("type")


def _without_script_path(send: Send) -> Send:
    """``send`` with the main script's path blanked in Streamlit's session messages."""
    from streamlit.proto.ForwardMsg_pb2 import ForwardMsg

    async def sending(message: Message) -> None:
        data = message.get("bytes") if message.get("type") == "websocket.send" else None
        if data:
            msg = ForwardMsg()
            try:
                msg.ParseFromString(data)
            except Exception:  # noqa: BLE001 - not ours to judge
                msg = None
            if msg is not None and msg.WhichOneof("type") == "new_session":
                msg.new_session.main_script_path = "dashboard.py"
                message = {**message, "bytes": msg.SerializeToString()}
        await send(message)

    return sending


async def _respond(send: Send, status: int, text: str) -> None:
    body = text.encode("utf-8")
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"text/plain; charset=utf-8"),
                (b"content-length", str(len(body)).encode()),
                (b"cache-control", b"no-store"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
