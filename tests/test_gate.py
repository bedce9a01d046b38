"""The access policy holds at the server, on Streamlit's own routes, against raw HTTP and websocket
clients (no browser): a visitor without the token cannot upload, clear the server's caches, fetch
media or metrics, or read the server's script path. Each server is ``streamlit run dashboard.py``
in its own process group on 127.0.0.1, ended by its id; every request loop is bounded."""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from cifar_app.web import access, gate
from tests.conftest import ROOT

websockets = pytest.importorskip("websockets")
TOKEN = "gate-test-token-0123456789"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """``streamlit run dashboard.py`` on loopback with the exposed-mode environment ``env``."""

    def __init__(self, base: Path, **env: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = base / "server.log"
        self.log = open(self.log_path, "wb")
        full = {
            **os.environ,
            "CIFAR_APP_RUNS": str(base / "runs"),
            "CIFAR_APP_REFERENCE_RUNS": "",
            "CIFAR_APP_REQUIRE_TOKEN": "1",
            **env,
        }
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "streamlit",
                "run",
                "dashboard.py",
                "--server.port",
                str(self.port),
                "--server.address",
                "127.0.0.1",
                "--server.headless",
                "true",
            ],
            cwd=ROOT,
            env=full,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                if urllib.request.urlopen(f"{self.url}/_stcore/health", timeout=2).status == 200:
                    return
            except OSError:
                time.sleep(0.3)
        self.stop()
        raise RuntimeError(self.log_path.read_text())

    def stop(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=10)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.log.close()

    def xsrf(self) -> str:
        with urllib.request.urlopen(f"{self.url}/_stcore/health", timeout=10) as r:
            cookies = r.headers.get_all("Set-Cookie") or []
        for c in cookies:
            if c.startswith("_streamlit_xsrf="):
                return c.split(";", 1)[0].split("=", 1)[1]
        raise AssertionError(f"no XSRF cookie in {cookies}")

    def request(self, method: str, path: str, body: bytes = b"", headers: dict | None = None) -> int:
        """The status; a server that answers before the body is sent (and closes) is read anyway."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            conn.putrequest(method, path)
            for k, v in {**(headers or {}), "Content-Length": str(len(body))}.items():
                conn.putheader(k, v)
            conn.endheaders()
            try:
                for i in range(0, len(body), 65536):
                    conn.send(body[i : i + 65536])
            except (BrokenPipeError, ConnectionResetError):
                pass  # refused before its body was read
            return conn.getresponse().status
        finally:
            conn.close()


async def _session(server: Server, xsrf: str, cookie: str = "", then: list[bytes] = (), wait_s: float = 20):
    """Open Streamlit's websocket as its frontend does, start the script, send ``then`` once it has
    finished, and return (session id, the ForwardMsgs received) once the script run after that has
    finished too (bounded by ``wait_s``)."""
    from streamlit.proto.BackMsg_pb2 import BackMsg
    from streamlit.proto.ForwardMsg_pb2 import ForwardMsg

    headers = {"Cookie": f"_streamlit_xsrf={xsrf}" + (f"; {cookie}" if cookie else ""), "Origin": server.url}
    uri = server.url.replace("http", "ws") + "/_stcore/stream"
    received, session_id = [], None
    async with websockets.connect(
        uri, subprotocols=["streamlit", xsrf], additional_headers=headers, max_size=None
    ) as ws:
        rerun = BackMsg()
        rerun.rerun_script.query_string = ""
        rerun.rerun_script.page_script_hash = ""
        await ws.send(rerun.SerializeToString())
        deadline = time.time() + wait_s
        finished = 0
        while time.time() < deadline and finished < 1 + (1 if then else 0):
            try:
                data = await asyncio.wait_for(ws.recv(), timeout=max(0.1, deadline - time.time()))
            except asyncio.TimeoutError:
                break
            msg = ForwardMsg()
            msg.ParseFromString(data)
            received.append(msg)
            kind = msg.WhichOneof("type")
            if kind == "new_session":
                session_id = msg.new_session.initialize.session_id or session_id
            if kind == "script_finished":
                finished += 1
                if finished == 1:  # the first run is over: now what the caller sends
                    for extra in then:
                        await ws.send(extra)
    return session_id, received


def _multipart(name: str, payload: bytes) -> tuple[bytes, str]:
    boundary = "gate-test-boundary"
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n"
        ).encode()
        + payload
        + f"\r\n--{boundary}--\r\n".encode()
    )
    return body, f"multipart/form-data; boundary={boundary}"


@pytest.fixture(scope="module", params=["private", "public-read"])
def exposed(request, tmp_path_factory):
    env = {"CIFAR_APP_TOKEN": TOKEN}
    if request.param == "public-read":
        env["CIFAR_APP_PUBLIC_READ"] = "1"
    server = Server(tmp_path_factory.mktemp(request.param), **env)
    yield server
    server.stop()


def test_a_visitor_without_the_token_cannot_upload(exposed):
    xsrf = exposed.xsrf()
    session_id, _ = asyncio.run(_session(exposed, xsrf))
    assert session_id
    body, ctype = _multipart("big.bin", b"\0" * (2 * 2**20))
    headers = {"Content-Type": ctype, "X-Xsrftoken": xsrf, "Cookie": f"_streamlit_xsrf={xsrf}"}
    for i in range(3):  # bounded: a few tries, each refused before its body is read
        assert (
            exposed.request("PUT", f"/_stcore/upload_file/{session_id}/never-issued-{i}", body, headers)
            == 403
        )
    key = access.route_key(TOKEN)
    with_key = {**headers, "Cookie": f"_streamlit_xsrf={xsrf}; {access.KEY_COOKIE}={key}"}
    assert exposed.request("PUT", f"/_stcore/upload_file/{session_id}/with-key", body, with_key) != 403


def test_a_visitor_without_the_token_cannot_fetch_media_or_metrics(exposed):
    assert exposed.request("GET", "/media/0123456789abcdef0123456789abcdef.png") == 403
    assert exposed.request("GET", "/_stcore/metrics") == 403
    assert exposed.request("GET", "/_stcore/health") == 200
    key = {"Cookie": f"{access.KEY_COOKIE}={access.route_key(TOKEN)}"}
    assert exposed.request("GET", "/media/0123456789abcdef0123456789abcdef.png", headers=key) == 404


def test_the_main_script_path_is_not_sent_to_a_visitor(exposed):
    _, msgs = asyncio.run(_session(exposed, exposed.xsrf()))
    paths = [m.new_session.main_script_path for m in msgs if m.WhichOneof("type") == "new_session"]
    assert paths and all(p == "dashboard.py" for p in paths), paths
    assert str(ROOT) not in "".join(str(m) for m in msgs)


def test_a_visitor_without_the_token_cannot_clear_the_caches(tmp_path):
    """A generated token is announced once per server (``st.cache_resource``); clearing the caches
    would announce it again."""
    from streamlit.proto.BackMsg_pb2 import BackMsg

    server = Server(tmp_path)  # no CIFAR_APP_TOKEN: generated and printed once
    try:
        clear = BackMsg()
        clear.clear_cache = True
        rerun = BackMsg()
        rerun.rerun_script.query_string = ""
        asyncio.run(
            _session(server, server.xsrf(), then=[clear.SerializeToString(), rerun.SerializeToString()])
        )
        asyncio.run(_session(server, server.xsrf()))
        deadline = time.time() + 5
        while time.time() < deadline and server.log_path.read_text().count("access token") < 1:
            time.sleep(0.2)
        assert server.log_path.read_text().count("It needs this access token") == 1
    finally:
        server.stop()


class FakeHolder:
    """Streamlit's store of uploads, as ``gate.Uploads`` sees it: sessions alive, files held."""

    def __init__(self, *alive: str) -> None:
        self.live = set(alive)
        self.kept: set[str] = set()  # disconnected, kept by Streamlit to reconnect
        self.files: dict[str, int] = {}  # session -> bytes held

    def connected(self, session):
        return session in self.live and session not in self.kept

    def alive(self, session):
        return session in self.live

    def holders(self):
        return list(self.files)

    def held(self):
        return sum(self.files.values())

    def drop(self, session):
        self.files.pop(session, None)


