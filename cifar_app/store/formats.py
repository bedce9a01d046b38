"""The run folder's files, declared once: their names, and one parser or validator per file (also
for the results files of experiments and a run's cached analyses).

    <runs root>/.index.sqlite3    the run index (index.py): every run's summary, a cache of the folders
    <runs root>/<run id>/
        settings.json      TrainSettings as a JSON object
        status.json        state, pid, heartbeat, error, label, times (rewritten atomically)
        metrics.jsonl      append-only log, one JSON object a line: BatchStats / EpochStats records
                           ({"type": "batch", ...} / {"type": "epoch", ...}, see records.py)
        checkpoint.pt      latest epoch checkpoint (model, optimizer, epoch, history) for resume
        model.pt           final weights + input normalization + settings + classes (inference)
        predictions.npz    final model's test-set probabilities (float16, N x 10), exact predicted
                           classes (uint8), labels and a fingerprint of the test set
        inside.jsonl       one JSON object a line: the probe batch's activation statistics at
                           initialisation (epoch 0) and after each epoch (see inside.py)
        landscape.jsonl    one JSON object a line: the loss landscape and internal covariate shift at
                           the probe steps (settings.landscape > 0; see landscape.py)
        batchdep.json      cached analysis of the final model: batch dependence (see batchdep.py)
        stop               present = a stop was requested (removed by the worker that honours it)
        log.txt            stdout/stderr of the training process

Reads: a file that is not what the app writes makes the run *damaged* (``RunDamaged`` names the file
and why); it is shown as such and never rewritten or deleted unless the user asks.
Every parser refuses what the app does not write (``FileInvalid`` says why): NaN and infinities,
duplicate keys, a string for a number, a missing key, an accuracy outside 0..1.
"""

from __future__ import annotations

import io
import json
import math
import pickle
import struct
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from cifar_app.core.records import BatchStats, EpochStats, RecordError, parse_record
from cifar_app.core.settings import SettingsError, TrainSettings, shown
from cifar_app.store.logreader import LogDamaged, check_log
from cifar_app.store.states import RunState

MAX_LABEL = 80
# letters that draw as nothing (Hangul fillers, the Braille blank): a label made of them looks empty
_BLANKS = frozenset("\u115f\u1160\u3164\uffa0\u2800")


def check_label(label: object) -> str:
    """A run's display label, stripped: at most ``MAX_LABEL`` characters, no control, format or
    bidirectional-override character (they reorder or hide what the label shows); ``ValueError``
    naming the first such character."""
    import unicodedata

    text = str(label).strip()
    if not text:
        raise ValueError("label must not be empty")
    for ch in text:
        if (unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp") or ch in _BLANKS
                or 0xE0100 <= ord(ch) <= 0xE01EF):  # variation selectors that hide data in a label
            name = unicodedata.name(ch, "a control character")
            raise ValueError(f"label: U+{ord(ch):04X} ({name}) is not allowed in a label")
    return text[:MAX_LABEL]


SETTINGS, STATUS, METRICS = "settings.json", "status.json", "metrics.jsonl"
CHECKPOINT, MODEL, PREDICTIONS, STOP, LOG = "checkpoint.pt", "model.pt", "predictions.npz", "stop", "log.txt"
INSIDE, LANDSCAPE = "inside.jsonl", "landscape.jsonl"
STATUS_LOCK = ".status.lock"  # held by every read-modify-write of status.json
RESULTS = ("batchdep",)  # analyses cached with a run, each as <name>.json
# What a run bundle (export.py) may carry, besides status.json.
PORTABLE = (SETTINGS, METRICS, MODEL, PREDICTIONS, CHECKPOINT, INSIDE, LANDSCAPE,
            *(f"{r}.json" for r in RESULTS))
RUN_FILES = (SETTINGS, STATUS, METRICS)  # any of these makes a folder a run
INDEX = ".index.sqlite3"  # in the runs folder: the run index (index.py), a cache of the summaries
# predictions.npz unpacks to ~0.3 MB for the 10,000 test images; a member claiming more is refused
# before it is decompressed (a small zip can unpack to gigabytes).
MAX_PREDICTIONS_BYTES = 64 * 2**20


class FileInvalid(ValueError):
    """Bytes that are not a valid run file of their kind; the message says why."""


# ---------------------------------------------------------------------------- file formats
# One parser per run file, used both to read a stored run and to check a bundle before import
# (export.py): what one accepts, the other accepts.


