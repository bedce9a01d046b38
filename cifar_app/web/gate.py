"""The access policy at the server: one ASGI middleware in front of every route, Streamlit's own
included (``dashboard.py`` hands it to ``st.App``). What is allowed is decided in ``access.py``; this
module only finds, for each request, the action it is and whether the visitor holds the key.

- ``PUT/DELETE /_stcore/upload_file/...`` is ``Action.CHANGE``: refused (403) before its body is
  read unless allowed; an allowed upload still has to declare its length, and is refused before its
  body is read when it would pass a session's caps in count and bytes (``UPLOAD_FILES``,
  ``UPLOAD_BYTES``) or what the whole server may hold in uploads at once (``Uploads``);
- ``GET /media/...`` (downloads, images drawn for a session) is ``Action.DOWNLOAD``;
- ``/_stcore/metrics`` is internal: only with the key on an exposed server;
- on the websocket (``/_stcore/stream``), a message asking the server to clear its caches is
  ``Action.CHANGE`` and dropped when not allowed; on an exposed server, the path of the main script
  in Streamlit's session message is blanked (it is a server folder);
- everything else (the app's HTML, scripts, styles, health) passes: the pages decide themselves.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, Protocol

from cifar_app.web import access

_LOG = logging.getLogger(__name__)
Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

UPLOAD_FILES = 64  # files one browser session may upload
UPLOAD_BYTES = 200 * 2**20  # bytes one browser session may upload, all files together
HELD_MB = 400  # MiB all sessions' uploads may hold in the server at once, by default
HELD_MB_ENV = "CIFAR_APP_UPLOAD_MB"
HELD_MB_LEAST = 20  # one file of the largest size an upload may have (``inference.MAX_FILE_BYTES``)
BODY_IDLE_S = 30.0  # an upload's body may pause this long at most
BODY_BASE_S, BODY_RATE = 30.0, 64 * 2**10  # and must have arrived by BASE + declared length / RATE
RETRY_AFTER_S = 30  # said with a 503
_CLOSE = {"Connection": "close"}  # a refused body is not read on: the server closes the connection
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


def held_limit(env: MutableMapping[str, str] | None = None) -> int:
    """Bytes all sessions' uploads may hold in the server at once: ``$CIFAR_APP_UPLOAD_MB`` MiB
    (a positive whole number), else ``HELD_MB``."""
    raw = (os.environ if env is None else env).get(HELD_MB_ENV, "").strip()
    if not raw:
        return HELD_MB * 2**20
    if not re.fullmatch(r"[0-9]{1,7}", raw) or int(raw) < HELD_MB_LEAST:
        raise SystemExit(
            f"error: ${HELD_MB_ENV} must be a whole number of MiB, at least {HELD_MB_LEAST} (one file "
            f"of the largest size), not {raw[:40]!r}"
        )
    return int(raw) * 2**20


def upload_help() -> str:
    """The caps, as a visitor whose file shows "Request failed with status code ..." needs them
    (Streamlit's uploader shows the status, not the server's message)."""
    return (
        f"One visit may upload {UPLOAD_FILES} files, {UPLOAD_BYTES // 2**20} MB in all (a file "
        "past that shows error 413 or 429: reload the page for a new visit). All visitors' "
        f"files together may hold {held_limit() // 2**20} MB of the server's memory (error 503: "
        "remove files you are done with, or try again later)."
    )


class Holder(Protocol):
    """What ``Uploads`` needs of the server that keeps the files (``StreamlitUploads``)."""

    def connected(self, session: str) -> bool: ...  # may upload now (Streamlit refuses others)
    def alive(self, session: str) -> bool: ...  # connected, or kept for it to reconnect
    def holders(self) -> list[str]: ...  # sessions holding files
    def held(self) -> int: ...  # bytes held, all sessions
    def drop(self, session: str) -> None: ...  # free a session's files


class Uploads:
    """The caps on uploads, checked before a body is read (and the body then held to what it
    declared: ``body``):

    - only a connected session may upload (Streamlit refuses the others, after the gate would
      have counted them);
    - each session: at most ``UPLOAD_FILES`` files and ``UPLOAD_BYTES`` bytes in its life;
    - the server: what its sessions hold, plus what uploads under way declared, at most ``limit``
      bytes (503 past it: the next visitor may find room once others remove files or leave);
    - a session that is gone (neither connected nor kept to reconnect) has its files freed
      (``reclaim``, at each new visitor and each upload). Streamlit frees them only when it ends a
      session itself; one that is dropped from its reconnect store after a closed tab (two minutes
      later) keeps its files in the server's memory until the server stops.
    """

    def __init__(self, holder: Holder, limit: int) -> None:
        self.holder, self.limit = holder, limit
        self._sessions: dict[str, tuple[int, int]] = {}  # session id -> (files, bytes) accepted
        self._under_way = 0  # bytes declared by uploads admitted and not yet answered
        self._lock = threading.Lock()

    def admit(self, session: str, length: str | None) -> tuple[tuple[int, str] | None, int]:
        """(refusal or None, the bytes reserved for it: pass them to ``done`` once it is answered)."""
        try:
            size = int(length or "")
        except ValueError:
            return (411, "an upload must declare its length"), 0
        if size < 0:
            return (400, "a negative length"), 0
        if not self.holder.connected(session):
            return (400, "no such session, or it is not connected"), 0
        try:
            self.reclaim()
        except Exception:  # noqa: BLE001 - freeing others' files is never a reason to refuse this one
            _LOG.exception("could not free the uploads of sessions that are gone")
        with self._lock:
            files, used = self._sessions.get(session, (0, 0))
            if files + 1 > UPLOAD_FILES:
                return (429, f"at most {UPLOAD_FILES} uploads per session"), 0
            if used + size > UPLOAD_BYTES:
                return (413, f"at most {UPLOAD_BYTES // 2**20} MB of uploads per session"), 0
            if self.holder.held() + self._under_way + size > self.limit:
                return (
                    503,
                    f"the server holds all the uploads it may ({self.limit // 2**20} MB) for "
                    "now: remove files you are done with, or try again later",
                ), 0
            self._sessions[session] = (files + 1, used + size)
            self._under_way += size
        return None, size

    def done(self, size: int) -> None:
        with self._lock:
            self._under_way -= size

    @staticmethod
    def body(receive: Receive, size: int) -> Receive:
        """``receive`` for an admitted upload of ``size`` declared bytes: a body longer than that
        (a chunked one behind a small Content-Length) is refused (400), and one that pauses more
        than ``BODY_IDLE_S`` or comes slower than ``BODY_RATE`` is dropped (408), so that what was
        reserved for it is not held by a stalled client."""
        import asyncio

        from starlette.exceptions import HTTPException

        deadline = time.monotonic() + BODY_BASE_S + size / BODY_RATE
        got, ended = 0, False

        async def guarded() -> Message:
            nonlocal got, ended
            if ended:  # the body is in: what follows is the wait for a disconnect
                return await receive()
            left = min(BODY_IDLE_S, deadline - time.monotonic())
            try:
                message = await asyncio.wait_for(receive(), timeout=max(left, 0.0))
            except asyncio.TimeoutError:
                raise HTTPException(408, "the upload's body came too slowly", _CLOSE) from None
            if message.get("type") == "http.request":
                got += len(message.get("body", b""))
                if got > size:
                    raise HTTPException(400, "the body is longer than the length it declared", _CLOSE)
                ended = not message.get("more_body", False)
            return message

        return guarded

    def reclaim(self) -> None:
        """Free the files of sessions that are gone (neither connected nor kept to reconnect: then
        Streamlit would not resume them either), and forget their counts."""
        for session in self.holder.holders():
            if not self.holder.alive(session):
                self.holder.drop(session)
        with self._lock:
            for session in [s for s in self._sessions if not self.holder.alive(s)]:
                del self._sessions[session]


class StreamlitUploads:
    """Streamlit's store of uploaded files, and its sessions (the running server's runtime)."""

    @staticmethod
    def _runtime() -> Any:
        from streamlit.runtime import Runtime

        return Runtime.instance()

    def connected(self, session: str) -> bool:
        return self._runtime().is_active_session(session)

    def alive(self, session: str) -> bool:
        # Active, or kept for a reconnect (the session manager's public ``get_session_info``;
        # ``Runtime`` itself only says whether a session is connected).
        return self._runtime()._session_mgr.get_session_info(session) is not None

    def holders(self) -> list[str]:
        return list(self._runtime().uploaded_file_mgr.file_storage)

    def held(self) -> int:
        from streamlit.runtime.stats import CACHE_MEMORY_FAMILY

        stats = self._runtime().uploaded_file_mgr.get_stats([CACHE_MEMORY_FAMILY])
        return sum(s.byte_length for s in stats.get(CACHE_MEMORY_FAMILY, []))

    def drop(self, session: str) -> None:
        self._runtime().uploaded_file_mgr.remove_session_files(session)


class Gate:
    """ASGI middleware applying ``access.Policy`` to Streamlit's routes (see the module docstring)."""

    def __init__(
        self,
        app: Callable,
        policy: access.Policy | None = None,
        base_url_path: str = "",
        uploads: Uploads | None = None,
    ) -> None:
        self.app = app
        self.policy = policy or access.Policy(token_required=False)
        base = base_url_path.strip("/")
        self.base = f"/{base}" if base else ""
        self.uploads = uploads or Uploads(StreamlitUploads(), held_limit())

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
            if path.startswith(UPLOAD) and scope.get("method") in ("PUT", "POST"):
                await self._upload(scope, path, receive, send)
                return
        elif scope["type"] == "websocket" and path == STREAM:
            try:
                self.uploads.reclaim()  # a new visitor: free what gone visitors left
            except Exception:  # noqa: BLE001 - never a reason to turn a visitor away
                _LOG.exception("could not free the uploads of sessions that are gone")
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
        if path.startswith(MEDIA) and not self._allows(access.Action.DOWNLOAD, scope):
            return 403, "files need the access token"
        if path == METRICS and self.policy.token_required and not self._granted(scope):
            return 403, "this needs the access token"
        return None

    async def _upload(self, scope: Scope, path: str, receive: Receive, send: Send) -> None:
        """Pass an allowed upload on if the caps admit it; what it declared is held for it until
        Streamlit has answered (by then the file is in Streamlit's store, or refused)."""
        session = path[len(UPLOAD) :].split("/", 1)[0]
        if _header(scope, b"transfer-encoding") is not None:  # its length is not the one declared
            await _respond(send, 411, "an upload must declare its length, not come in chunks")
            return
        refusal, size = self.uploads.admit(session, _header(scope, b"content-length"))
        if refusal is not None:
            await _respond(send, *refusal)
            return
        try:
            await self.app(scope, self.uploads.body(receive, size), send)
        finally:
            self.uploads.done(size)

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
    headers = [
        (b"content-type", b"text/plain; charset=utf-8"),
        (b"content-length", str(len(body)).encode()),
        (b"cache-control", b"no-store"),
        (b"connection", b"close"),  # what the client may still send of a body is not read
    ]
    if status == 503:
        headers.append((b"retry-after", str(RETRY_AFTER_S).encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
