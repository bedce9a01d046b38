"""One run folder: ``Run`` reads and writes its files (through ``formats`` and ``fileio``), and a
file that is not what the app writes makes the run *damaged* (``RunDamaged`` names the file and why).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING

from cifar_app.core.records import BatchStats, EpochStats
from cifar_app.core.settings import TrainSettings, shown
from cifar_app.store.fileio import (
    StoreError,
    atomic_write,
    file_lock,
    os_reason,
    pid_alive,
    write_json_atomic,
)
from cifar_app.store.formats import (
    CHECKPOINT,
    INSIDE,
    LANDSCAPE,
    LOG,
    METRICS,
    MODEL,
    PORTABLE,
    PREDICTIONS,
    RESULT_PARSERS,
    RESULTS,
    SETTINGS,
    STATUS,
    STATUS_LOCK,
    STOP,
    FileInvalid,
    Metrics,
    build_metrics,
    inside_line,
    landscape_line,
    metrics_line,
    parse_checkpoint,
    parse_model,
    parse_object,
    parse_predictions,
    parse_settings,
    parse_status,
)
from cifar_app.store.logreader import LogCache, LogDamaged
from cifar_app.store.states import ACTIVE, RunState

if TYPE_CHECKING:  # imported where used: listing runs needs no numpy
    import numpy as np

HEARTBEAT_STALE_S = 120.0


class RunNotFound(KeyError):
    """No run with that id (or the id is malformed)."""

    def __str__(self) -> str:
        return f"no run {shown(self.args[0])}" if self.args else "no such run"


class ReadOnlyRun(PermissionError):
    """A reference run cannot be changed or deleted."""




class RunDamaged(RuntimeError):
    """A run's file is not what the app writes. ``file`` names it, ``reason`` says why."""

    def __init__(self, run_id: str, file: str, reason: str) -> None:
        super().__init__(f"run {run_id} is damaged: {file}: {reason}")
        self.run_id, self.file, self.reason = run_id, file, reason

    @property
    def short(self) -> str:
        """'damaged: metrics.jsonl: line 3 is not valid UTF-8'."""
        return f"damaged: {self.file}: {self.reason}"




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
    has_probes: bool = False      # inside.jsonl holds records (``Run.has_inside``)

    @property
    def damaged(self) -> bool:
        return self.status == RunState.DAMAGED

    def as_dict(self) -> dict:
        """The fields as a plain JSON-ready dict (``tags`` copied)."""
        out = {name: getattr(self, name) for name in _SUMMARY_FIELDS}
        out["tags"] = dict(self.tags)
        return out

    @classmethod
    def from_dict(cls, d: dict) -> RunSummary:
        """The inverse of ``as_dict``: ``TypeError``/``ValueError`` for anything else (a field of
        the wrong type, a missing or unknown one)."""
        if not isinstance(d, dict):
            raise TypeError("not a run summary")
        summary = cls(**{**d, "status": RunState(d.get("status"))})
        for name, kinds in _SUMMARY_TYPES.items():
            value = getattr(summary, name)
            if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
                raise TypeError(f"{name}: {type(value).__name__}")
        return summary