def parse_object(data: bytes) -> dict:
    """A JSON object (settings.json, status.json, <result>.json)."""
    try:
        obj = json.loads(data.decode("utf-8"))
    except UnicodeDecodeError as e:
        raise FileInvalid(f"not UTF-8 text (byte {e.start})") from None
    except ValueError as e:
        raise FileInvalid(f"not valid JSON ({e})") from None
    if not isinstance(obj, dict):
        raise FileInvalid(f"holds a JSON {type(obj).__name__}, not an object")
    return obj


def parse_strict_json(data: bytes) -> object:
    """JSON as the app writes it: UTF-8, no NaN or Infinity literals, no key twice in an object. (A
    number that overflows a float, 1e400, parses to inf: the field checks refuse it.)"""
    def refuse(name: str) -> object:
        raise FileInvalid(f"holds {name}, which is not a number JSON allows")

    def unique(pairs: list[tuple[str, object]]) -> dict:
        out: dict = {}
        for k, v in pairs:
            if k in out:
                raise FileInvalid(f"the key {shown(k, 30)} appears twice in one object")
            out[k] = v
        return out

    try:
        obj = json.loads(data.decode("utf-8"), parse_constant=refuse, object_pairs_hook=unique)
    except UnicodeDecodeError as e:
        raise FileInvalid(f"not UTF-8 text (byte {e.start})") from None
    except FileInvalid:
        raise
    except (ValueError, RecursionError) as e:
        raise FileInvalid(f"not valid JSON ({str(e)[:80]})") from None
    return obj


def _check_number(where: str, v: object, low: float | None = None, high: float | None = None,
                  optional: bool = False, integer: bool = False) -> None:
    """``v`` a finite number (an int when ``integer``) within [low, high]; None too if ``optional``."""
    if v is None and optional:
        return
    kinds = (int,) if integer else (int, float)
    if isinstance(v, bool) or not isinstance(v, kinds):
        raise FileInvalid(f"{where}: must be a {'whole ' if integer else ''}number, got {shown(v, 30)}")
    try:
        finite = math.isfinite(float(v))
    except OverflowError:  # a whole number past any float's range (JSON allows one)
        finite = False
    if not finite:
        raise FileInvalid(f"{where}: must be finite, got {shown(v, 30)}")
    if (low is not None and v < low) or (high is not None and v > high):
        rng = f"in [{low:g}, {high:g}]" if low is not None and high is not None else (
            f">= {low:g}" if low is not None else f"<= {high:g}")
        raise FileInvalid(f"{where}: must be {rng}, got {shown(v, 30)}")


def _check_fields(where: str, obj: object, spec: dict[str, tuple]) -> dict:
    """``obj`` a JSON object whose keys in ``spec`` (name -> ``_check_number`` arguments: low,
    high, optional, integer) hold such numbers; a key an optional spec allows may be absent."""
    if not isinstance(obj, dict):
        raise FileInvalid(f"{where}: must be an object, got {shown(obj, 30)}")
    for key, (low, high, optional, integer) in spec.items():
        if key not in obj and not optional:
            raise FileInvalid(f"{where}: missing {key!r}")
        _check_number(f"{where}.{key}", obj.get(key), low, high, optional, integer)
    return obj


_ACC = (0.0, 1.0, False, False)
_EPOCH_SPEC = {"epoch": (1, None, False, True), "train_acc": _ACC, "test_acc": _ACC,
               "seconds": (0.0, None, False, False), "train_loss": (None, None, True, False),
               "test_loss": (None, None, True, False), "images_per_s": (0.0, None, True, False),
               "train_eval_acc": (0.0, 1.0, True, False)}
_LANDSCAPE_SPEC = {"step": (0, None, False, True), "lr": (0.0, None, False, False),
                   "grad_norm": (0.0, None, False, False), "loss_range": (0.0, None, False, False),
                   "predictiveness": (0.0, None, False, False), "beta": (0.0, None, False, False)}
_BLOCK_SPEC = {"ics_cos": (-1.000001, 1.000001, False, False), "ics_l2": (0.0, None, False, False),
               "grad_norm": (0.0, None, False, False)}
RESULT_STATES = frozenset({*RunState, "pending", "deleted"})  # RunState and PointState's names


def _records(where: str, point: dict, key: str, spec: dict) -> list[dict]:
    """A point's optional list of records (``key``), each checked against ``spec``; [] when absent."""
    records = point.get(key)
    if records is None:
        return []
    if not isinstance(records, list):
        raise FileInvalid(f"{where}: {key!r} must be a list")
    for k, r in enumerate(records):
        _check_fields(f"{where} {key} {k}", r, spec)
    return records


