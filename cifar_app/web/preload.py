"""A page's first view, started sooner: its heavy frontend code fetched, compiled and run while its
script runs, and the server found without a failed request.

Streamlit's frontend is one HTML page for every route. It loads the code of an element (the data
grid of ``st.dataframe``: about 1.3 MB of JavaScript with what it imports; Plotly: 4.7 MB) only
when the script's first message naming that element arrives, after the websocket is open and the
server has run the page's script so far. On a first visit, the browser then fetches, compiles and
runs it while the page waits (Plotly: about 1 s of this VM's browser, before it draws a chart).
``Preload`` adds to the HTML of each page's route, at the end of its ``<head>``:

- ``<link rel="modulepreload">`` tags for the elements the page draws at first sight
  (``PageSpec.draws`` and ``may_draw`` in ``app.PAGES``), so the browser fetches and compiles
  their code from the start, in parallel with its own start and the script;
- a module script that imports the code of the elements the page always draws (``draws``; not
  ``may_draw``, whose code may not be needed) as soon as the server has answered the page's request
  for its configuration (after which the frontend opens the websocket), so the browser runs it
  while the server runs the script, rather than after the script's messages came;
- for a page other than the default one, the server's base URL (``window.__streamlit``'s
  ``BACKEND_BASE_URL``, Streamlit's own setting for it) taken from the page's own URL. Without it,
  the frontend at ``/compare`` first asks ``/compare/_stcore/health``, gets a 404, waits 100 ms and
  asks ``/_stcore/health``: about 0.2 s of every first view of a page. With it, it asks the URL it
  would have fallen back to (the page's URL less the page's name) at once. A page embedded by a
  host that sets ``window.__streamlit`` itself is left to the host's settings.

The chunks are found in the installed Streamlit's ``static/js`` folder: ``<Element>.<hash>.js`` and
the modules it imports, less those the HTML already preloads. An element that has no chunk there (a
Streamlit that renamed it, or one without its frontend files) gets no tag and is not run early;
``tests/test_preload.py`` checks every name resolves.

The rewritten page is a representation of its own. Its ETag is the file's, marked with a hash of
what was added; a revalidation is answered here against that ETag (304, or the page), never with
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


def own_chunks(elements: Iterable[str], static: Path | None = None) -> list[str]:
    """Each element's own ``static/js`` file (``PlotlyChart.<hash>.js``), where it has exactly one."""
    js = (static or static_dir()) / "static" / "js"
    found = [sorted(js.glob(f"{element}.*.js")) for element in elements]
    return [names[0].name for names in found if len(names) == 1]


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
        todo = [name.encode() for name in own_chunks(elements, static)]
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


# Runs ``CHUNKS`` (their top-level code, as the frontend's own import would: the same URL, so the same
# module) once the answer to ``_stcore/host-config`` has come (its resource-timing entry): the
# frontend opens the websocket on that answer, and the server then runs the page's script. Sooner,
# the work would delay the websocket; later, it waits for the script's messages. (Seen in Chromium:
# the websocket is made 0.1-0.3 s before the import's task runs.) A failed import is left for the
# frontend's own to report.
_EARLY = ('<script type="module">new PerformanceObserver((list,observer)=>{'
          'if(list.getEntries().some(e=>e.name.endsWith("/_stcore/host-config"))){observer.disconnect();'
          'for(const u of CHUNKS)import(u).catch(()=>{})}}).observe({type:"resource",buffered:true})'
          '</script>')
# The server's base URL: ``UP`` resolved against the page's URL (the page's name taken off); not where
# the embedding page set ``window.__streamlit`` itself (its settings are its own).
_BASE = ('<script>if(window.__streamlit===undefined)window.__streamlit={BACKEND_BASE_URL:'
         'new URL(UP,location.href).href}</script>')


