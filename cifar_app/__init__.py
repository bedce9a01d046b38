"""CIFAR-10 Normalization Lab: train, compare and probe small CNNs on CIFAR-10.

The Python API, in the order a user meets it::

    from cifar_app import load_cifar10, TrainSettings, RunStore, execute_run, load_model, classify

    data = load_cifar10("data")                      # uint8 tensors (N, 3, 32, 32) + labels
    store = RunStore("runs")
    run = store.create(TrainSettings(norm="group", epochs=2, train_limit=2000))
    execute_run(store, run.id, data)                 # trains, logging to runs/<id>/
    print(classify(["cat.jpg"], load_model(run))[0].top_k)
"""

import importlib

# Each public name and the module that defines it, imported on first use (PEP 562): ``import
# cifar_app`` and the CLI's listing do not load torch; ``from cifar_app import load_model`` does.
_WHERE = {
    "CLASSES": "core.data", "CifarData": "core.data", "DataError": "core.data", "load_cifar10": "core.data",
    "NORMS": "core.model", "CifarNet": "core.model", "build_model": "core.model",
    "count_parameters": "core.model", "summarize": "core.model",
    "SettingsError": "core.settings", "TrainSettings": "core.settings",
    "ImageError": "store.inference", "classify": "store.inference", "classify_each": "store.inference",
    "decode_image": "store.inference", "load_model": "store.inference",
    "execute_run": "store.jobs", "start_run": "store.jobs",
    "Run": "store.run", "RunStore": "store.runstore",
}
__all__ = list(_WHERE)


def __getattr__(name: str) -> object:
    if name not in _WHERE:
        raise AttributeError(f"module 'cifar_app' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"cifar_app.{_WHERE[name]}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_WHERE])