def parse_results(data: bytes) -> dict:
    """An experiment's results file (``benchmarks/presets.py``'s, the app's shipped
    ``store/reference_experiments``): an object with ``experiment``, ``grid`` and ``points``; each point's
    settings valid, its state one the app writes, its accuracies finite in [0, 1], its epoch and
    landscape records complete and finite; no point twice (the same settings). ``FileInvalid``
    names the first thing wrong."""
    d = parse_strict_json(data)
    if not isinstance(d, dict):
        raise FileInvalid(f"holds a JSON {type(d).__name__}, not an object")
    if not isinstance(d.get("experiment"), str) or not d["experiment"]:
        raise FileInvalid("missing 'experiment' (its id)")
    if d.get("preset") is not None and not isinstance(d["preset"], str):
        raise FileInvalid(f"'preset' must be a name, got {shown(d['preset'], 30)}")
    if not isinstance(d.get("grid", {}), (dict, type(None))):
        raise FileInvalid("'grid' must be an object")
    points = d.get("points")
    if not isinstance(points, list) or not points:
        raise FileInvalid("'points' must be a non-empty list")
    seen: dict[str, int] = {}
    for i, p in enumerate(points):
        where = f"point {i}"
        if not isinstance(p, dict):
            raise FileInvalid(f"{where}: must be an object")
        if not isinstance(p.get("settings"), dict):
            raise FileInvalid(f"{where}: missing its settings")
        try:
            settings = TrainSettings.from_record(p["settings"])
        except (SettingsError, TypeError, ValueError) as e:
            raise FileInvalid(f"{where}: settings: {e}") from None
        key = json.dumps(settings.to_dict(), sort_keys=True)
        if key in seen:
            raise FileInvalid(f"{where}: the same settings as point {seen[key]} (a point counted twice)")
        seen[key] = i
        if p.get("status") not in RESULT_STATES:
            raise FileInvalid(f"{where}: unknown status {shown(p.get('status'), 30)}")
        _check_fields(where, p, {"final_test_acc": (0.0, 1.0, True, False),
                                 "best_test_acc": (0.0, 1.0, True, False),
                                 "seconds": (0.0, None, True, False)})
        if p["status"] == RunState.COMPLETED and p.get("final_test_acc") is None:
            raise FileInvalid(f"{where}: completed without a final test accuracy")
        epochs = _records(where, p, "epochs", _EPOCH_SPEC)
        for k in range(1, len(epochs)):
            if epochs[k]["epoch"] <= epochs[k - 1]["epoch"]:
                raise FileInvalid(f"{where} epochs {k}: epochs out of order")
        for k, r in enumerate(_records(where, p, "landscape", _LANDSCAPE_SPEC)):
            if not isinstance(r.get("blocks"), dict):
                raise FileInvalid(f"{where} landscape {k}: missing its 'blocks'")
            for name, b in r["blocks"].items():
                _check_fields(f"{where} landscape {k} block {name}", b, _BLOCK_SPEC)
    return d


def parse_batchdep(data: bytes) -> dict:
    """batchdep.json (``batchdep.BatchDependence``): accuracies finite in [0, 1] per test batch
    size, counts of differing predictions whole and non-negative."""
    obj = parse_strict_json(data)
    if not isinstance(obj, dict):
        raise FileInvalid(f"holds a JSON {type(obj).__name__}, not an object")
    d = _check_fields("batchdep", obj,
                      {"n_test": (1, None, False, True), "eval_acc": _ACC,
                       "precise_bn_acc": (0.0, 1.0, True, False),
                       "precise_bn_images": (0, None, True, True)})
    for key, integer in (("batch_stats", False), ("differ_from_eval", True)):
        table = d.get(key)
        if not isinstance(table, dict) or not table:
            raise FileInvalid(f"batchdep: {key!r} must be a non-empty object")
        for size, v in table.items():
            if not str(size).isdigit() or int(size) < 1:
                raise FileInvalid(f"batchdep.{key}: {shown(size, 20)} is not a batch size")
            if integer:
                _check_number(f"batchdep.{key}[{size}]", v, 0, d["n_test"], integer=True)
            else:
                _check_number(f"batchdep.{key}[{size}]", v, 0.0, 1.0)
    if set(d["differ_from_eval"]) != set(d["batch_stats"]):
        raise FileInvalid("batchdep: 'differ_from_eval' and 'batch_stats' name different batch sizes")
    return d


