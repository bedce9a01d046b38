"""The run store: one directory per training run. This module is the only one that reads or writes
a run's files; everything else goes through ``Run`` and ``RunStore``.

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

Writes: every whole file goes through ``_atomic_write`` (temp file in the same folder, fsync, rename),
so a reader or a kill never leaves a torn file; the metrics log is appended and flushed line by line,
and a reader skips an unfinished last line. A new run is assembled in a hidden temp folder and renamed
into place; a deleted run is first renamed out of sight. Torch files are always loaded with
``weights_only=True``: a file holding code is refused, never run.

Reads: a file that is not what the app writes makes the run *damaged* (``RunDamaged`` names the file
and why); it is shown as such and never rewritten or deleted unless the user asks.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import io
import json
import os
import pickle
import secrets
import shutil
import tempfile
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import numpy as np

from cifar_app.core.records import BatchStats, EpochStats, RecordError, parse_record
from cifar_app.core.settings import SettingsError, TrainSettings, shown, valid_run_id
from cifar_app.store.logreader import LogCache, LogDamaged, check_log
from cifar_app.store.states import ACTIVE, RunState

HEARTBEAT_STALE_S = 120.0
REFERENCE_ROOT = Path(__file__).parent / "reference_runs"


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
# predictions.npz unpacks to ~0.3 MB for the 10,000 test images; a member claiming more is refused
# before it is decompressed (a small zip can unpack to gigabytes).
MAX_PREDICTIONS_BYTES = 64 * 2**20


class RunNotFound(KeyError):
    """No run with that id (or the id is malformed)."""

    def __str__(self) -> str:
        return f"no run {shown(self.args[0])}" if self.args else "no such run"


class ReadOnlyRun(PermissionError):
    """A reference run cannot be changed or deleted."""


class StoreError(RuntimeError):
    """The run store could not be written; the message names the path and the reason."""


class RunDamaged(RuntimeError):
    """A run's file is not what the app writes. ``file`` names it, ``reason`` says why."""

    def __init__(self, run_id: str, file: str, reason: str) -> None:
        super().__init__(f"run {run_id} is damaged: {file}: {reason}")
        self.run_id, self.file, self.reason = run_id, file, reason

    @property
    def short(self) -> str:
        """'damaged: metrics.jsonl: line 3 is not valid UTF-8'."""
        return f"damaged: {self.file}: {self.reason}"


def default_reference_root() -> Path | None:
    """``$CIFAR_APP_REFERENCE_RUNS`` if set (empty hides reference runs), else the shipped folder."""
    value = os.environ.get("CIFAR_APP_REFERENCE_RUNS")
    if value is None:
        return REFERENCE_ROOT
    return Path(value) if value else None


def default_runs_dir() -> Path:
    """``$CIFAR_APP_RUNS`` if set, else ``./runs``."""
    return Path(os.environ.get("CIFAR_APP_RUNS") or "runs")


def _why(e: OSError) -> str:
    return e.strerror or type(e).__name__


def _atomic_write(path: Path, write: Callable[[IO[bytes]], None]) -> None:
    """Write ``path`` whole or not at all: ``write(f)`` into a temp file beside it, fsync, rename.
    Raises ``StoreError`` (naming the path) when the folder cannot be written; no temp file stays."""
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as e:
        raise StoreError(f"cannot write {path}: {_why(e)}") from None
    try:
        os.fchmod(fd, 0o644)  # as a plain open() would leave it (mkstemp makes it private)
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        Path(tmp).unlink(missing_ok=True)
        raise StoreError(f"cannot write {path}: {_why(e)}") from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_text_atomic(path: Path, text: str) -> None:
    """``text`` (UTF-8) to ``path`` whole or not at all."""
    data = text.encode("utf-8")
    _atomic_write(Path(path), lambda f: f.write(data))


def write_json_atomic(path: Path, obj: object) -> None:
    """Write JSON to ``path`` atomically (see ``_atomic_write``)."""
    data = json.dumps(obj, indent=1).encode()
    _atomic_write(Path(path), lambda f: f.write(data))


def pid_alive(pid: int | None) -> bool:
    """True when ``pid`` is a live (not zombie) process on this machine."""
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OverflowError:
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


class FileInvalid(ValueError):
    """Bytes that are not a valid run file of their kind; the message says why."""


