"""Shared fixtures: tiny synthetic CIFAR-like data, as tensors and as an image-folder tree."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cifar_app.data import CLASSES, CifarData

REAL_DATA = os.environ.get("CIFAR_APP_DATA")  # an unpacked CIFAR-10 copy, for the real-data tests

# Ten easy-to-tell colours, one per class.
PALETTE = np.array([[230, 25, 75], [60, 180, 75], [255, 225, 25], [0, 130, 200], [245, 130, 48],
                    [145, 30, 180], [70, 240, 240], [240, 50, 230], [210, 245, 60], [128, 128, 128]],
                   dtype=np.float32)


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


@pytest.fixture(autouse=True)
def _isolated_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No test reads the user's data, runs or cache folders."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))
    monkeypatch.setenv("CIFAR_APP_RUNS", str(tmp_path / "runs"))
    monkeypatch.delenv("CIFAR_APP_DATA", raising=False)  # real-data tests read it at import
    torch.set_num_threads(min(2, torch.get_num_threads()))


@pytest.fixture(scope="session")
def trained_store(tmp_path_factory: pytest.TempPathFactory):
    """A run store holding one completed run, trained for 2 epochs on synthetic data (seconds)."""
    from cifar_app.jobs import execute_run
    from cifar_app.runstore import RunStore
    from cifar_app.settings import TrainSettings

    store = RunStore(tmp_path_factory.mktemp("trained") / "runs", reference_root=None)
    run = store.create(TrainSettings(norm="batch", epochs=2, batch_size=50, max_lr=0.05,
                                     device="cpu"), label="tiny BN")
    execute_run(store, run.id, data=synthetic_data(300, 100))
    return store
