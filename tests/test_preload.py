"""``web.preload``: a page's heavy frontend chunks are named in its HTML, with the script that runs
them early and the server's base URL, and nothing else changes.

The browser side (the chunks are fetched before the websocket opens, the page draws the elements
they hold, Plotly's code runs while the script's messages are held back, and a page asks the
server's health once, at its base URL) is in ``tests/test_browser.py``.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from cifar_app.web import app, preload


def fake_static(tmp_path: Path) -> Path:
    """A Streamlit-like static folder: index.html preloads ``shared.js``; ``Grid.ab12.js`` imports
    it and ``cells.js``, which imports ``fmt.js``; ``Chart.cd34.js`` imports ``fmt.js`` too."""
    js = tmp_path / "static" / "js"
    js.mkdir(parents=True)
    (tmp_path / "index.html").write_text(
        '<html><head><script type="module" src="./static/js/main.js"></script>'
        '<link rel="modulepreload" crossorigin href="./static/js/shared.js"></head><body></body></html>')
    files = {
        "main.js": 'import"./shared.js";',
        "shared.js": "export const s=1;",
        "Grid.ab12.js": 'import{s}from"./shared.js";import{c}from "./cells.js";export default 1;',
        "cells.js": 'import{f}from"./fmt.js";export const c=2;',
        "fmt.js": "export const f=3;",
        "Chart.cd34.js": 'import{f}from"./fmt.js";import"./Grid.ab12.js";',
        "Twice.aa.js": "", "Twice.bb.js": "",
    }
    for name, text in files.items():
        (js / name).write_text(text)
    return tmp_path


def test_an_element_s_chunks_are_its_own_then_its_imports_less_what_the_page_loads(tmp_path):
    static = fake_static(tmp_path)
    assert preload.chunks(["Grid"], static) == ["Grid.ab12.js", "cells.js", "fmt.js"]
    assert preload.chunks(["Chart", "Grid"], static) == [
        "Chart.cd34.js", "Grid.ab12.js", "fmt.js", "cells.js"]
    assert preload.chunks(["Missing", "Twice"], static) == []  # no chunk, or not exactly one: no tag
    assert preload.chunks(["Grid"], tmp_path / "no-frontend") == []  # nothing to read: no tags, no error
    assert preload.tags(["Grid"], static).count(b'rel="modulepreload"') == 3
    assert preload.own_chunks(["Chart", "Missing", "Twice", "Grid"], static) == [
        "Chart.cd34.js", "Grid.ab12.js"]


def test_the_early_script_imports_each_element_s_own_chunk_once_the_host_config_is_asked(tmp_path):
    static = fake_static(tmp_path)
    script = preload.early(["Chart", "Missing", "Grid"], static).decode()
    assert script.startswith('<script type="module">') and script.endswith("</script>")
    assert '["./static/js/Chart.cd34.js","./static/js/Grid.ab12.js"]' in script  # not their imports
    assert '"/_stcore/host-config"' in script and "buffered:true" in script
    assert preload.early(["Missing"], static) == b"" == preload.early([], static)


@pytest.mark.parametrize("route, slash, up", [("", False, None), ("", True, None), ("compare", False, "./"),
                                              ("compare", True, "../"), ("a/b", False, "./../"),
                                              ("a/b", True, "../../")])
def test_a_page_s_base_url_is_its_own_url_less_its_name(route, slash, up):
    script = preload.base_url(route, slash)
    if up is None:  # the default page: its URL is the base URL, the frontend's first guess
        assert script == b""
    else:
        assert script == (b"<script>if(window.__streamlit===undefined)window.__streamlit={BACKEND_BASE_URL:"
                          b'new URL("%s",location.href).href}</script>' % up.encode())


def test_every_element_a_page_draws_has_its_chunk_in_the_installed_streamlit():
    """A Streamlit that renames a chunk would silently drop its preload: this names it."""
    drawn = {e for p in app.PAGES for e in p.preloads}
    assert drawn, "no page declares what it draws"
    for element in drawn:
        names = preload.chunks([element])
        assert names and names[0].startswith(f"{element}."), element
        assert all((preload.static_dir() / "static" / "js" / n).is_file() for n in names)


def run_asgi(site: tuple[dict, Path], path: str, *, body_parts: list[bytes],
             content_type: bytes = b"text/html", method: str = "GET", status: int = 200,
             encoding: bytes | None = None, if_none_match: bytes | None = None):
    """Request ``path`` through ``Preload`` over ``site`` (routes, static folder); the inner app
    records the request headers it got and answers ``body_parts``. Returns (inner request headers,
    messages sent)."""
    seen: dict = {}

    async def inner(scope, receive, send):
        seen["headers"], seen["extensions"] = scope["headers"], scope.get("extensions", {})
        seen["method"] = scope["method"]
        length = str(sum(map(len, body_parts))).encode()
        headers = [(b"content-type", content_type), (b"content-length", length), (b"etag", b'"abc"'),
                   (b"accept-ranges", b"bytes")]
        if encoding:
            headers.append((b"content-encoding", encoding))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        for i, part in enumerate(body_parts):
            await send({"type": "http.response.body", "body": part, "more_body": i < len(body_parts) - 1})

    sent: list = []

    async def send(message):
        sent.append(message)

    async def receive():
        return {"type": "http.request", "body": b""}

    scope = {"type": "http", "method": method, "path": path, "extensions": {"http.response.pathsend": {}},
             "headers": [(b"accept-encoding", b"gzip"), (b"range", b"bytes=0-9"), (b"if-range", b'"abc"'),
                         (b"if-modified-since", b"Sun, 06 Dec 2026 06:38:39 GMT"), (b"host", b"x")]
             + ([(b"if-none-match", if_none_match)] if if_none_match else [])}
    routes, static = site
    asyncio.run(preload.Preload(inner, routes, static=static)(scope, receive, send))
    return seen, sent


@pytest.fixture
def site(tmp_path) -> tuple[dict, Path]:
    return {"": ["Grid"], "compare": ["Chart"]}, fake_static(tmp_path)


def body_of(sent) -> bytes:
    return b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")


def length_of(sent) -> int:
    [length] = [int(v) for k, v in sent[0]["headers"] if k == b"content-length"]  # one, and right
    return length


PAGE = [b"<html><head><title>x</title>", b"</head><body></body></html>"]  # sent in two parts


@pytest.mark.parametrize("path", ["/", "/compare", "/compare/"])
def test_a_page_route_s_html_gets_its_tags_in_its_head_with_the_right_length(site, path):
    inner, sent = run_asgi(site, path, body_parts=PAGE)
    page = body_of(sent)
    elements = ["Grid" if path == "/" else "Chart"]
    want = preload.tags(elements, site[1]) + preload.early(elements, site[1]) + preload.base_url(
        path.strip("/"), path.endswith("/") and path != "/")
    assert page == b"".join(PAGE).replace(b"</head>", want + b"</head>") and len(page) == length_of(sent)
    # asked whole and uncompressed, as messages (not a file to send), so the tags can go in
    assert dict(inner["headers"]).keys() == {b"host"} and "http.response.pathsend" not in inner["extensions"]
    answer = dict(sent[0]["headers"])
    assert answer[b"etag"] == own_etag(want) and b"accept-ranges" not in answer  # its own representation


def own_etag(links: bytes) -> bytes:
    import hashlib

    return b'"abc-preload-' + hashlib.sha256(links).hexdigest()[:8].encode() + b'"'


def test_head_gets_the_headers_get_gets_and_no_body(site):
    _, got = run_asgi(site, "/", body_parts=PAGE)
    inner, head = run_asgi(site, "/", body_parts=PAGE, method="HEAD")
    assert inner["method"] == "GET" and body_of(head) == b""
    assert head[0]["headers"] == got[0]["headers"] and head[0]["status"] == 200


@pytest.mark.parametrize("asked, status", [("ours", 304), ("weak ours", 304), ("any", 304),
                                           ("the file's", 200), ("other tags", 200)])
def test_a_revalidation_is_answered_for_the_page_not_the_file(site, asked, status):
    mine = own_etag(preload.tags(["Grid"], site[1]) + preload.early(["Grid"], site[1]))
    header = {"ours": b'"zzz", ' + mine, "weak ours": b"W/" + mine, "any": b"*", "the file's": b'"abc"',
              "other tags": b'"abc-preload-00000000"'}[asked]
    inner, sent = run_asgi(site, "/", body_parts=PAGE, if_none_match=header)
    assert b"if-none-match" not in dict(inner["headers"])  # Streamlit is asked for the whole file
    assert sent[0]["status"] == status and dict(sent[0]["headers"])[b"etag"] == mine
    assert (body_of(sent) == b"") is (status == 304)


@pytest.mark.parametrize("case", ["other route", "static file", "post", "not html", "compressed",
                                  "error"])
def test_everything_else_passes_untouched(site, case):
    kwargs = {"other route": dict(path="/train"), "static file": dict(path="/static/js/x.js"),
              "post": dict(path="/", method="POST"), "not html": dict(path="/", content_type=b"text/plain"),
              "compressed": dict(path="/", encoding=b"gzip"), "error": dict(path="/", status=500)}[case]
    _, sent = run_asgi(site, kwargs.pop("path"), body_parts=PAGE, **kwargs)
    assert body_of(sent) == b"".join(PAGE) and length_of(sent) == len(b"".join(PAGE))
    assert dict(sent[0]["headers"])[b"etag"] == b'"abc"'



def test_the_server_preloads_its_pages_under_its_base_url_path(monkeypatch, tmp_path):
    """``app.server()`` hands Streamlit a ``Preload`` for every page, at the server's base URL path."""
    from streamlit import config

    monkeypatch.setenv("CIFAR_APP_RUNS", str(tmp_path / "runs"))
    monkeypatch.setattr(app, "_list_once", lambda: None)  # no warm-up thread outliving the test
    config.set_option("server.baseUrlPath", "lab")
    try:
        middleware = app.server()["middleware"]
    finally:
        config.set_option("server.baseUrlPath", "")
    [spec] = [m for m in middleware if m.cls is preload.Preload]
    built = preload.Preload(None, *spec.args, **spec.kwargs)
    routes = [f"/lab/{p.route}".rstrip("/") for p in app.PAGES]  # every page: the base URL
    assert len(routes) == len(app.PAGES) and set(built.heads) == {*routes, *(f"{r}/" for r in routes)}
    assert spec.kwargs["run"] == {p.route: p.draws for p in app.PAGES}  # may_draw: fetched, not run
    assert [m.cls.__name__ for m in middleware] == ["Gate", "Preload"]  # the access policy first


def test_under_a_base_url_path_the_page_routes_move_with_it(tmp_path):
    static = fake_static(tmp_path)
    mw = preload.Preload(None, {"": ["Grid"], "compare": ["Chart"]}, base_url_path="/lab/", static=static)
    assert set(mw.heads) == {"/lab", "/lab/", "/lab/compare", "/lab/compare/"}
    assert set(preload.Preload(None, {"": ["Grid"]}, static=static).heads) == {"/"}
    # only what a page always draws runs early; what it may draw is fetched and compiled only
    some = preload.Preload(None, {"compare": ["Chart", "Grid"]}, static=static, run={"compare": ["Chart"]})
    assert some.heads["/compare"] == (preload.tags(["Chart", "Grid"], static)
                                      + preload.early(["Chart"], static) + preload.base_url("compare", False))
    # a page that draws nothing heavy gets its base URL only; the default page then nothing at all
    plain = preload.Preload(None, {"": [], "train": []}, base_url_path="lab", static=static)
    assert plain.heads == {"/lab/train": preload.base_url("train", False),
                           "/lab/train/": preload.base_url("train", True)}