def early(elements: Iterable[str], static: Path | None = None) -> bytes:
    """The module script that runs ``elements``' code as the websocket opens (none without chunks)."""
    names = own_chunks(elements, static)
    urls = ",".join(f'"./static/js/{name}"' for name in names)
    return _EARLY.replace("CHUNKS", f"[{urls}]").encode() if names else b""


def base_url(route: str, slash: bool) -> bytes:
    """The script that tells the frontend at ``route`` (a page's URL path under the base path; with
    a trailing ``/`` if ``slash``) where the server is; none for the default page (its URL is the
    base URL, the frontend's first guess)."""
    depth = len([part for part in route.split("/") if part])
    if not depth:
        return b""
    up = "../" * depth if slash else "./" + "../" * (depth - 1)
    return _BASE.replace("UP", f'"{up}"').encode()


class Preload:
    """ASGI middleware: the HTML of the routes in ``routes`` (URL path under the base path -> the
    elements its page may draw first) gets their preload tags, the script that runs the code of
    those in ``run`` (route -> the elements it always draws; default: all of ``routes``') early,
    and (a page other than the default) the server's base URL, at the end of its ``<head>``. Any
    other request, and any response that is not a complete HTML document, passes untouched."""

    def __init__(self, app: Callable, routes: Mapping[str, Iterable[str]], base_url_path: str = "",
                 static: Path | None = None, run: Mapping[str, Iterable[str]] | None = None) -> None:
        self.app = app
        base = base_url_path.strip("/")
        self.heads: dict[str, bytes] = {}  # request path -> what goes at the end of its <head>
        for route, elements in routes.items():
            elements = tuple(elements)
            code = tags(elements, static) + early(elements if run is None else run.get(route, ()), static)
            path = "/" + "/".join(part for part in (base, route.strip("/")) if part)
            for request, slash in ((path, False), (f"{path}/".replace("//", "/"), True)):
                if head := code + base_url(route.strip("/"), slash):
                    self.heads[request] = head

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        method = scope.get("method")
        head = self.heads.get(str(scope.get("path", ""))) if scope["type"] == "http" \
            and method in ("GET", "HEAD") else None
        if head is None:
            await self.app(scope, receive, send)
            return
        is_head = method == "HEAD"
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
                await send({**message, "body": b""} if is_head and message["type"] == "http.response.body"
                           else message)
                return
            body.extend(message.get("body", b""))
            if message.get("more_body"):
                return
            page = bytes(body)
            if HEAD_END in page:
                page = page.replace(HEAD_END, head + HEAD_END, 1)
            headers = [(k, _own(v, head) if k.lower() == b"etag" else v)
                       for k, v in start.get("headers", [])
                       if k.lower() not in (b"content-length", b"accept-ranges")]
            etag = next((v for k, v in headers if k.lower() == b"etag"), None)
            if etag is not None and _matches(wanted, etag):
                await send({"type": "http.response.start", "status": 304,
                            "headers": [(k, v) for k, v in headers if k.lower() != b"content-type"]})
                await send({"type": "http.response.body", "body": b""})
                return
            await send({**start, "headers": [*headers, (b"content-length", str(len(page)).encode())]})
            await send({"type": "http.response.body", "body": b"" if is_head else page})

        await self.app(scope, receive, sending)


# request headers that would make the answer partial, compressed or a 304 for the file itself
_WHOLE = (b"accept-encoding", b"range", b"if-range", b"if-none-match", b"if-modified-since")


def _own(etag: bytes, head: bytes) -> bytes:
    """The rewritten page's ETag: Streamlit's file's, marked with its tags (other tags, e.g. after
    a page declares another element, make another ETag)."""
    mark = _mark(head)
    return etag[:-1] + mark + b'"' if etag.endswith(b'"') else etag + mark


@cache
def _mark(head: bytes) -> bytes:
    """The ETag mark of a route's additions (hashed once per route, not per request)."""
    return b"-preload-" + hashlib.sha256(head).hexdigest()[:8].encode()


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
