"""Shared fixtures: tiny synthetic CIFAR-like data, as tensors and as an image-folder tree."""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cifar_app.core.data import CLASSES, CifarData
from cifar_app.web.app import page_path

REAL_DATA = os.environ.get("CIFAR_APP_DATA")  # an unpacked CIFAR-10 copy, for the real-data tests
ROOT = Path(__file__).resolve().parent.parent  # the repository: dashboard.py, cifar_app/

# Ten easy-to-tell colours, one per class.
PALETTE = np.array([[230, 25, 75], [60, 180, 75], [255, 225, 25], [0, 130, 200], [245, 130, 48],
                    [145, 30, 180], [70, 240, 240], [240, 50, 230], [210, 245, 60], [128, 128, 128]],
                   dtype=np.float32)


def wait_for(predicate, timeout: float = 60.0, what: str = "the condition", every: float = 0.05):
    """Poll ``predicate`` until it is true (returns its value); fail the test after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(every)


def synthetic_images(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """uint8 (n, 32, 32, 3) images whose class sets the colour of a square, plus labels (n,)."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 10
    rng.shuffle(y)
    x = rng.normal(100, 30, (n, 32, 32, 3))
    for i, label in enumerate(y):
        r, c = rng.integers(4, 16, 2)
        x[i, r:r + 12, c:c + 12] = PALETTE[label] + rng.normal(0, 10, 3)
    return np.clip(x, 0, 255).astype(np.uint8), y.astype(np.int64)


def synthetic_data(n_train: int = 400, n_test: int = 100, seed: int = 0) -> CifarData:
    xtr, ytr = synthetic_images(n_train, seed)
    xte, yte = synthetic_images(n_test, seed + 1)
    to_t = lambda a: torch.from_numpy(np.ascontiguousarray(a.transpose(0, 3, 1, 2)))  # noqa: E731
    return CifarData(to_t(xtr), torch.from_numpy(ytr), to_t(xte), torch.from_numpy(yte), CLASSES,
                     "synthetic test data")


def write_image_tree(root: Path, per_class_train: int = 6, per_class_test: int = 3) -> Path:
    """Write train/<class>/*.png and test/<class>/*.png under ``root``; returns ``root``."""
    for split, per_class, seed in (("train", per_class_train, 0), ("test", per_class_test, 1)):
        x, y = synthetic_images(per_class * 10, seed)
        counters = dict.fromkeys(range(10), 0)
        for img, label in zip(x, y):
            folder = root / split / CLASSES[label]
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(img).save(folder / f"{counters[label]:04d}.png")
            counters[label] += 1
    return root


@pytest.fixture
def tiny_data() -> CifarData:
    return synthetic_data()


@pytest.fixture
def image_tree(tmp_path: Path) -> Path:
    return write_image_tree(tmp_path / "cifar")


def pytest_configure(config: pytest.Config) -> None:
    """precision=auto stays fp32 in every test, subprocesses and module-scoped fixtures included
    (set before any fixture: a function-scoped one comes too late for those): no bf16 verdict to go
    by. A test that wants one sets ``CIFAR_APP_BF16_RESULTS`` itself."""
    os.environ["CIFAR_APP_BF16_RESULTS"] = os.path.join(tempfile.gettempdir(), "cifar-app-tests-no-bf16.json")
    # One torch thread in each test process and in what it starts (workers, the CLI, servers): the
    # suite runs two processes on two cores, and with two threads each the training tests took more
    # than twice as long, each thread's barrier waiting on a thread the other process had
    # descheduled (test_inside.py and test_engine.py: 298 s with two threads, 134 s with one).
    os.environ["OMP_NUM_THREADS"] = "1"


@pytest.fixture(autouse=True)
def _isolated_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No test reads the user's data, runs or cache folders."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))
    monkeypatch.setenv("CIFAR_APP_RUNS", str(tmp_path / "runs"))
    monkeypatch.delenv("CIFAR_APP_DATA", raising=False)  # real-data tests read it at import
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def trained_store(tmp_path_factory: pytest.TempPathFactory):
    """A run store holding one completed run, trained for 2 epochs on synthetic data (seconds)."""
    from cifar_app.core.settings import TrainSettings
    from cifar_app.store.jobs import execute_run
    from cifar_app.store.runstore import RunStore

    store = RunStore(tmp_path_factory.mktemp("trained") / "runs", reference_root=None)
    run = store.create(TrainSettings(norm="batch", epochs=2, batch_size=50, max_lr=0.05,
                                     device="cpu"), label="tiny BN")
    execute_run(store, run.id, data=synthetic_data(300, 100))
    return store


class Pages:
    """Open the dashboard's pages under Streamlit's AppTest, as a server with the given runs folder,
    data folder and access settings would show them (see the ``pages`` fixture)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.monkeypatch = monkeypatch

    def use(self, runs: Path, data: Path | None = None) -> Pages:
        """Serve ``runs`` (no reference runs) and ``data`` (None: no dataset)."""
        self.monkeypatch.setenv("CIFAR_APP_RUNS", str(runs))
        self.monkeypatch.setenv("CIFAR_APP_REFERENCE_RUNS", "")
        if data is not None:
            self.monkeypatch.setenv("CIFAR_APP_DATA", str(data))
        return self

    def expose(self, token: str | None = "s3cret-token", public_read: bool = False) -> Pages:
        """As a server bound to 0.0.0.0 (``token`` None: generated), optionally ``--public-read``."""
        from streamlit import config

        config.set_option("server.address", "0.0.0.0")
        if token is None:
            self.monkeypatch.delenv("CIFAR_APP_TOKEN", raising=False)
        else:
            self.monkeypatch.setenv("CIFAR_APP_TOKEN", token)
        if public_read:
            self.monkeypatch.setenv("CIFAR_APP_PUBLIC_READ", "1")
        return self

    def open(self, page: str, query: dict | None = None, timeout: float = 60, check: bool = True):
        """Run the page ``<page>`` (``web.app.PAGES``) once (``query``: URL parameters); no exception unless
        ``check`` is False."""
        from streamlit.testing.v1 import AppTest

        at = AppTest.from_file(page_path(page), default_timeout=timeout)
        for k, v in (query or {}).items():
            at.query_params[k] = v
        at.run()
        if check:
            assert not at.exception, [e.value for e in at.exception]
        return at


@pytest.fixture
def pages(monkeypatch: pytest.MonkeyPatch):
    """``Pages`` on a loopback server, in the repository's folder, with Streamlit's caches empty."""
    from streamlit import config
    from streamlit.runtime.caching import cache_resource

    config.set_option("server.address", "127.0.0.1")
    monkeypatch.chdir(ROOT)
    cache_resource.clear()
    yield Pages(monkeypatch)
    config.set_option("server.address", "127.0.0.1")