def file_lock(path: Path):
    """An exclusive ``flock`` on ``path`` (created if needed) for a read-modify-write of a file
    other processes also write; released when the block ends, or by the OS if the holder dies.
    ``StoreError`` when the lock file cannot be created (a read-only store)."""
    return _file_lock(Path(path))


@contextlib.contextmanager
def _file_lock(path: Path):
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as e:
        raise StoreError(f"cannot write {path}: {_why(e)}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


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
    if not np.isfinite(float(v)):
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
    """An experiment's results file (``benchmarks/results/preset_*.json``, the app's shipped
    ``reference_experiments``): an object with ``experiment``, ``grid`` and ``points``; each point's
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


RESULT_PARSERS: dict[str, Callable[[bytes], dict]] = {"batchdep": parse_batchdep}  # by RESULTS name


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
        return check_log(data, _metrics_line)
    except LogDamaged as e:
        raise FileInvalid(str(e)) from None


def check_inside(data: bytes) -> int:
    """inside.jsonl: every line a probe record (an int ``epoch`` and its ``layers``)."""
    try:
        return check_log(data, _inside_line)
    except LogDamaged as e:
        raise FileInvalid(str(e)) from None


def check_landscape(data: bytes) -> int:
    """landscape.jsonl: every line a landscape record (an int ``step`` and its ``blocks``)."""
    try:
        return check_log(data, _landscape_line)
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
            TypeError, KeyError, IndexError) as e:
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


@dataclass(frozen=True)
class RunSummary:
    """One row for run tables, the CLI and the pickers. Accuracies are fractions in 0..1."""

    id: str
    label: str
    reference: bool
    norm: str                     # "?" when the settings are damaged
    status: RunState
    epoch: int                    # epochs finished
    epochs: int | None            # epochs planned
    best_test_acc: float | None
    best_epoch: int | None
    final_test_acc: float | None
    params: int | None
    seconds: float                # training wall time of the finished epochs
    created: float | None
    error: str | None
    has_model: bool
    tags: dict = field(default_factory=dict)
    changes: str = ""             # settings other than the default recipe's (TrainSettings.changes)

    @property
    def damaged(self) -> bool:
        return self.status == RunState.DAMAGED

    def as_dict(self) -> dict:
        from dataclasses import asdict

        return asdict(self)


class Run:
    """One run directory. Reading is always allowed; writing only for user runs."""

    def __init__(self, path: Path, reference: bool = False) -> None:
        self.path = Path(path)
        self.id = self.path.name
        self.reference = reference

    def __repr__(self) -> str:
        return f"Run({self.id!r}{', reference' if self.reference else ''})"

    @property
    def log_path(self) -> Path:
        """Where the training process's output goes (text, appended)."""
        return self.path / LOG

    def has_model(self) -> bool:
        return (self.path / MODEL).is_file()

    def has_checkpoint(self) -> bool:
        return (self.path / CHECKPOINT).is_file()

    def model_mtime(self) -> float:
        """Modification time of model.pt (to key caches), 0 when absent."""
        try:
            return (self.path / MODEL).stat().st_mtime
        except OSError:
            return 0.0

    def _writable(self) -> None:
        if self.reference:
            raise ReadOnlyRun(f"{self.id} is a reference run and cannot be changed")

    def _damaged(self, file: str, reason: str) -> RunDamaged:
        return RunDamaged(self.id, file, reason)

    def _read_bytes(self, name: str) -> bytes:
        try:
            return (self.path / name).read_bytes()
        except FileNotFoundError:
            raise self._damaged(name, "missing") from None
        except OSError as e:
            raise self._damaged(name, f"cannot be read ({_why(e)})") from None

    def _read_object(self, name: str) -> dict:
        try:
            return parse_object(self._read_bytes(name))
        except FileInvalid as e:
            raise self._damaged(name, str(e)) from None

    # ------------------------------------------------------------------ settings & status
    def settings(self) -> TrainSettings:
        """The run's settings; ``RunDamaged`` when settings.json is missing or invalid (never the
        defaults: resuming would train something else)."""
        try:
            return parse_settings(self._read_bytes(SETTINGS))
        except FileInvalid as e:
            raise self._damaged(SETTINGS, str(e)) from None

    def raw_status(self) -> dict:
        """status.json as written, without the liveness check (``RunDamaged`` if unreadable)."""
        try:
            return parse_status(self._read_bytes(STATUS))
        except FileInvalid as e:
            raise self._damaged(STATUS, str(e)) from None

    def status(self) -> dict:
        """status.json, with an active run whose process died reported as 'interrupted'.

        A run nobody has started yet (no pid) is 'queued' while its heartbeat is fresh."""
        st = self.raw_status()
        if st.get("state") in ACTIVE and not self.reference:
            try:
                beat = float(st.get("heartbeat") or 0)
            except (TypeError, ValueError):
                beat = 0.0
            stale = time.time() - beat > HEARTBEAT_STALE_S
            pid = st.get("pid")
            # a queued run has no pid until its worker starts; a running one always has one
            dead = not pid_alive(pid) if pid is not None or st.get("state") == RunState.RUNNING else False
            if stale or dead:
                why = ("the training process ended without finishing" if st.get("pid") is not None
                       else "no training process ever started for it")
                st = {**st, "state": RunState.INTERRUPTED, "error": st.get("error") or why}
        return st

    def state(self) -> RunState:
        """The run's state, ``DAMAGED`` when a file it needs is unreadable."""
        try:
            return RunState(self.status()["state"])
        except RunDamaged:
            return RunState.DAMAGED

    def update_status(self, **fields: object) -> dict:
        """Merge ``fields`` into status.json and return the new status. The read, merge and atomic
        rewrite happen under the run's status lock, so two writers (the worker's heartbeat and a
        rename from a page) never undo each other's fields."""
        self._writable()
        with file_lock(self.path / STATUS_LOCK):
            st = {**self.raw_status(), **fields}
            write_json_atomic(self.path / STATUS, st)
        return st

    def heartbeat(self, **fields: object) -> None:
        self.update_status(heartbeat=time.time(), **fields)

    @property
    def label(self) -> str:
        try:
            return str(self.raw_status().get("label") or self.id)
        except RunDamaged:
            return self.id

    # ------------------------------------------------------------------ metrics
    def append_metrics(self, *records: BatchStats | EpochStats) -> None:
        """Append records to metrics.jsonl, one JSON line each, flushed."""
        self._writable()
        text = "".join(json.dumps(r.to_record(), separators=(",", ":")) + "\n" for r in records)
        try:
            with open(self.path / METRICS, "a", encoding="utf-8") as f:
                f.write(text)
                f.flush()
        except OSError as e:
            raise StoreError(f"cannot write {self.path / METRICS}: {_why(e)}") from None

    def metrics(self) -> Metrics:
        """Batch and epoch records. A torn last line (a writer killed mid-line) is skipped; any other
        bad line makes the run damaged (``RunDamaged`` with the line number). Read incrementally
        (``logreader``): an unchanged log costs one stat, a grown one only its new lines. The
        result is shared with other readers: do not modify it."""
        try:
            return _LOGS.read(self.path / METRICS, _metrics_line, _build_metrics, Metrics)
        except LogDamaged as e:
            raise self._damaged(METRICS, str(e)) from None
        except OSError as e:
            raise self._damaged(METRICS, f"cannot be read ({_why(e)})") from None

    def restore_log(self, done_epochs: int, history: list[EpochStats]) -> None:
        """Make the log agree with a checkpoint at ``done_epochs``: keep the batch records of those
        epochs, and take the epoch records from the checkpoint's ``history`` (so a kill between the
        checkpoint and the log's epoch record loses nothing). Called before training (re)starts."""
        self._writable()
        kept = [b for b in self.metrics().batches if b.epoch <= done_epochs]
        ordered = sorted([*kept, *history[:done_epochs]],
                         key=lambda r: (r.epoch, isinstance(r, EpochStats), getattr(r, "step", 0)))
        text = "".join(json.dumps(r.to_record(), separators=(",", ":")) + "\n" for r in ordered)
        _atomic_write(self.path / METRICS, lambda f: f.write(text.encode()))

    def append_inside(self, record: dict) -> None:
        """Append one probe record (``inside.probe_record``) to inside.jsonl."""
        self._append_line(INSIDE, record)

    def inside(self) -> list[dict]:
        """Probe records by epoch (0 = initialisation); [] when the run has none (runs trained before
        probing existed). A torn last line is skipped; any other bad line is ``RunDamaged``. Read
        incrementally, like ``metrics``; the list is shared: do not modify it."""
        return self._read_log(INSIDE, _inside_line, "probe")

    def restore_inside(self, done_epochs: int, records: list[dict]) -> None:
        """Make inside.jsonl hold exactly the checkpoint's probe records up to ``done_epochs``."""
        self._rewrite_log(INSIDE, [r for r in records if r.get("epoch", 10**9) <= done_epochs])

    def append_landscape(self, record: dict) -> None:
        """Append one landscape record (``landscape.landscape_record``) to landscape.jsonl."""
        self._append_line(LANDSCAPE, record)

    def landscape(self) -> list[dict]:
        """Landscape records by step; [] when the run has none. Read like ``inside``."""
        return self._read_log(LANDSCAPE, _landscape_line, "landscape")

    def restore_landscape(self, records: list[dict]) -> None:
        """Make landscape.jsonl hold exactly the checkpoint's records (those of its epochs)."""
        self._rewrite_log(LANDSCAPE, records)

    def _append_line(self, name: str, record: dict) -> None:
        self._writable()
        try:
            with open(self.path / name, "a", encoding="utf-8") as f:
                f.write(json.dumps(record, separators=(",", ":")) + "\n")
                f.flush()
        except OSError as e:
            raise StoreError(f"cannot write {self.path / name}: {_why(e)}") from None

    def _read_log(self, name: str, line: Callable, kind: str) -> list[dict]:
        try:
            return _LOGS.read(self.path / name, line, lambda g: g.get(kind, []), list)
        except LogDamaged as e:
            raise self._damaged(name, str(e)) from None
        except OSError as e:
            raise self._damaged(name, f"cannot be read ({_why(e)})") from None

    def _rewrite_log(self, name: str, records: list[dict]) -> None:
        self._writable()
        text = "".join(json.dumps(r, separators=(",", ":")) + "\n" for r in records)
        _atomic_write(self.path / name, lambda f: f.write(text.encode()))

    def save_result(self, name: str, obj: dict) -> None:
        """Cache an analysis of the final model (``name`` in ``RESULTS``) as JSON, atomically."""
        if name not in RESULTS:
            raise ValueError(f"unknown result {name!r}")
        self._writable()
        write_json_atomic(self.path / f"{name}.json", obj)

    def load_result(self, name: str) -> dict | None:
        """A cached analysis, None when absent or older than the model; ``RunDamaged`` if unreadable."""
        if name not in RESULTS:
            raise ValueError(f"unknown result {name!r}")
        path = self.path / f"{name}.json"
        if not path.is_file():
            return None
        if self.has_model() and path.stat().st_mtime < self.model_mtime() and not self.reference:
            return None  # the model changed since
        parse = RESULT_PARSERS.get(name, parse_object)
        try:
            return parse(self._read_bytes(path.name))
        except FileInvalid as e:
            raise self._damaged(path.name, str(e)) from None

    def portable_files(self) -> dict[str, bytes]:
        """The run's files that travel in a bundle (``PORTABLE``), as bytes, those present only."""
        out = {}
        for name in PORTABLE:
            try:
                out[name] = (self.path / name).read_bytes()
            except FileNotFoundError:
                continue
            except OSError as e:
                raise self._damaged(name, f"cannot be read ({_why(e)})") from None
        return out

    def remove_temp_files(self) -> None:
        """Delete temp files a killed writer left behind (names start with '.' and end '.tmp')."""
        for p in self.path.glob(".*.tmp"):
            p.unlink(missing_ok=True)

    # ------------------------------------------------------------------ stop request
    def request_stop(self) -> None:
        """Ask the run's worker to stop; honoured whenever it arrives (queued, loading, training)."""
        self._writable()
        try:
            (self.path / STOP).write_text(f"{time.time()}\n")
        except OSError as e:
            raise StoreError(f"cannot write {self.path / STOP}: {_why(e)}") from None

    def stop_requested(self) -> bool:
        return (self.path / STOP).exists()

    def clear_stop(self) -> None:
        """Forget a stop request: by the worker once it has stopped, or by a user's new Start."""
        try:
            (self.path / STOP).unlink(missing_ok=True)
        except OSError as e:
            raise StoreError(f"cannot write {self.path}: {_why(e)}") from None

    # ------------------------------------------------------------------ checkpoint & model
    def save_checkpoint(self, state: dict) -> None:
        """Store an epoch checkpoint (a dict of tensors and plain values) atomically."""
        self._writable()
        import torch

        _atomic_write(self.path / CHECKPOINT, lambda f: torch.save(state, f))

    def load_checkpoint(self, map_location: str = "cpu") -> dict | None:
        """The last epoch checkpoint, or None when there is none; ``RunDamaged`` when unreadable."""
        path = self.path / CHECKPOINT
        if not path.is_file():
            return None
        try:
            return parse_checkpoint(path, map_location)
        except FileInvalid as e:
            raise self._damaged(CHECKPOINT, str(e)) from None

    def save_model(self, record: dict) -> None:
        """Store the final model record (see ``engine.model_record``) atomically."""
        self._writable()
        import torch

        _atomic_write(self.path / MODEL, lambda f: torch.save(record, f))

    def load_model_record(self, map_location: str = "cpu") -> dict:
        """model.pt: ``{"model": state_dict, "mean": (3,), "std": (3,), "settings": dict,
        "classes": list}``; ``FileNotFoundError`` before training ends, ``RunDamaged`` if unreadable."""
        path = self.path / MODEL
        if not path.is_file():
            raise FileNotFoundError(f"run {self.id} has no trained model yet (state: {self.state()})")
        try:
            return parse_model(path, self.settings(), map_location)
        except FileInvalid as e:
            raise self._damaged(MODEL, str(e)) from None

    # ------------------------------------------------------------------ predictions
    def save_predictions(self, probs: np.ndarray, labels: np.ndarray, fingerprint: str) -> None:
        """Store test-set probabilities (N, 10) as float16, the predicted class (N,) (the argmax of
        the full-precision ``probs``) and labels (N,) int64, atomically."""
        self._writable()
        arrays = dict(probs=probs.astype(np.float16), preds=probs.argmax(1).astype(np.uint8),
                      labels=labels.astype(np.int64), fingerprint=np.array(fingerprint))
        _atomic_write(self.path / PREDICTIONS, lambda f: np.savez_compressed(f, **arrays))

    def load_predictions(self) -> dict | None:
        """``{"probs": (N,10) float32, "preds": (N,) int64, "labels": (N,), "fingerprint": str}``,
        or None when absent or unreadable (they are a cache: the model can recompute them)."""
        try:
            return parse_predictions(self.path / PREDICTIONS)
        except (FileInvalid, OSError):
            return None

    # ------------------------------------------------------------------ summary
    def damage(self) -> RunDamaged | None:
        """What makes this run damaged (settings, status or metrics unreadable), or None."""
        try:
            self.settings()
            self.raw_status()
            self.metrics()
        except RunDamaged as e:
            return e
        return None

    def summary(self) -> RunSummary:
        """The one summary of a run used by every table, picker and the CLI. A damaged run gets
        status 'damaged' and ``error`` 'damaged: <file>: <why>'."""
        try:
            s = self.settings()
            st = self.status()
            m = self.metrics()
        except RunDamaged as e:
            try:
                st = self.raw_status()
            except RunDamaged:
                st = {}
            return RunSummary(self.id, str(st.get("label") or self.id), self.reference, "?", RunState.DAMAGED,
                              0, None, None, None, None, None, 0.0, _float(st.get("created")), e.short,
                              self.has_model(), _tags(st))
        best = m.best
        return RunSummary(
            id=self.id, label=str(st.get("label") or self.id), reference=self.reference, norm=s.norm,
            status=RunState(st["state"]), epoch=len(m.epochs), epochs=s.epochs,
            best_test_acc=best.test_acc if best else None, best_epoch=best.epoch if best else None,
            final_test_acc=m.epochs[-1].test_acc if m.epochs else None,
            params=st.get("params") if isinstance(st.get("params"), int) else None,
            seconds=sum(e.seconds for e in m.epochs), created=_float(st.get("created")),
            error=st.get("error") if isinstance(st.get("error"), str) else None,
            has_model=self.has_model(), tags=_tags(st), changes=s.changes(),
        )


def _float(v: object) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def _tags(st: dict) -> dict:
    tags = st.get("tags")
    return dict(tags) if isinstance(tags, dict) else {}


class RunStore:
    """All runs under ``root`` plus the shipped reference runs.

    Args:
        root: the user's runs directory (created on first write); default ``default_runs_dir()``.
        reference_root: folder of read-only reference runs; None hides them; default
            ``default_reference_root()``.
    """

    def __init__(self, root: Path | str | None = None,
                 reference_root: Path | None | str = "default") -> None:
        self.root = Path(root) if root is not None else default_runs_dir()
        self.reference_root = default_reference_root() if reference_root == "default" else reference_root

    def ensure_root(self) -> Path:
        """Create the runs folder if needed; ``StoreError`` (path and reason) when it cannot be
        a writable folder."""
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except FileExistsError:
            raise StoreError(f"cannot use {self.root} as the runs folder: it is not a folder") from None
        except OSError as e:
            raise StoreError(f"cannot create the runs folder {self.root}: {_why(e)}") from None
        if not self.root.is_dir():
            raise StoreError(f"cannot use {self.root} as the runs folder: it is not a folder")
        return self.root

    def create(self, settings: TrainSettings, label: str | None = None,
               tags: dict | None = None) -> Run:
        """New queued run with a generated id; ``settings`` are validated and stored. The run
        appears whole or not at all (assembled in a hidden folder, then renamed into place).
        ``tags`` (JSON values) are kept in the status, e.g. ``{"experiment": ID}``."""
        settings.validate()
        label = check_label(label) if label and label.strip() else None

        def write(folder: Path) -> None:
            now = time.time()
            write_json_atomic(folder / SETTINGS, settings.to_dict())
            write_json_atomic(folder / STATUS, {
                "state": RunState.QUEUED, "label": label, "created": now,
                "heartbeat": now, "pid": None, "params": settings.param_count(), "tags": tags or {}})

        return self._new_run(write, settings.norm)

    def add_run(self, files: dict[str, bytes], status: dict, preferred_id: str | None = None) -> Run:
        """A new run from already validated file contents (``PORTABLE`` names) and a status, under
        ``preferred_id`` when that is a valid id not taken, else a fresh one. Whole or not at all."""
        unknown = set(files) - set(PORTABLE)
        if unknown or SETTINGS not in files:
            raise ValueError(f"not run files: {sorted(unknown) or 'no settings.json'}")

        def write(folder: Path) -> None:
            for name, data in files.items():
                _atomic_write(folder / name, lambda f, data=data: f.write(data))
            write_json_atomic(folder / STATUS, status)

        return self._new_run(write, "import", preferred_id)

    def _new_run(self, write: Callable[[Path], None], kind: str, preferred_id: str | None = None) -> Run:
        """Fill a hidden staging folder with ``write(folder)``, then rename it to ``preferred_id``
        when that is a valid id free among user and reference runs, else to a fresh
        ``<time>-<kind>-<hex>`` id. No partial run is ever visible."""
        root = self.ensure_root()
        try:
            staging = Path(tempfile.mkdtemp(prefix=".new-", dir=root))
            staging.chmod(0o755)
        except OSError as e:
            raise StoreError(f"cannot write to the runs folder {root}: {_why(e)}") from None
        try:
            write(staging)
            candidates = [preferred_id] if valid_run_id(preferred_id) else []
            for _ in range(100):
                run_id = candidates.pop() if candidates else (
                    f"{time.strftime('%Y%m%d-%H%M%S')}-{kind}-{secrets.token_hex(3)}")
                taken = self.reference_root is not None and (self.reference_root / run_id).exists()
                if taken or (root / run_id).exists():
                    continue
                try:
                    os.rename(staging, root / run_id)
                    return Run(root / run_id)
                except OSError as e:
                    if (root / run_id).exists():
                        continue
                    raise StoreError(f"cannot write to the runs folder {root}: {_why(e)}") from None
            raise StoreError(f"could not allocate a run id in {root}")  # pragma: no cover
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def get(self, run_id: str) -> Run:
        """The run with this id (user runs first, then reference runs); ``RunNotFound`` otherwise."""
        if not valid_run_id(run_id):
            raise RunNotFound(run_id)
        if _is_run_dir(self.root / run_id):
            return Run(self.root / run_id)
        if self.reference_root is not None and _is_run_dir(self.reference_root / run_id):
            return Run(self.reference_root / run_id, reference=True)
        raise RunNotFound(run_id)

    def list(self) -> list[Run]:
        """User runs, newest first, then reference runs in name order (damaged runs included)."""
        runs: list[Run] = []
        if self.root.is_dir():
            try:
                mine = [p for p in self.root.iterdir() if valid_run_id(p.name) and _is_run_dir(p)]
            except OSError:
                mine = []
            runs += [Run(p) for p in sorted(mine, key=lambda p: p.name, reverse=True)]
        if self.reference_root is not None and self.reference_root.is_dir():
            refs = [p for p in self.reference_root.iterdir() if valid_run_id(p.name) and _is_run_dir(p)]
            runs += [Run(p, reference=True) for p in sorted(refs)]
        return runs

    def summaries(self) -> list[RunSummary]:
        """``summary()`` of every run, in ``list()`` order."""
        return [r.summary() for r in self.list()]

    def rename(self, run_id: str, label: str) -> None:
        """Set a run's display label (the id never changes)."""
        self.get(run_id).update_status(label=check_label(label))

    def delete(self, run_id: str) -> None:
        """Delete a user run that is not training (a damaged one too: the user asked). Reference
        runs and active runs refuse. The folder is renamed out of sight first, so a failure leaves
        the run whole."""
        run = self.get(run_id)
        run._writable()
        state = run.state()
        if state in ACTIVE:
            raise RuntimeError(f"{run_id} is still {state}: stop it first")
        trash = self.root / f".deleted-{run_id}-{secrets.token_hex(3)}"
        try:
            os.rename(run.path, trash)
        except OSError as e:
            raise StoreError(f"cannot delete {run.path}: {_why(e)}") from None
        shutil.rmtree(trash, ignore_errors=True)


_LOGS = LogCache()  # this process's parsed metrics and probe logs, by path


def _metrics_line(obj: dict) -> tuple[str, int, BatchStats | EpochStats]:
    r = parse_record(obj)  # RecordError (a ValueError) names the field
    return ("batch", r.step, r) if isinstance(r, BatchStats) else ("epoch", r.epoch, r)


def _build_metrics(kinds: dict[str, list]) -> Metrics:
    return Metrics(kinds.get("batch", []), kinds.get("epoch", []))


def _inside_line(obj: dict) -> tuple[str, int, dict]:
    if not isinstance(obj.get("epoch"), int) or isinstance(obj.get("epoch"), bool) \
            or not isinstance(obj.get("layers"), dict):
        raise ValueError("not a probe record")
    return "probe", obj["epoch"], obj


def _landscape_line(obj: dict) -> tuple[str, int, dict]:
    if not isinstance(obj.get("step"), int) or isinstance(obj.get("step"), bool) \
            or not isinstance(obj.get("blocks"), dict):
        raise ValueError("not a landscape record")
    return "landscape", obj["step"], obj


def _is_run_dir(p: Path) -> bool:
    return p.is_dir() and any((p / name).is_file() for name in RUN_FILES)


def copy_run(src: Run, dst: Path, status: dict, batch_every: int = 1) -> Run:
    """Write ``src`` as a new run folder ``dst`` (replacing one there): its settings, final model,
    test predictions and metrics (batch records thinned to every ``batch_every``-th step plus each
    epoch's last, without wall-clock times; every epoch record kept), with ``status`` as its
    status. Used to ship reference runs; the copy appears whole or not at all."""
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{dst.name}-", dir=dst.parent))
    staging.chmod(0o755)
    try:
        for name in (SETTINGS, MODEL, PREDICTIONS, INSIDE, LANDSCAPE, *(f"{r}.json" for r in RESULTS)):
            path = src.path / name
            if name not in (SETTINGS, MODEL, PREDICTIONS) and (not path.is_file() or not path.stat().st_size):
                continue  # an optional record the run never wrote (an empty log is none)
            data = path.read_bytes()
            _atomic_write(staging / name, lambda f, data=data: f.write(data))
        m = src.metrics()
        kept = [BatchStats(**{**b.__dict__, "t": None}) for b in m.batches
                if b.step % batch_every == 0 or b.batch == b.batches]
        ordered = sorted([*kept, *m.epochs],
                         key=lambda r: (r.epoch, isinstance(r, EpochStats), getattr(r, "step", 0)))
        text = "".join(json.dumps(r.to_record(), separators=(",", ":")) + "\n" for r in ordered)
        _atomic_write(staging / METRICS, lambda f: f.write(text.encode()))
        write_json_atomic(staging / STATUS, status)
        if dst.exists():
            trash = dst.with_name(f".replaced-{dst.name}-{secrets.token_hex(3)}")
            os.rename(dst, trash)
            shutil.rmtree(trash, ignore_errors=True)
        os.rename(staging, dst)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return Run(dst)


@functools.lru_cache(maxsize=16)
def _store_at(root: str) -> RunStore:
    return RunStore(root)


def default_store() -> RunStore:
    """The store of ``default_runs_dir()``, one per folder in this process: the one the dashboard's
    pages and its live routes share."""
    return _store_at(str(default_runs_dir()))