def parse_status(data: bytes) -> dict:
    """status.json: an object whose ``state`` is one this app writes."""
    st = parse_object(data)
    if st.get("state") not in set(RunState) - {RunState.DAMAGED}:
        raise FileInvalid(f"unknown state {str(st.get('state'))[:40]!r}")
    return st


def parse_settings(data: bytes) -> TrainSettings:
    """settings.json: the run's validated settings."""
    try:
        return TrainSettings.from_record(parse_object(data))
    except (SettingsError, TypeError) as e:
        raise FileInvalid(str(e)) from None


def check_metrics(data: bytes) -> int:
    """metrics.jsonl: every line a batch or epoch record; returns how many."""
    try:
        return check_log(data, metrics_line)
    except LogDamaged as e:
        raise FileInvalid(str(e)) from None


def check_inside(data: bytes) -> int:
    """inside.jsonl: every line a probe record (an int ``epoch`` and its ``layers``)."""
    try:
        return check_log(data, inside_line)
    except LogDamaged as e:
        raise FileInvalid(str(e)) from None


def check_landscape(data: bytes) -> int:
    """landscape.jsonl: every line a landscape record (an int ``step`` and its ``blocks``)."""
    try:
        return check_log(data, landscape_line)
    except LogDamaged as e:
        raise FileInvalid(str(e)) from None


def parse_torch(source: bytes | Path, keys: tuple[str, ...], map_location: str = "cpu") -> dict:
    """A torch file this app wrote (a dict with ``keys``), loaded weights only: one holding code or
    other objects is refused with a plain message (never PyTorch's advice to disable
    ``weights_only``, which would run the payload)."""
    import torch

    try:
        obj = torch.load(io.BytesIO(source) if isinstance(source, bytes) else source,
                         map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise
    except pickle.UnpicklingError:
        raise FileInvalid("not a file this app wrote: it holds objects other than tensors and plain "
                          "values (possibly code), so it will not be loaded") from None
    except (RuntimeError, EOFError, ValueError, OSError, zipfile.BadZipFile, AttributeError,
            TypeError, KeyError, IndexError, struct.error, MemoryError, OverflowError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise FileInvalid(f"unreadable or truncated ({first[:160]})") from None
    if not isinstance(obj, dict):
        raise FileInvalid(f"holds a {type(obj).__name__}, not a dict")
    for key in keys:
        if key not in obj:
            raise FileInvalid(f"has no {key!r}")
    return obj


def parse_checkpoint(source: bytes | Path, map_location: str = "cpu") -> dict:
    """checkpoint.pt: model, optimizer, epoch and the epoch history (as ``EpochStats``)."""
    ckpt = parse_torch(source, ("model", "optimizer", "epoch", "history"), map_location)
    try:
        ckpt["history"] = [EpochStats.from_dict(h) for h in ckpt["history"]]
    except (RecordError, TypeError, AttributeError) as e:
        raise FileInvalid(f"bad history ({e})") from None
    return ckpt


def parse_model(source: bytes | Path, settings: TrainSettings, map_location: str = "cpu") -> dict:
    """model.pt: weights that fit ``settings``' network, its input normalization, settings and
    classes."""
    from cifar_app.core.model import build_model

    rec = parse_torch(source, ("model", "mean", "std", "settings", "classes"), map_location)
    model = build_model(settings.norm, settings.groups, settings.dropout, settings.arch)
    try:
        model.load_state_dict(rec["model"])
    except (RuntimeError, TypeError, KeyError, AttributeError) as e:
        first = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
        raise FileInvalid(f"does not fit the run's settings ({first})") from None
    try:  # a setting added since the model was saved takes its default
        same = TrainSettings.from_record(rec.get("settings")).to_dict() == settings.to_dict()
    except SettingsError:
        same = False
    if not same:
        raise FileInvalid(f"was trained with other settings than {SETTINGS}")
    return rec


def parse_predictions(source: bytes | Path) -> dict:
    """predictions.npz: ``{"probs": (N,10) float32, "preds": (N,) int64, "labels": (N,),
    "fingerprint": str}``. Each member's unpacked size is checked against
    ``MAX_PREDICTIONS_BYTES`` from the zip's headers and the array's own header before anything is
    decompressed, and no member is read past its declared size."""
    import numpy as np  # here: listing runs needs no numpy

    try:
        with zipfile.ZipFile(io.BytesIO(source) if isinstance(source, bytes) else source) as z:
            infos = z.infolist()
            total = sum(i.file_size for i in infos)
            if total > MAX_PREDICTIONS_BYTES:
                raise FileInvalid(f"unpacks to {total / 2**20:,.0f} MB; a predictions file is at most "
                                  f"{MAX_PREDICTIONS_BYTES // 2**20} MB, so it was not unpacked")
            arrays = {}
            for info in infos:
                with z.open(info) as f:
                    version = np.lib.format.read_magic(f)
                    read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                                   else np.lib.format.read_array_header_2_0)
                    shape, _, dtype = read_header(f)
                if dtype.hasobject:
                    raise FileInvalid(f"{info.filename} holds Python objects")
                if int(np.prod(shape, dtype=np.float64)) * dtype.itemsize > info.file_size:
                    raise FileInvalid(f"{info.filename} claims a {shape} array larger than its data")
                arrays[info.filename.removesuffix(".npy")] = np.load(io.BytesIO(z.read(info)),
                                                                     allow_pickle=False)
    except FileInvalid:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError, TypeError) as e:
        raise FileInvalid(f"not a predictions file this app wrote ({type(e).__name__}: "
                          f"{str(e)[:160]})") from None
    try:
        probs = arrays["probs"].astype(np.float32)
        labels = arrays["labels"].astype(np.int64)
        preds = arrays["preds"] if "preds" in arrays else probs.argmax(1)  # files before preds
        fingerprint = str(arrays["fingerprint"])
    except KeyError as e:
        raise FileInvalid(f"has no {e.args[0]!r} array") from None
    except (ValueError, TypeError) as e:
        raise FileInvalid(f"unexpected arrays ({e})") from None
    if probs.ndim != 2 or probs.shape[1] != 10 or len(labels) != len(probs) or preds.shape != labels.shape:
        raise FileInvalid("its arrays' shapes do not match (probs N x 10, preds and labels N)")
    return {"probs": probs, "preds": preds.astype(np.int64), "labels": labels, "fingerprint": fingerprint}