def test_upload_caps_per_session():
    u = gate.Uploads(FakeHolder("s1", "s2"), limit=10 * gate.UPLOAD_BYTES)
    assert u.admit("s1", None) == ((411, "an upload must declare its length"), 0)
    assert u.admit("s1", str(gate.UPLOAD_BYTES - 10)) == (None, gate.UPLOAD_BYTES - 10)
    assert u.admit("s1", "11")[0][0] == 413
    assert u.admit("s2", "11")[0] is None  # another session has its own budget
    for _ in range(gate.UPLOAD_FILES - 1):
        assert u.admit("s2", "1")[0] is None
    assert u.admit("s2", "1")[0][0] == 429


def test_an_upload_to_a_session_that_is_not_connected_is_refused_and_not_counted():
    """Streamlit would refuse it too, but after the gate had counted it: a made-up session id per
    request grew the gate's table without bound, and a tab reconnecting spent its allowance."""
    holder = FakeHolder("s1", "away")
    holder.kept.add("away")
    u = gate.Uploads(holder, limit=2**30)
    for i in range(100):
        assert u.admit(f"made-up-{i}", "1")[0][0] == 400
    assert u.admit("away", "1")[0][0] == 400
    assert u._sessions == {}


def _feed(*messages, then_wait=False, trickle_s=None):
    """An ASGI ``receive`` giving ``messages``, then (``then_wait``) never anything more, or
    (``trickle_s``) an empty piece of body every ``trickle_s`` seconds."""
    queue = list(messages)

    async def receive():
        if queue:
            return queue.pop(0)
        if then_wait:
            await asyncio.sleep(3600)
        if trickle_s is not None:
            await asyncio.sleep(trickle_s)
            return {"type": "http.request", "body": b"", "more_body": True}
        return {"type": "http.disconnect"}

    return receive


