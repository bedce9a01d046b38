"""A page's heavy frontend code, fetched and compiled while its script runs.

Streamlit's frontend is one HTML page for every route. It loads the code of an element (the data
grid of ``st.dataframe``: about 1.3 MB of JavaScript with what it imports; Plotly: 4.7 MB) only
when the script's first message naming that element arrives, after the websocket is open and the
server has run the page's script so far. On a first visit, the browser then fetches and compiles it
while the page waits. ``Preload`` adds ``<link rel="modulepreload">`` tags for the elements a page
draws at first sight (``PageSpec.draws`` and ``may_draw`` in ``app.PAGES``) to the HTML of that
page's route, so the browser fetches and compiles them from the start, in parallel with its own
start and the script.

The chunks are found in the installed Streamlit's ``static/js`` folder: ``<Element>.<hash>.js`` and
the modules it imports, less those the HTML already preloads. An element that has no chunk there (a
Streamlit that renamed it, or one without its frontend files) gets no tag, and the page is served as
Streamlit wrote it; ``tests/test_preload.py`` checks every name resolves.

The rewritten page is a representation of its own. Its ETag is the file's, marked with a hash of
the tags; a revalidation is answered here against that ETag (304, or the page), never with
Streamlit's answer for the file. It is always sent whole (a ``Range`` request for it is answered
with all of it, as the RFC allows), and a HEAD answer gives the GET answer's headers.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Awaitable, Callable, Iterable, Mapping, MutableMapping
from functools import cache
from pathlib import Path
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

_IMPORT = re.compile(rb'(?:from|import)\s*"\./([\w.\-]+\.js)"')  # a chunk's static imports
_PRELOADED = re.compile(rb'static/js/([\w.\-]+\.js)')          # what the HTML already loads
HEAD_END = b"</head>"


@cache
def static_dir() -> Path:
    """The installed Streamlit's frontend folder (``index.html`` and ``static/js``)."""
    from streamlit import file_util

    return Path(file_util.get_static_dir())


def chunks(elements: Iterable[str], static: Path | None = None) -> list[str]:
    """The ``static/js`` files the frontend loads for ``elements`` (``DataFrame``, ``PlotlyChart``):
    each element's own chunk, then what it imports, breadth first; without those ``index.html``
    already loads and without repeats. An element with no chunk, or not exactly one, is left out;
    a file that cannot be read (no frontend files) leaves out everything: no tags, no harm."""
    static = static or static_dir()
    js = static / "static" / "js"
    out: list[str] = []
    try:
        seen = set(_PRELOADED.findall((static / "index.html").read_bytes()))
        todo: list[bytes] = []
        for element in elements:
            found = sorted(js.glob(f"{element}.*.js"))
            if len(found) == 1:
                todo.append(found[0].name.encode())
        while todo:
            name = todo.pop(0)
            if name in seen:
                continue
            seen.add(name)
            out.append(name.decode())
            todo.extend(_IMPORT.findall((js / name.decode()).read_bytes()))
    except OSError:
        return []
    return out


def tags(elements: Iterable[str], static: Path | None = None) -> bytes:
    """The ``<link rel="modulepreload">`` tags for ``elements``' chunks (relative URLs, as
    Streamlit's own: they work under any base URL path)."""
    return b"".join(b'<link rel="modulepreload" crossorigin href="./static/js/%s">' % name.encode()
                    for name in chunks(elements, static))


class Preload:
    """ASGI middleware: the HTML of the routes in ``routes`` (URL path under the base path -> the
    elements its page draws first) gets their preload tags at the end of its ``<head>``. Any other
    request, and any response that is not a complete HTML document, passes untouched."""

    def __init__(self, app: Callable, routes: Mapping[str, Iterable[str]], base_url_path: str = "",
                 static: Path | None = None) -> None:
        self.app = app
        base = base_url_path.strip("/")
        self.links: dict[str, bytes] = {}  # request path -> tags
        for route, elements in routes.items():
            links = tags(elements, static)
            path = "/".join(part for part in (base, route.strip("/")) if part)
            if links:
                self.links[f"/{path}"] = self.links[f"/{path}/".replace("//", "/")] = links

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        method = scope.get("method")
        links = self.links.get(str(scope.get("path", ""))) if scope["type"] == "http" \
            and method in ("GET", "HEAD") else None
        if links is None:
            await self.app(scope, receive, send)
            return
        head = method == "HEAD"
        wanted = b",".join(v for k, v in scope.get("headers", []) if k.lower() == b"if-none-match")
        # The whole page as Streamlit writes it for a GET (a few KB), not compressed, not a 304, so
        # that the tags can go in; as a body of messages (not a file path to send), so that they
        # pass through here.
        scope = {**scope, "method": "GET",
                 "headers": [(k, v) for k, v in scope.get("headers", []) if k.lower() not in _WHOLE],
                 "extensions": {k: v for k, v in (scope.get("extensions") or {}).items()
                                if k != "http.response.pathsend"}}
        start: Message | None = None
        body = bytearray()

        async def sending(message: Message) -> None:
            nonlocal start
            if message["type"] == "http.response.start":
                start = message
                if not _is_plain_html(message):
                    await send(message)
                    start = None
                return
            if start is None or message["type"] != "http.response.body":
                await send({**message, "body": b""} if head and message["type"] == "http.response.body"
                           else message)
                return
            body.extend(message.get("body", b""))
            if message.get("more_body"):
                return
            page = bytes(body)
            if HEAD_END in page:
                page = page.replace(HEAD_END, links + HEAD_END, 1)
            headers = [(k, _own(v, links) if k.lower() == b"etag" else v)
                       for k, v in start.get("headers", [])
                       if k.lower() not in (b"content-length", b"accept-ranges")]
            etag = next((v for k, v in headers if k.lower() == b"etag"), None)
            if etag is not None and _matches(wanted, etag):
                await send({"type": "http.response.start", "status": 304,
                            "headers": [(k, v) for k, v in headers if k.lower() != b"content-type"]})
                await send({"type": "http.response.body", "body": b""})
                return
            await send({**start, "headers": [*headers, (b"content-length", str(len(page)).encode())]})
            await send({"type": "http.response.body", "body": b"" if head else page})

        await self.app(scope, receive, sending)


# request headers that would make the answer partial, compressed or a 304 for the file itself
_WHOLE = (b"accept-encoding", b"range", b"if-range", b"if-none-match", b"if-modified-since")


def _own(etag: bytes, links: bytes) -> bytes:
    """The rewritten page's ETag: Streamlit's file's, marked with its tags (other tags, e.g. after
    a page declares another element, make another ETag)."""
    mark = _mark(links)
    return etag[:-1] + mark + b'"' if etag.endswith(b'"') else etag + mark


@cache
def _mark(links: bytes) -> bytes:
    """The ETag mark of a route's tags (hashed once per route, not per request)."""
    return b"-preload-" + hashlib.sha256(links).hexdigest()[:8].encode()


def _matches(if_none_match: bytes, etag: bytes) -> bool:
    """Whether an ``If-None-Match`` value names ``etag`` (weakly compared, as the RFC says)."""
    def bare(tag: bytes) -> bytes:
        return tag.strip().removeprefix(b"W/")

    tags = [bare(t) for t in if_none_match.split(b",") if t.strip()]
    return b"*" in tags or bare(etag) in tags


def _is_plain_html(start: Message) -> bool:
    headers = {k.lower(): v for k, v in start.get("headers", [])}
    return (start.get("status") == 200 and headers.get(b"content-type", b"").startswith(b"text/html")
            and b"content-encoding" not in headers)
