"""The live view's data (cifar_app/web/live.py) and its read-only routes (cifar_app/web/webapp.py)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.testclient import TestClient

from cifar_app.core.records import BatchStats, EpochStats
from cifar_app.core.settings import TrainSettings
from cifar_app.store.runstore import RunStore
from cifar_app.web import live, webapp

ROOT = Path(__file__).resolve().parent.parent


def _batches(epoch: int, n: int = 10) -> list[BatchStats]:
    return [BatchStats((epoch - 1) * n + i, epoch, i, n, 2.0 - i / 20, 0.1, time.time())
            for i in range(1, n + 1)]


def _epoch(epoch: int) -> EpochStats:
    return EpochStats(epoch, 1.8, 0.4, 1.7, 0.42, 5.0, 1000.0, 0.1, 1.7)


@pytest.fixture
def store(tmp_path, monkeypatch) -> RunStore:
    monkeypatch.setenv("CIFAR_APP_RUNS", str(tmp_path / "runs"))
    return RunStore(tmp_path / "runs", reference_root=None)


@pytest.fixture
def running(store):
    run = store.create(TrainSettings(norm="group", epochs=4, batch_size=64), label="live")
    run.update_status(state="running", pid=os.getpid(), heartbeat=time.time())
    return run


@pytest.fixture(autouse=True)
def unshared(monkeypatch):
    """Every request asks in a moment of its own (as one viewer a second apart would): the tests of
    what a route answers are not about sharing; the one that is sets its own clock."""
    moments = iter(range(10**9))
    monkeypatch.setattr(webapp, "_moment", lambda every_s=1.0: next(moments))


@pytest.fixture
def client(store) -> TestClient:
    return TestClient(Starlette(routes=webapp.routes()))


def test_snapshot_of_a_running_run_follows_its_log(running):
    snap = live.run_snapshot(running)
    assert snap["state"] == "running" and snap["epochs"] == snap["batches"] == 0
    assert snap["note"].startswith("Waiting for the first batch")
    running.append_metrics(*_batches(1)[:4])
    snap = live.run_snapshot(running)
    assert snap["text"].startswith("running · epoch 1/4 · batch 4/10 · ") and snap["batches"] == 4
    assert snap["fraction"] == pytest.approx(4 / 40) and snap["note"] is None
    running.append_metrics(*_batches(1)[4:], _epoch(1))
    snap = live.run_snapshot(running)
    assert snap["epochs"] == 1 and "1,000 images/s" in snap["text"] and snap["probes"] == 0
    running.append_inside({"epoch": 1, "layers": {}})  # the epoch's probe record, just after it
    assert live.run_snapshot(running)["probes"] == 1
    json.dumps(snap)  # plain JSON


def test_snapshot_of_queued_failed_and_damaged_runs(store, running):
    queued = store.create(TrainSettings(norm="batch", epochs=2))
    queued.update_status(state="queued", heartbeat=time.time())
    assert live.run_snapshot(queued)["note"].startswith("Queued")
    running.update_status(state="failed", error="CUDA out of memory")
    snap = live.run_snapshot(running)
    assert snap["state"] == "failed" and snap["error"] == "CUDA out of memory"
    (running.path / "inside.jsonl").mkdir()  # unreadable probe records do not stop the progress
    snap = live.run_snapshot(running)
    assert snap["state"] == "failed" and snap["probes"] == -1 and snap["damaged"] is None
    (running.path / "metrics.jsonl").write_bytes(b"\xff\xfe not a log\n")
    snap = live.run_snapshot(running)
    assert snap["state"] == "damaged" and "metrics.jsonl" in snap["damaged"]


def test_progress_text():
    assert live.progress_text("running", 2, 20, 40, 391, 2900.4, 310) == \
        "running · epoch 2/20 · batch 40/391 · 2,900 images/s · 5 min 10 s left"
    assert live.progress_text("queued", 1, 3, 0, 0, None, None) == \
        "queued · epoch 1/3 · batch 0/? · measuring speed · estimating the time left"
    # a finished run has no time left to show (it read "1,390 images/s · - left")
    assert live.progress_text("completed", 20, 20, 391, 391, 1390.0, None) == \
        "completed · epoch 20/20 · batch 391/391 · 1,390 images/s"
    assert live.progress_text("stopped", 3, 20, 12, 391, 1390.0, None).endswith("1,390 images/s")


def test_live_route_answers_the_snapshot(client, running):
    running.append_metrics(*_batches(1)[:3])
    r = client.get(f"/lab/runs/{running.id}/live")
    assert r.status_code == 200 and r.headers["cache-control"] == "no-store"
    assert r.json() == live.run_snapshot(running)


def handler_request(**path_params: str) -> Request:
    """A request as the router hands it to a handler, with ``path_params`` as given: raw, not
    normalized by a client (a test client resolves ``..`` and ``%2f`` before sending)."""
    return Request({"type": "http", "method": "GET", "path": "/", "query_string": b"", "headers": [],
                    "path_params": path_params})


@pytest.mark.parametrize("run_id", ["nope", "..", "../../etc", "..%2f..%2fetc", "%2e%2e", "/etc/passwd",
                                    "A" * 70, "é", "a\x00b", ""])
def test_live_routes_refuse_unknown_runs(store, running, run_id):
    assert webapp.live_json(handler_request(run_id=run_id)).status_code == 404
    assert webapp.figure_json(handler_request(run_id=run_id, name="batches")).status_code == 404
    assert webapp.experiment_json(handler_request(exp_id=run_id)).status_code == 404
    assert webapp.live_json(handler_request(run_id=running.id)).status_code == 200  # the handler works


def test_private_routes_need_the_key_of_a_session_with_the_token(store, running, monkeypatch):
    from cifar_app.web import access

    monkeypatch.setenv("CIFAR_APP_TOKEN", "s3cret-token")
    private = TestClient(Starlette(routes=webapp.routes(pol=access.Policy(token_required=True))))
    public = TestClient(Starlette(routes=webapp.routes(pol=access.Policy(True, public_read=True))))
    url = f"/lab/runs/{running.id}/live"
    good = {access.ROUTE_KEY_HEADER: access.route_key("s3cret-token")}
    for headers in ({}, {access.ROUTE_KEY_HEADER: "nope"}, {access.ROUTE_KEY_HEADER: "é".encode() * 100},
                    {access.ROUTE_KEY_HEADER: access.route_key("another-token")}):
        for path in (url, f"/lab/runs/{running.id}/figures/epochs", "/lab/experiments/exp-x/live"):
            r = private.get(path, headers=headers)
            assert r.status_code == 403 and "private" in r.json()["error"]
    assert private.get(url, headers=good).status_code == 200
    assert public.get(url).status_code == 200  # --public-read: anyone may view
    assert private.get(f"/{webapp.plotly_js_path()}").status_code == 200  # a public library


def test_figure_route_sends_a_figure_only_when_it_changed(client, running):
    url = f"/lab/runs/{running.id}/figures/batches"
    assert client.get(url).status_code == 204  # no batch yet
    running.append_metrics(*_batches(1)[:5])
    first = client.get(url, params={"smoothing": "0.5"})
    assert first.status_code == 200
    body = first.json()
    assert [t["name"] for t in body["figure"]["data"]] == ["loss per batch", "smoothed (0.50)",
                                                           "learning rate"]
    again = client.get(url, params={"smoothing": "0.5", "have": body["version"]})
    assert again.status_code == 304 and again.content == b""
    other = client.get(url, params={"smoothing": "0.6", "have": body["version"]})
    assert other.status_code == 200 and other.json()["version"] != body["version"]
    running.append_metrics(*_batches(1)[5:6])
    newer = client.get(url, params={"smoothing": "0.5", "have": body["version"]})
    assert newer.status_code == 200 and newer.json()["version"] != body["version"]


def test_epoch_figure_changes_with_each_epoch(client, running):
    url = f"/lab/runs/{running.id}/figures/epochs"
    running.append_metrics(*_batches(1))
    assert client.get(url).status_code == 204  # no epoch yet
    running.append_metrics(_epoch(1))
    one = client.get(url).json()
    assert one["figure"] == json.loads(live.figure(running, "epochs", 0.9).to_json())
    assert client.get(url, params={"have": one["version"]}).status_code == 304
    running.append_metrics(*_batches(2), _epoch(2))  # new batches alone would not change it
    two = client.get(url, params={"have": one["version"]})
    assert two.status_code == 200 and two.json()["version"] != one["version"]


def test_figure_route_refuses_unknown_figures_and_bad_smoothing(client, running):
    assert client.get(f"/lab/runs/{running.id}/figures/confusion").status_code == 404
    for smoothing in ("-0.1", "1", "nan", "abc", "1e9"):
        r = client.get(f"/lab/runs/{running.id}/figures/batches", params={"smoothing": smoothing})
        assert r.status_code == 400 and "smoothing" in r.json()["error"]


def test_figure_route_names_a_damaged_log(client, running):
    (running.path / "metrics.jsonl").write_text('{"type": "batch"}\n')
    r = client.get(f"/lab/runs/{running.id}/figures/batches")
    assert r.status_code == 409 and "metrics.jsonl" in r.json()["error"]


def test_plotly_js_is_served_for_long_caching(client):
    r = client.get("/" + webapp.plotly_js_path())
    assert r.status_code == 200 and r.content.startswith(b"/**") and len(r.content) > 1_000_000
    assert "immutable" in r.headers["cache-control"]


def test_routes_follow_the_base_url_path(store, running):
    client = TestClient(Starlette(routes=webapp.routes("/lab-proxy/")))
    assert client.get(f"/lab-proxy/lab/runs/{running.id}/live").status_code == 200
    assert client.get(f"/lab/runs/{running.id}/live").status_code == 404


def test_streamlit_run_serves_the_dashboard_with_its_routes():
    """``streamlit run dashboard.py`` must find ``app`` (an ``st.App``) to serve the live routes; a
    Streamlit upgrade that changes how it looks for one fails here, not silently in the browser."""
    from streamlit.web.server.app_discovery import discover_asgi_app

    found = discover_asgi_app(ROOT / "dashboard.py")
    assert found.is_asgi_app and found.import_string == "dashboard:app"


def test_experiment_route_versions_what_the_page_draws(client, store):
    from cifar_app.lab.experiments import ExperimentStore

    exps = ExperimentStore(store)
    exp = exps.create("watched", {"epochs": 1, "batch_size": 64}, {"seed": [0, 1]})
    url = f"/lab/experiments/{exp.id}/live"
    first = client.get(url).json()
    assert first["state"] == "pending" and first["counts"] == {"pending": 2}
    assert client.get(url).json()["version"] == first["version"]  # nothing happened
    run = store.create(TrainSettings(epochs=1, batch_size=64), tags={"experiment": exp.id, "point": 0})
    run.update_status(state="running", pid=os.getpid(), heartbeat=time.time())
    exp.points[0].run_id = run.id
    exps.save(exp)
    second = client.get(url).json()
    assert second["counts"] == {"pending": 1, "running": 1} and second["version"] != first["version"]
    assert client.get("/lab/experiments/exp-nope/live").status_code == 404


def test_viewers_of_one_run_share_one_computed_answer(client, running, monkeypatch):
    """A classroom: 30 tabs asking at once cost one snapshot per second and one figure per version."""
    clock = [1000.0]  # seconds
    monkeypatch.setattr(webapp, "_moment", lambda every_s=1.0: int(clock[0] / every_s))
    monkeypatch.setattr(webapp, "SHARED", webapp.SharedAnswers())
    calls = {"snapshot": 0, "figure": 0}
    snapshot, figure = live.run_snapshot, live.figure

    def counted(name, real):
        def wrapper(*a, **k):
            calls[name] += 1
            return real(*a, **k)
        return wrapper

    monkeypatch.setattr(live, "run_snapshot", counted("snapshot", snapshot))
    monkeypatch.setattr(live, "figure", counted("figure", figure))
    running.append_metrics(*_batches(1)[:5])
    live_url, fig_url = f"/lab/runs/{running.id}/live", f"/lab/runs/{running.id}/figures/batches"
    answers = {client.get(live_url).content for _ in range(30)}
    figures = {client.get(fig_url).content for _ in range(30)}
    assert len(answers) == len(figures) == 1 and calls == {"snapshot": 1, "figure": 1}
    version = json.loads(figures.pop())["version"]
    assert client.get(fig_url, params={"have": version}).status_code == 304
    running.append_metrics(*_batches(1)[5:7])  # news: the line shows it next second, the figure later
    assert client.get(live_url).json()["batches"] == 5
    clock[0] += webapp.SNAPSHOT_SHARED_S
    assert client.get(live_url).json()["batches"] == 7
    assert client.get(fig_url, params={"have": version}).status_code == 304
    clock[0] += webapp.FIGURE_SHARED_S["batches"]
    assert client.get(fig_url, params={"have": version}).json()["version"] != version
    assert calls == {"snapshot": 2, "figure": 2}