def _drain(receive, n):
    async def go():
        return [await receive() for _ in range(n)]

    return asyncio.run(go())


def test_an_uploads_body_is_held_to_the_length_it_declared_and_to_a_pace(monkeypatch):
    """The caps are checked on the declared length: a body longer than it (chunks behind a small
    Content-Length) got past every byte cap, and a client that stopped sending kept its
    reservation, and so every other visitor's uploads refused, for as long as it held the line."""
    from starlette.exceptions import HTTPException

    part = {"type": "http.request", "body": b"x" * 10, "more_body": True}
    last = {"type": "http.request", "body": b"x" * 10, "more_body": False}
    assert _drain(gate.Uploads.body(_feed(part, last), 20), 3)[2] == {"type": "http.disconnect"}
    with pytest.raises(HTTPException) as e:
        _drain(gate.Uploads.body(_feed(part, part, last), 25), 3)
    assert e.value.status_code == 400
    monkeypatch.setattr(gate, "BODY_IDLE_S", 0.2)
    t0 = time.monotonic()
    with pytest.raises(HTTPException) as e:
        _drain(gate.Uploads.body(_feed(part, then_wait=True), 20), 2)
    assert e.value.status_code == 408 and time.monotonic() - t0 < 5
    monkeypatch.setattr(gate, "BODY_IDLE_S", 60.0)
    monkeypatch.setattr(gate, "BODY_BASE_S", 0.2)
    monkeypatch.setattr(gate, "BODY_RATE", 10**9)
    with pytest.raises(HTTPException) as e:  # paced under the idle limit, but too slow in all
        _drain(gate.Uploads.body(_feed(part, trickle_s=0.02), 20), 200)
    assert e.value.status_code == 408