_SUMMARY_FIELDS = tuple(f.name for f in fields(RunSummary))
_N = type(None)
_SUMMARY_TYPES: dict[str, tuple[type, ...]] = {
    "id": (str,), "label": (str,), "reference": (bool,), "norm": (str,), "epoch": (int,),
    "epochs": (int, _N), "best_test_acc": (float, int, _N), "best_epoch": (int, _N),
    "final_test_acc": (float, int, _N), "params": (int, _N), "seconds": (float, int),
    "created": (float, int, _N), "error": (str, _N), "has_model": (bool,), "tags": (dict,), "changes": (str,),
    "has_probes": (bool,),
}


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

    def has_inside(self) -> bool:
        """Whether inside.jsonl holds anything (one stat: whether its records are sound is known
        only when ``inside()`` reads them)."""
        try:
            return (self.path / INSIDE).stat().st_size > 0
        except OSError:
            return False

    def has_checkpoint(self) -> bool:
        return (self.path / CHECKPOINT).is_file()

    def log_stamp(self) -> tuple[int, int, int]:
        """(inode, size, mtime_ns) of the metrics log, (0, 0, 0) when absent: a key for what is drawn
        from it (a rewritten or grown log gets a new one)."""
        try:
            st = (self.path / METRICS).stat()
        except OSError:
            return (0, 0, 0)
        return (st.st_ino, st.st_size, st.st_mtime_ns)

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
            raise self._damaged(name, f"cannot be read ({os_reason(e)})") from None

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
        """status.json, with an active run whose process died reported as 'interrupted'
        (``liveness``)."""
        st = self.raw_status()
        return st if self.reference else liveness(st)

    def state(self) -> RunState:
        """The run's state, ``DAMAGED`` when a file it needs is unreadable."""
        try:
            return RunState(self.status()["state"])
        except RunDamaged:
            return RunState.DAMAGED

    def update_status(self, after: Callable[[], object] | None = None, **fields: object) -> dict:
        """Merge ``fields`` into status.json and return the new status. The read, merge and atomic
        rewrite happen under the run's status lock, so two writers (the worker's heartbeat and a
        rename from a page) never undo each other's fields; ``after()`` runs under the same lock,
        once the status is written (the recorder updates the run index there)."""
        self._writable()
        with file_lock(self.path / STATUS_LOCK):
            st = {**self.raw_status(), **fields}
            write_json_atomic(self.path / STATUS, st)
            if after is not None:
                after()
        return st

    def heartbeat(self, after: Callable[[], object] | None = None, **fields: object) -> None:
        self.update_status(after, heartbeat=time.time(), **fields)

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
            raise StoreError(f"cannot write {self.path / METRICS}: {os_reason(e)}") from None

    def metrics(self) -> Metrics:
        """Batch and epoch records. A torn last line (a writer killed mid-line) is skipped; any other
        bad line makes the run damaged (``RunDamaged`` with the line number). Read incrementally
        (``logreader``): an unchanged log costs one stat, a grown one only its new lines. The
        result is shared with other readers: do not modify it."""
        try:
            return _LOGS.read(self.path / METRICS, metrics_line, build_metrics, Metrics)
        except LogDamaged as e:
            raise self._damaged(METRICS, str(e)) from None
        except OSError as e:
            raise self._damaged(METRICS, f"cannot be read ({os_reason(e)})") from None

    def restore_log(self, done_epochs: int, history: list[EpochStats]) -> None:
        """Make the log agree with a checkpoint at ``done_epochs``: keep the batch records of those
        epochs, and take the epoch records from the checkpoint's ``history`` (so a kill between the
        checkpoint and the log's epoch record loses nothing). Called before training (re)starts."""
        self._writable()
        kept = [b for b in self.metrics().batches if b.epoch <= done_epochs]
        ordered = sorted([*kept, *history[:done_epochs]],
                         key=lambda r: (r.epoch, isinstance(r, EpochStats), getattr(r, "step", 0)))
        text = "".join(json.dumps(r.to_record(), separators=(",", ":")) + "\n" for r in ordered)
        atomic_write(self.path / METRICS, lambda f: f.write(text.encode()))

    def append_inside(self, record: dict) -> None:
        """Append one probe record (``inside.probe_record``) to inside.jsonl."""
        self._append_line(INSIDE, record)

    def inside(self) -> list[dict]:
        """Probe records by epoch (0 = initialisation); [] when the run has none (runs trained before
        probing existed). A torn last line is skipped; any other bad line is ``RunDamaged``. Read
        incrementally, like ``metrics``; the list is shared: do not modify it."""
        return self._read_log(INSIDE, inside_line, "probe")

    def restore_inside(self, done_epochs: int, records: list[dict]) -> None:
        """Make inside.jsonl hold exactly the checkpoint's probe records up to ``done_epochs``."""
        self._rewrite_log(INSIDE, [r for r in records if r.get("epoch", 10**9) <= done_epochs])

    def append_landscape(self, record: dict) -> None:
        """Append one landscape record (``landscape.landscape_record``) to landscape.jsonl."""
        self._append_line(LANDSCAPE, record)

    def landscape(self) -> list[dict]:
        """Landscape records by step; [] when the run has none. Read like ``inside``."""
        return self._read_log(LANDSCAPE, landscape_line, "landscape")

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
            raise StoreError(f"cannot write {self.path / name}: {os_reason(e)}") from None

    def _read_log(self, name: str, line: Callable, kind: str) -> list[dict]:
        try:
            return _LOGS.read(self.path / name, line, lambda g: g.get(kind, []), list)
        except LogDamaged as e:
            raise self._damaged(name, str(e)) from None
        except OSError as e:
            raise self._damaged(name, f"cannot be read ({os_reason(e)})") from None

    def _rewrite_log(self, name: str, records: list[dict]) -> None:
        self._writable()
        text = "".join(json.dumps(r, separators=(",", ":")) + "\n" for r in records)
        atomic_write(self.path / name, lambda f: f.write(text.encode()))

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
                raise self._damaged(name, f"cannot be read ({os_reason(e)})") from None
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
            raise StoreError(f"cannot write {self.path / STOP}: {os_reason(e)}") from None

    def stop_requested(self) -> bool:
        return (self.path / STOP).exists()

    def clear_stop(self) -> None:
        """Forget a stop request: by the worker once it has stopped, or by a user's new Start."""
        try:
            (self.path / STOP).unlink(missing_ok=True)
        except OSError as e:
            raise StoreError(f"cannot write {self.path}: {os_reason(e)}") from None

    # ------------------------------------------------------------------ checkpoint & model
    def save_checkpoint(self, state: dict) -> None:
        """Store an epoch checkpoint (a dict of tensors and plain values) atomically."""
        self._writable()
        import torch

        atomic_write(self.path / CHECKPOINT, lambda f: torch.save(state, f))

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

        atomic_write(self.path / MODEL, lambda f: torch.save(record, f))

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
        import numpy as np

        arrays = dict(probs=probs.astype(np.float16), preds=probs.argmax(1).astype(np.uint8),
                      labels=labels.astype(np.int64), fingerprint=np.array(fingerprint))
        atomic_write(self.path / PREDICTIONS, lambda f: np.savez_compressed(f, **arrays))

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
        status 'damaged' and ``error`` 'damaged: <file>: <why>'; an active run whose process died,
        'interrupted' (``liveness``)."""
        summary, st = self.raw_summary()
        return summary if self.reference else live_summary(summary, st.get("pid"), st.get("heartbeat"))

    def raw_summary(self) -> tuple[RunSummary, dict]:
        """The summary from the files as written, before the liveness check, and the raw status
        it was made from ({} when unreadable): what the run index keeps."""
        try:
            s = self.settings()
            st = self.raw_status()
            m = self.metrics()
        except RunDamaged as e:
            try:
                st = self.raw_status()
            except RunDamaged:
                st = {}
            return RunSummary(self.id, str(st.get("label") or self.id), self.reference, "?", RunState.DAMAGED,
                              0, None, None, None, None, None, 0.0, _float(st.get("created")), e.short,
                              self.has_model(), _tags(st), has_probes=self.has_inside()), st
        best = m.best
        return RunSummary(
            id=self.id, label=str(st.get("label") or self.id), reference=self.reference, norm=s.norm,
            status=RunState(st["state"]), epoch=len(m.epochs), epochs=s.epochs,
            best_test_acc=best.test_acc if best else None, best_epoch=best.epoch if best else None,
            final_test_acc=m.epochs[-1].test_acc if m.epochs else None,
            params=st.get("params") if isinstance(st.get("params"), int) else None,
            seconds=sum(e.seconds for e in m.epochs), created=_float(st.get("created")),
            error=st.get("error") if isinstance(st.get("error"), str) else None,
            has_model=self.has_model(), tags=_tags(st), changes=s.changes(), has_probes=self.has_inside(),
        ), st


def liveness(st: dict) -> dict:
    """A status as written, with an active run whose process died reported as 'interrupted': its
    pid is not alive, or its heartbeat is older than ``HEARTBEAT_STALE_S``. A run nobody has
    started yet (no pid) is 'queued' while its heartbeat is fresh."""
    if st.get("state") not in ACTIVE:
        return st
    try:
        beat = float(st.get("heartbeat") or 0)
    except (TypeError, ValueError):
        beat = 0.0
    stale = time.time() - beat > HEARTBEAT_STALE_S
    pid = st.get("pid")
    # a queued run has no pid until its worker starts; a running one always has one
    dead = not pid_alive(pid) if pid is not None or st.get("state") == RunState.RUNNING else False
    if stale or dead:
        why = ("the training process ended without finishing" if pid is not None
               else "no training process ever started for it")
        st = {**st, "state": RunState.INTERRUPTED, "error": st.get("error") or why}
    return st


def live_summary(summary: RunSummary, pid: object, heartbeat: object) -> RunSummary:
    """``summary`` (made from the status as written) with ``liveness`` applied: the state of an
    active run depends on its process, not only on its files."""
    if summary.status not in ACTIVE:
        return summary
    st = liveness({"state": summary.status, "pid": pid, "heartbeat": heartbeat, "error": summary.error})
    return replace(summary, status=RunState(st["state"]), error=st["error"])


def _float(v: object) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def _tags(st: dict) -> dict:
    tags = st.get("tags")
    return dict(tags) if isinstance(tags, dict) else {}


_LOGS = LogCache()  # this process's parsed metrics and probe logs, by path









