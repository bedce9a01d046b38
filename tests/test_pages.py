"""Every page renders under Streamlit's AppTest: with no runs, a completed run and a running run."""

import io
import os
import time
from pathlib import Path

import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parent.parent
PAGES = ["pages/home.py", "pages/train.py", "pages/compare.py", "pages/misclassified.py",
         "pages/classify.py", "pages/model.py"]


def run_page(path: str, query: dict | None = None) -> AppTest:
    at = AppTest.from_file(str(ROOT / path), default_timeout=60)
    for k, v in (query or {}).items():
        at.query_params[k] = v
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def texts(at: AppTest) -> str:
    parts = [m.value for m in at.markdown] + [i.value for i in at.info] + [w.value for w in at.warning]
    parts += [e.value for e in at.error] + [s.value for s in at.success] + [c.value for c in at.caption]
    return "\n".join(str(p) for p in parts)


@pytest.fixture
def app_env(monkeypatch, tmp_path):
    from tests.conftest import write_image_tree

    monkeypatch.setenv("CIFAR_APP_RUNS", str(tmp_path / "runs"))
    monkeypatch.setenv("CIFAR_APP_REFERENCE_RUNS", "")
    data = write_image_tree(tmp_path / "data", per_class_train=4, per_class_test=2)
    monkeypatch.setenv("CIFAR_APP_DATA", str(data))
    monkeypatch.chdir(ROOT)
    from streamlit.runtime.caching import cache_resource
    cache_resource.clear()
    return tmp_path


@pytest.fixture
def completed_env(app_env, monkeypatch):
    """The app environment plus one completed run (trained on the environment's tiny data)."""
    from cifar_app.data import load_cifar10
    from cifar_app.jobs import execute_run
    from cifar_app.runstore import RunStore
    from cifar_app.settings import TrainSettings

    store = RunStore(app_env / "runs", reference_root=None)
    run = store.create(TrainSettings(norm="group", epochs=1, batch_size=8, device="cpu"), label="tiny GN")
    execute_run(store, run.id, data=load_cifar10(os.environ["CIFAR_APP_DATA"]))
    return run


EMPTY_HINTS = {"pages/home.py": "No runs yet", "pages/train.py": "No runs yet",
               "pages/compare.py": "No run has finished", "pages/misclassified.py": "No trained model",
               "pages/classify.py": "No trained model", "pages/model.py": "49,482"}


@pytest.mark.parametrize("page", PAGES)
def test_pages_with_no_runs_say_what_to_do(app_env, page):
    at = run_page(page)
    assert EMPTY_HINTS[page] in texts(at) + str([m.value for m in at.metric])


def test_dashboard_entry_opens_the_runs_page(app_env):
    at = run_page("dashboard.py")
    assert "CIFAR-10 Normalization Lab" in [t.value for t in at.title]
    assert "CIFAR-10 found" in texts(at)


def test_missing_dataset_offers_the_download(app_env, monkeypatch, tmp_path):
    monkeypatch.setenv("CIFAR_APP_DATA", str(tmp_path / "nothing-here"))
    at = run_page("pages/home.py")
    assert "not in" in texts(at) and any(b.label == "Download CIFAR-10" for b in at.button)


@pytest.mark.parametrize("page", PAGES)
def test_pages_with_a_completed_run(completed_env, page):
    at = run_page(page, {"run": completed_env.id})
    if page == "pages/misclassified.py":
        assert "misclassified" in texts(at) and len(at.get("imgs") + at.get("image")) >= 1
    if page == "pages/home.py":
        assert completed_env.id in str(at.dataframe[0].value)


@pytest.mark.parametrize("page", PAGES)
def test_pages_with_a_running_run(app_env, page):
    from cifar_app.runstore import RunStore
    from cifar_app.settings import TrainSettings

    run = RunStore(app_env / "runs", reference_root=None).create(TrainSettings(norm="layer", epochs=3))
    run.update_status(state="running", pid=os.getpid(), heartbeat=time.time())
    run.append_metrics(*[{"type": "batch", "step": i, "epoch": 1, "batch": i, "batches": 10,
                          "loss": 2.3 - i / 10, "lr": 0.01 * i, "t": time.time()} for i in range(1, 6)])
    at = run_page(page, {"run": run.id})
    if page == "pages/train.py":
        assert any("running" in str(p.proto.text) for p in at.get("progress"))
        assert any(b.label == "Stop" for b in at.button)


def png(color=(200, 30, 30), size=(48, 40)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, "PNG")
    return buf.getvalue()


def test_train_page_shows_params_and_refuses_bad_settings(app_env):
    at = run_page("pages/train.py")
    assert any("Parameters" == m.label for m in at.metric)
    at.radio(key="norm").set_value("group").run()
    at.select_slider(key="groups").set_value(16).run()  # 16 does not divide 24
    assert not at.exception
    assert any("groups" in e.value for e in at.error)
    assert at.button(key="start").disabled


def test_classify_page_good_and_bad_upload(completed_env):
    at = run_page("pages/classify.py", {"run": completed_env.id})
    at.file_uploader(key="cls_files").set_value([
        ("good.png", png(), "image/png"),
        ("broken.png", b"\x89PNG\r\n\x1a\n not really", "image/png"),
        ("also-good.jpg", png((10, 200, 10), (300, 120)), "image/jpeg"),
    ]).run()
    assert not at.exception, [e.value for e in at.exception]
    assert len(at.error) == 1 and "broken.png" in at.error[0].value
    charts = [c for c in at.get("plotly_chart")]
    assert len(charts) == 2  # one top-5 chart per good image (one model chosen)


def test_fresh_install_shows_the_reference_runs_without_data(app_env, monkeypatch, tmp_path):
    monkeypatch.delenv("CIFAR_APP_REFERENCE_RUNS")
    monkeypatch.setenv("CIFAR_APP_DATA", str(tmp_path / "no-data-yet"))
    at = run_page("pages/compare.py")
    assert len(at.get("plotly_chart")) >= 2 and "ref-batch" in at.multiselect(key="compare_runs").value
    at = run_page("pages/classify.py")
    at.file_uploader(key="cls_files").set_value(("cat.png", png(), "image/png")).run()
    assert not at.exception and len(at.get("plotly_chart")) >= 1
    at = run_page("pages/misclassified.py")
    assert "needs the dataset" in texts(at)