def test_the_gate_holds_an_uploads_body_to_its_pace_and_frees_its_reservation(monkeypatch):
    """Through a Starlette app whose upload route reads the form as Streamlit's does: a body that
    stops coming is answered 408, with the connection closed, and its reservation is freed."""
    from starlette.applications import Starlette
    from starlette.middleware import Middleware
    from starlette.responses import Response
    from starlette.routing import Route

    monkeypatch.setattr(gate, "BODY_IDLE_S", 0.2)

    async def upload(request):
        await request.form()
        return Response(status_code=204)

    uploads = gate.Uploads(FakeHolder("s"), limit=2**30)
    app = Starlette(routes=[Route("/_stcore/upload_file/{session}/{file}", upload, methods=["PUT"])],
                    middleware=[Middleware(gate.Gate, policy=access.Policy(token_required=False),
                                           uploads=uploads)])
    body, ctype = _multipart("f.bin", b"x" * 1000)
    scope = {"type": "http", "method": "PUT", "path": gate.UPLOAD + "s/f", "query_string": b"",
             "headers": [(b"content-length", str(len(body)).encode()), (b"content-type", ctype.encode())]}
    sent = []

    async def send(message):
        sent.append(message)

    part = {"type": "http.request", "body": body[:100], "more_body": True}
    asyncio.run(asyncio.wait_for(app(scope, _feed(part, then_wait=True), send), timeout=20))
    start = sent[0]
    assert start["status"] == 408 and (b"connection", b"close") in start["headers"]
    assert uploads._under_way == 0


def test_the_server_holds_at_most_its_limit_of_uploads_across_sessions():
    mib = 2**20
    holder = FakeHolder("a", "b")
    u = gate.Uploads(holder, limit=3 * mib)
    refusal, a = u.admit("a", str(2 * mib))
    assert refusal is None
    assert u.admit("b", str(2 * mib))[0][0] == 503  # a's upload is under way: its bytes count
    u.done(a)
    holder.files["a"] = 2 * mib  # it landed in Streamlit's store
    assert u.admit("b", str(2 * mib))[0][0] == 503  # held now
    refusal, b = u.admit("b", str(mib))
    assert refusal is None  # what fits is taken
    u.done(b)
    holder.files["b"] = mib
    del holder.files["a"]  # a removed its file
    assert u.admit("b", str(2 * mib))[0] is None


def test_a_gone_sessions_uploads_are_freed_and_its_count_forgotten():
    holder = FakeHolder("a", "b")
    holder.files = {"a": 5, "b": 7}
    u = gate.Uploads(holder, limit=2**30)
    assert u.admit("a", "5")[0] is None
    holder.live.discard("a")  # its tab closed and Streamlit no longer keeps it to reconnect
    u.reclaim()
    assert holder.files == {"b": 7} and "a" not in u._sessions


def test_the_servers_upload_limit_is_read_from_the_environment():
    assert gate.held_limit({}) == gate.HELD_MB * 2**20
    assert gate.held_limit({gate.HELD_MB_ENV: " 32 "}) == 32 * 2**20
    for bad in ("0", "12", "-3", "1.5", "ü", "²", "9" * 60):
        with pytest.raises(SystemExit, match=gate.HELD_MB_ENV):
            gate.held_limit({gate.HELD_MB_ENV: bad})


