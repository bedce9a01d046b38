"""Smoke test on the real CIFAR-10 (runs when CIFAR_APP_DATA points at an unpacked copy)."""

import pytest

from cifar_app.core.data import load_cifar10
from cifar_app.core.engine import train
from cifar_app.core.settings import TrainSettings
from tests.conftest import REAL_DATA

pytestmark = [
    pytest.mark.realdata,
    pytest.mark.skipif(not REAL_DATA, reason="set CIFAR_APP_DATA to an unpacked CIFAR-10 copy "
                                              "(e.g. ../shared/data/cifar10-jpeg.tar.gz) to run"),
]


def test_two_epochs_on_5000_images_beat_35_percent_on_1000_test_images():
    data = load_cifar10(REAL_DATA)
    assert data.train_x.shape == (50_000, 3, 32, 32) and data.test_x.shape == (10_000, 3, 32, 32)
    settings = TrainSettings(norm="batch", epochs=2, batch_size=32, max_lr=0.1, train_limit=5000,
                             test_limit=1000, device="cpu", precision="fp32")  # the same on every CPU
    result = train(settings, data, arithmetic="fp32")
    print(f"real-data smoke: test accuracy {result.history[-1].test_acc:.4f} "
          f"({result.history[-1].images_per_s:.0f} images/s)")
    assert result.history[-1].test_acc > 0.35