def validate_file(name: str, data: bytes, settings: TrainSettings) -> None:
    """Check the bytes of the run file ``name`` (one of ``PORTABLE``) with the same parser that
    reads it from a stored run; ``FileInvalid`` says why not."""
    if name == SETTINGS:
        parse_settings(data)
    elif name == METRICS:
        check_metrics(data)
    elif name == INSIDE:
        check_inside(data)
    elif name == LANDSCAPE:
        check_landscape(data)
    elif name == MODEL:
        parse_model(data, settings)
    elif name == CHECKPOINT:
        parse_checkpoint(data)
    elif name == PREDICTIONS:
        parse_predictions(data)
    elif name == "batchdep.json":
        parse_batchdep(data)
    elif name in (f"{r}.json" for r in RESULTS):
        parse_object(data)
    else:
        raise FileInvalid(f"{name!r} is not a run file")


@dataclass
class Metrics:
    """Parsed metrics log: per-batch and per-epoch records, in order; a later record of the same
    step/epoch replaces an earlier one (a resumed run re-does its unfinished epoch)."""

    batches: list[BatchStats] = field(default_factory=list)
    epochs: list[EpochStats] = field(default_factory=list)

    @property
    def best(self) -> EpochStats | None:
        """The epoch with the highest test accuracy (the earliest on a tie)."""
        return max(self.epochs, key=lambda e: e.test_acc, default=None)


def metrics_line(obj: dict) -> tuple[str, int, BatchStats | EpochStats]:
    r = parse_record(obj)  # RecordError (a ValueError) names the field
    return ("batch", r.step, r) if isinstance(r, BatchStats) else ("epoch", r.epoch, r)


def build_metrics(kinds: dict[str, list]) -> Metrics:
    return Metrics(kinds.get("batch", []), kinds.get("epoch", []))


def inside_line(obj: dict) -> tuple[str, int, dict]:
    if not isinstance(obj.get("epoch"), int) or isinstance(obj.get("epoch"), bool) \
            or not isinstance(obj.get("layers"), dict):
        raise ValueError("not a probe record")
    return "probe", obj["epoch"], obj


def landscape_line(obj: dict) -> tuple[str, int, dict]:
    if not isinstance(obj.get("step"), int) or isinstance(obj.get("step"), bool) \
            or not isinstance(obj.get("blocks"), dict):
        raise ValueError("not a landscape record")
    return "landscape", obj["step"], obj


RESULT_PARSERS: dict[str, Callable[[bytes], dict]] = {"batchdep": parse_batchdep}  # by RESULTS name