class _Visitor:
    """A browser tab's session, open until ``close``: its websocket is read in the background, as a
    frontend reads it, so the server never waits on it."""

    def __init__(self, server: Server, xsrf: str) -> None:
        self.server, self.xsrf = server, xsrf

    async def open(self) -> _Visitor:
        from streamlit.proto.BackMsg_pb2 import BackMsg
        from streamlit.proto.ForwardMsg_pb2 import ForwardMsg

        headers = {"Cookie": f"_streamlit_xsrf={self.xsrf}", "Origin": self.server.url}
        uri = self.server.url.replace("http", "ws") + "/_stcore/stream"
        self.ws = await websockets.connect(
            uri, subprotocols=["streamlit", self.xsrf], additional_headers=headers, max_size=None
        )
        rerun = BackMsg()
        rerun.rerun_script.query_string = ""
        await self.ws.send(rerun.SerializeToString())
        self.id = None
        while self.id is None:
            msg = ForwardMsg()
            msg.ParseFromString(await asyncio.wait_for(self.ws.recv(), timeout=30))
            if msg.WhichOneof("type") == "new_session":
                self.id = msg.new_session.initialize.session_id
        self.reader = asyncio.create_task(self._drain())
        return self

    async def _drain(self) -> None:
        with contextlib.suppress(Exception):
            async for _ in self.ws:
                pass

    async def upload(self, name: str, size: int) -> int:
        body, ctype = _multipart(name, b"\0" * size)
        headers = {"Content-Type": ctype, "X-Xsrftoken": self.xsrf, "Cookie": f"_streamlit_xsrf={self.xsrf}"}
        path = f"/_stcore/upload_file/{self.id}/{name}"
        return await asyncio.to_thread(self.server.request, "PUT", path, body, headers)

    async def chunked(self, name: str, size: int) -> int:
        """An upload whose body comes in chunks behind a Content-Length of 1."""
        body, ctype = _multipart(name, b"\0" * size)

        def send() -> int:
            conn = http.client.HTTPConnection("127.0.0.1", self.server.port, timeout=30)
            try:
                conn.putrequest("PUT", f"/_stcore/upload_file/{self.id}/{name}")
                headers = {"Content-Type": ctype, "X-Xsrftoken": self.xsrf, "Content-Length": "1",
                           "Transfer-Encoding": "chunked", "Cookie": f"_streamlit_xsrf={self.xsrf}"}
                for k, v in headers.items():
                    conn.putheader(k, v)
                conn.endheaders()
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    conn.send(f"{len(body):x}\r\n".encode() + body + b"\r\n0\r\n\r\n")
                return conn.getresponse().status
            finally:
                conn.close()

        return await asyncio.to_thread(send)

    async def close(self) -> None:
        await self.ws.close()
        self.reader.cancel()


def test_a_server_holds_its_limit_of_uploads_and_frees_what_closed_tabs_left(tmp_path):
    """Two tabs against ``CIFAR_APP_UPLOAD_MB=20``: the second's upload past the server's limit is
    refused while the first holds its file; once the first tab is closed and Streamlit no longer
    keeps its session to reconnect (``server.disconnectedSessionTTL``, 8 s here), its file is freed
    and the upload fits. Streamlit itself keeps such a file until the server stops. A body in
    chunks (its length not the one declared) is refused."""
    mib = 2**20
    server = Server(
        tmp_path,
        CIFAR_APP_REQUIRE_TOKEN="",
        CIFAR_APP_UPLOAD_MB="20",
        STREAMLIT_SERVER_DISCONNECTED_SESSION_TTL="8",
    )

    async def scenario() -> None:
        xsrf = server.xsrf()
        a = await _Visitor(server, xsrf).open()
        b = await _Visitor(server, xsrf).open()
        try:
            assert await a.upload("a1", 15 * mib) in (200, 204)
            assert await b.upload("b1", 10 * mib) == 503
            assert await b.upload("b2", 4 * mib) in (200, 204)  # what fits is taken
            assert await b.chunked("b3", mib) == 411
            await a.close()
            assert await b.upload("b4", 10 * mib) == 503  # a is kept to reconnect, with its file
            deadline = time.time() + 40
            status = 503
            while status == 503 and time.time() < deadline:
                await asyncio.sleep(0.5)
                status = await b.upload("b4", 10 * mib)
            assert status in (200, 204), status
        finally:
            await b.close()

    try:
        asyncio.run(scenario())
    finally:
        server.stop()


def test_wrong_tokens_slow_their_client_down():
    now = [0.0]
    t = access.Throttle(clock=lambda: now[0])
    for _ in range(access.FREE_TRIES):
        assert t.wait_s("a") == 0
        t.failed("a")
    assert t.wait_s("a") == 0  # the free tries are spent: the next wrong one starts the waits
    t.failed("a")
    assert t.wait_s("a") == pytest.approx(1.0) and t.wait_s("b") == 0
    now[0] += 1.0
    t.failed("a")
    assert t.wait_s("a") == pytest.approx(2.0)
    for _ in range(20):
        t.failed("a")
    assert t.wait_s("a") <= access.MAX_WAIT_S
    t.succeeded("a")
    assert t.wait_s("a") == 0


