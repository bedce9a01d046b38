"""CIFAR-10 Normalization Lab: train, compare and probe small CNNs on CIFAR-10.

The Python API, in the order a user meets it::

    from cifar_app import load_cifar10, TrainSettings, RunStore, execute_run, load_model, classify

    data = load_cifar10("data")                      # uint8 tensors (N, 3, 32, 32) + labels
    store = RunStore("runs")
    run = store.create(TrainSettings(norm="group", epochs=2, train_limit=2000))
    execute_run(store, run.id, data)                 # trains, logging to runs/<id>/
    print(classify(["cat.jpg"], load_model(run))[0].top_k)
"""

from cifar_app.core.data import CLASSES, CifarData, DataError, load_cifar10
from cifar_app.core.model import NORMS, CifarNet, build_model, count_parameters, summarize
from cifar_app.core.settings import SettingsError, TrainSettings
from cifar_app.store.inference import ImageError, classify, classify_each, decode_image, load_model
from cifar_app.store.jobs import execute_run, start_run
from cifar_app.store.run import Run
from cifar_app.store.runstore import RunStore

__all__ = [
    "CLASSES", "CifarData", "DataError", "load_cifar10",
    "ImageError", "classify", "classify_each", "decode_image", "load_model",
    "execute_run", "start_run",
    "NORMS", "CifarNet", "build_model", "count_parameters", "summarize",
    "Run", "RunStore", "SettingsError", "TrainSettings",
]