def test_sixty_wrong_tries_meet_a_wait_on_the_page(pages, tmp_path, monkeypatch):
    """60 wrong ``?token=`` tries in a row: after the free ones each is refused unchecked, and even
    the right token waits its turn."""
    monkeypatch.setattr(access, "THROTTLE", access.Throttle(clock=lambda: 0.0))  # 60 tries in no time
    from cifar_app.web import ui

    monkeypatch.setattr(ui, "_client", lambda: "203.0.113.9")  # one remote client, many sessions
    pages.use(tmp_path / "runs").expose(token=TOKEN)
    messages = []
    for i in range(60):
        at = pages.open("train", {"token": f"wrong-{i}"})
        messages.append(" ".join(e.value for e in at.error))
    assert all("That is not the access token." in m for m in messages[: access.FREE_TRIES + 1])
    assert all("Too many wrong tokens" in m for m in messages[access.FREE_TRIES + 1 :])
    at = pages.open("train", {"token": TOKEN})
    assert "Too many wrong tokens" in " ".join(e.value for e in at.error)


def _serve(base: Path, token: str | None) -> subprocess.Popen:
    env = {**os.environ, "CIFAR_APP_RUNS": str(base / "runs"), "CIFAR_APP_REQUIRE_TOKEN": "1"}
    env.pop("CIFAR_APP_TOKEN", None)
    if token is not None:
        env["CIFAR_APP_TOKEN"] = token
    return subprocess.Popen(
        [sys.executable, "-m", "cifar_app", "serve", "--address", "127.0.0.1", "--port", str(free_port())],
        cwd=base,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        text=True,
    )


def test_a_weak_token_is_refused_and_a_users_token_never_printed(tmp_path):
    weak = _serve(tmp_path, "short-token")
    out, _ = weak.communicate(timeout=60)
    assert weak.returncode == 2 and "at least 16" in out and "secrets.token_urlsafe" in out
    assert "short-token" not in out
    strong = _serve(tmp_path, TOKEN)
    try:
        lines = []
        deadline = time.time() + 60
        while time.time() < deadline and not any("URL:" in x for x in lines):
            line = strong.stdout.readline()
            if not line:
                break
            lines.append(line)
        text = "".join(lines)
        assert "URL:" in text and "you set in $CIFAR_APP_TOKEN" in text
        assert TOKEN not in text
    finally:
        os.killpg(strong.pid, signal.SIGTERM)
        strong.wait(timeout=10)


SECRET_PATH = "/srv/very-secret-folder/cifar"


def _failed_run(runs: Path):
    from cifar_app.core.settings import TrainSettings
    from cifar_app.store.runstore import RunStore

    store = RunStore(runs, reference_root=None)
    run = store.create(TrainSettings(epochs=1), label="broken")
    run.update_status(state="failed", error=f"No CIFAR-10 found in {SECRET_PATH} (looked for train/)")
    return run


def test_a_public_visitor_sees_errors_without_server_paths(pages, tmp_path, monkeypatch):
    run = _failed_run(tmp_path / "runs")
    monkeypatch.setenv("RAY_ADDRESS", "10.1.2.3:6379")
    pages.use(tmp_path / "runs").expose(token=TOKEN, public_read=True)
    texts = []
    for page, query in (("home", None), ("train", {"run": run.id}), ("experiments", None)):
        at = pages.open(page, query)
        texts.append(str([e for e in at.main]) + str([d.value.to_dict() for d in at.dataframe]))
    text = "\n".join(texts)
    assert SECRET_PATH not in text and "<server path>" in text
    assert "10.1.2.3" not in text


def test_the_live_route_redacts_paths_for_a_visitor_and_not_for_the_key(tmp_path, monkeypatch):
    from starlette.applications import Starlette
    from starlette.testclient import TestClient

    from cifar_app.web import webapp

    run = _failed_run(tmp_path / "runs")
    monkeypatch.setenv("CIFAR_APP_RUNS", str(tmp_path / "runs"))
    monkeypatch.setenv("CIFAR_APP_REFERENCE_RUNS", "")
    monkeypatch.setenv("CIFAR_APP_TOKEN", TOKEN)
    pol = access.Policy(token_required=True, public_read=True)
    client = TestClient(Starlette(routes=webapp.routes("", pol)))
    url = "/" + webapp.path(webapp.RUN_LIVE, run_id=run.id)
    visitor = client.get(url).json()
    assert SECRET_PATH not in visitor["error"] and "<server path>" in visitor["error"]
    holder = client.get(url, headers={access.ROUTE_KEY_HEADER: access.route_key(TOKEN)}).json()
    assert SECRET_PATH in holder["error"]


def test_a_huge_grid_is_refused_before_it_is_expanded():
    from cifar_app.core.settings import SettingsError
    from cifar_app.lab.presets import MAX_POINTS, expand

    grid = {
        "seed": list(range(30)),
        "max_lr": [0.01 * (i + 1) for i in range(30)],
        "batch_size": list(range(2, 32)),
    }  # 27,000 points
    with pytest.raises(SettingsError, match=f"more than {MAX_POINTS:,} points"):
        expand({}, grid)


def test_a_public_visitor_gets_no_planner(pages, tmp_path):
    pages.use(tmp_path / "runs").expose(token=TOKEN, public_read=True)
    at = pages.open("experiments")
    assert not at.text_area and not at.radio
    assert "needs the access token" in " ".join(i.value for i in at.info)


HOSTILE = '<b>B</b><a href="https://example.com/a">A</a> ![t](/any/url) :red[RED] <img src=x>'


@pytest.mark.parametrize("bad", ["\u202eevil", "a\x00b", "tab\there", "zero\u200bwidth", "line\u2028sep"])
def test_labels_refuse_control_and_bidi_characters_naming_them(tmp_path, bad):
    from cifar_app.core.settings import TrainSettings
    from cifar_app.store.formats import check_label
    from cifar_app.store.runstore import RunStore

    with pytest.raises(ValueError, match=r"U\+[0-9A-F]{4}"):
        check_label(bad)
    store = RunStore(tmp_path / "runs", reference_root=None)
    run = store.create(TrainSettings(epochs=1), label="fine")
    with pytest.raises(ValueError, match=r"U\+"):
        store.rename(run.id, bad)
    with pytest.raises(ValueError, match=r"U\+"):
        store.create(TrainSettings(epochs=1), label=bad)
    assert store.get(run.id).label == "fine" and check_label("  ünïcode ok  ") == "ünïcode ok"


def test_an_imported_label_or_file_name_with_a_bidi_override_is_refused(tmp_path):
    from cifar_app.core.settings import TrainSettings
    from cifar_app.store.export import BundleError, bundle_bytes, import_bundle
    from cifar_app.store.runstore import RunStore

    store = RunStore(tmp_path / "runs", reference_root=None)
    run = store.create(TrainSettings(epochs=1), label="ok")
    run.update_status(state="stopped")
    data = bundle_bytes(run)
    with pytest.raises(BundleError, match=r"U\+202E"):
        import_bundle(store, data, origin="photo\u202egpj.zip")


def test_text_helpers_leave_no_markup():
    from cifar_app.web.text import for_markdown, for_plotly

    md = for_markdown(HOSTILE)
    assert "\\<b\\>" in md and "\\]\\(" in md and "\\:red\\[" in md
    assert "<" not in for_plotly(HOSTILE) and "&lt;b&gt;" in for_plotly(HOSTILE)


def test_plotly_legends_and_titles_show_a_label_as_text():
    from cifar_app.core.records import EpochStats
    from cifar_app.web.charts import compare_grid, topk_bars

    epochs = [EpochStats(1, 1.0, 0.5, 1.0, 0.5, 1.0, 1.0, 0.1)]
    fig = compare_grid([{"label": HOSTILE, "norm": "batch", "epochs": epochs}])
    names = [t.name for t in fig.data if t.name]
    assert names and all("<" not in n for n in names)
    title = topk_bars([("cat", 0.9)], title=HOSTILE).layout.title.text
    assert "<a" not in title and "<b>" not in title


def test_the_key_cookie_is_set_by_the_server_httponly_strict_and_scoped(tmp_path, monkeypatch):
    from starlette.applications import Starlette
    from starlette.testclient import TestClient

    from cifar_app.web import webapp

    monkeypatch.setenv("CIFAR_APP_RUNS", str(tmp_path / "runs"))
    monkeypatch.setenv("CIFAR_APP_TOKEN", TOKEN)
    client = TestClient(Starlette(routes=webapp.routes("lab-base", access.Policy(token_required=True))))
    assert client.post("/lab-base/" + webapp.SESSION).status_code == 403
    assert (
        client.post("/lab-base/" + webapp.SESSION, headers={access.ROUTE_KEY_HEADER: "forged"}).status_code
        == 403
    )
    r = client.post("/lab-base/" + webapp.SESSION, headers={access.ROUTE_KEY_HEADER: access.route_key(TOKEN)})
    cookie = r.headers["set-cookie"]
    assert r.status_code == 204 and cookie.startswith(f"{access.KEY_COOKIE}={access.route_key(TOKEN)}")
    for flag in ("HttpOnly", "SameSite=strict", "Path=/lab-base/", f"Max-Age={access.KEY_COOKIE_MAX_AGE_S}"):
        assert flag.lower() in cookie.lower(), flag
    js = (ROOT / "cifar_app" / "web" / "live_view.js").read_text()
    assert "document.cookie" not in js  # no page script writes (or could read) the key cookie


def test_keys_are_revoked_without_changing_the_token(tmp_path, monkeypatch):
    monkeypatch.setenv("CIFAR_APP_RUNS", str(tmp_path / "runs"))
    (tmp_path / "runs").mkdir()
    old = access.route_key(TOKEN)
    pol = access.Policy(token_required=True)
    assert access.route_allowed(pol, old, TOKEN)
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "cifar_app",
            "serve",
            "--revoke-keys",
            "--address",
            "127.0.0.1",
            "--port",
            "1",
            "--help",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert out.returncode == 0 and "--revoke-keys" in out.stdout
    assert access.revoke_keys() == 1
    assert not access.route_allowed(pol, old, TOKEN)
    assert access.route_allowed(pol, access.route_key(TOKEN), TOKEN) and access.route_key(TOKEN) != old


def test_revoking_the_keys_ends_an_open_sessions_access(pages, tmp_path, monkeypatch):
    monkeypatch.setattr(access, "THROTTLE", access.Throttle())
    pages.use(tmp_path / "runs").expose(token=TOKEN)
    (tmp_path / "runs").mkdir(exist_ok=True)
    at = pages.open("train", {"token": TOKEN})
    assert "Access token accepted" in " ".join(c.value for c in at.sidebar.caption)
    access.revoke_keys()
    at.run()
    assert "Access token accepted" not in " ".join(c.value for c in at.sidebar.caption)
    assert at.sidebar.text_input(key="_access_token_input") is not None


@pytest.mark.parametrize(
    "text",
    [
        "No CIFAR-10 found in /srv/very/secret (looked for train/)",
        "cannot read C:\\Users\\me\\x.zip: denied",
        "C:/Users/me/x",
        "see ~/runs/abc",
        "file:///srv/x",
        "dir:/srv/x",
        "\\\\server\\share\\f",
        "no Ray head answers at 10.0.0.9:6390",
        "http://10.9.8.7:8265/api down",
    ],
)
def test_redact_removes_every_kind_of_server_path(text):
    out = access.redact(text)
    assert "srv" not in out and "Users" not in out and "10.0.0.9" not in out and "10.9.8.7" not in out
    assert "runs/abc" not in out and "server\\share" not in out and "<server path>" in out


@pytest.mark.parametrize(
    "text", ["lr 0.1/2 and a/b", "<b>bold</b> and `code`", "version 1.2.3", "train/ 3/4"]
)
def test_redact_leaves_text_that_holds_no_path(text):
    assert access.redact(text) == text


@pytest.mark.parametrize("blank", ["\u3164", "\u2800", "\U000e0100x", "a\ufffe"])
def test_labels_refuse_blank_and_unassigned_characters(blank):
    from cifar_app.store.formats import check_label

    with pytest.raises(ValueError, match=r"U\+"):
        check_label(blank)
