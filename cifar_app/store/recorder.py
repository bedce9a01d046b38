"""The one recorder of a training run: what gets written to the run store, and when, however the run
is trained.

``Recorder`` wraps a ``Run`` and is, at once, the engine's callbacks (batch, epoch, probe record)
and its checkpoint store, plus the run's life: restore (make the logs agree with the checkpoint
being resumed), started, finish, stopped, failed, interrupted. The local worker (``jobs``) hands it
to ``train`` in its own process; the Ray driver (``ray_backend``) feeds it the events a remote task
relays (``Relay``, the same callbacks on the task's side, sending each event through a queue). So a
point trained on Ray has the same files and records as one trained here, and the two cannot drift.
"""

from __future__ import annotations

import io
import os
import time
from collections.abc import Callable
from dataclasses import asdict
from typing import TYPE_CHECKING

from cifar_app.core.data import CifarData
from cifar_app.core.records import BatchStats, EpochStats
from cifar_app.core.settings import TrainSettings, teacher_ids
from cifar_app.store.index import RunIndex
from cifar_app.store.run import Run
from cifar_app.store.states import RunState

if TYPE_CHECKING:  # the engine (torch) is imported where a run trains, not with the recorder
    from cifar_app.core.engine import TrainResult

HEARTBEAT_EVERY_S = 2.0
EVENTS = ("status", "batch", "epoch", "probe", "landscape", "checkpoint")  # what a relay sends


def run_training(rec, settings: TrainSettings, data: CifarData, resume: bool,
                 should_stop: Callable[[], bool] | None = None,
                 teachers: list[dict] | None = None) -> TrainResult:
    """Train with ``rec`` (a ``Recorder`` or a ``Relay``) as every callback and the checkpoint
    store; ``resume`` continues from ``rec.load_checkpoint()``. ``teachers``: the model records
    of ``settings.teacher``'s runs (``teacher_records``), for distillation."""
    from cifar_app.core.engine import select_device, train
    from cifar_app.core.precision import cpu_info
    from cifar_app.store.inference import teacher_from_records
    from cifar_app.store.results import resolve_precision

    arithmetic, why = resolve_precision(settings.precision, select_device(settings.device), settings.norm,
                              settings.arch, settings.batch_size)
    import torch

    info = {"precision": arithmetic, "precision_why": why, "device": select_device(settings.device).type,
            "torch": torch.__version__, "cpu_capability": torch.backends.cpu.get_cpu_capability()}
    if arithmetic == "bf16":
        info["reproducible_against_fp32"] = False
    rec.heartbeat(**info, **cpu_info())
    return train(settings, data, rec, resume=resume, should_stop=should_stop, arithmetic=arithmetic,
                 teacher=teacher_from_records(teachers) if settings.distill > 0 else None)


def teacher_records(store, settings: TrainSettings) -> list[dict]:
    """The model records of the runs ``settings.teacher`` names, from ``store`` (reference runs
    included); ``TeacherUnavailable`` naming the first that has no usable model."""
    from cifar_app.store.fileio import StoreError
    from cifar_app.store.run import RunDamaged, RunNotFound

    records = []
    for run_id in teacher_ids(settings.teacher):
        try:
            records.append(store.get(run_id).load_model_record())
        except (RunNotFound, FileNotFoundError, RunDamaged, StoreError) as e:
            raise TeacherUnavailable(f"teacher {run_id}: {e}") from None
    return records


class TeacherUnavailable(RuntimeError):
    """A teacher run named in the settings is missing, unfinished or damaged."""


def outcome(result: TrainResult, settings: TrainSettings, data: CifarData) -> dict:
    """What a finished training leaves: the model record and the test predictions."""
    limited = data.limit(settings.train_limit, settings.test_limit)
    from cifar_app.core.engine import model_record

    return {"model": model_record(result, settings, data.classes), "probs": result.test_probs,
            "labels": limited.test_y.numpy(), "fingerprint": limited.test_fingerprint}


def data_info(data: CifarData, settings: TrainSettings) -> dict:
    """The status fields that say what a run trains on, and on how many CPU threads (set before:
    a sweep's points that share the cores train on one each)."""
    import torch

    return {"data_source": data.source,
            "n_train": min(len(data.train_x), settings.train_limit or 10**9),
            "n_test": min(len(data.test_x), settings.test_limit or 10**9),
            "threads": torch.get_num_threads()}


def _stamped(b: BatchStats) -> BatchStats:
    if b.t is None:
        b.t = round(time.time(), 3)
    return b


class Recorder:
    """Writes one run's progress through its ``Run`` (see the module docstring): the ``engine.Callbacks``
    of a training run.

    Args:
        run: the run to record.
        pid: the process that owns the run while it trains (its liveness decides *interrupted*):
            the worker itself, or the Ray driver relaying a remote task. Default: this process.
        progress: also called with every batch and epoch record (the CLI's progress bar).
    """

    probes = True  # every run records its probe batch (inside.jsonl)

    def __init__(self, run: Run, pid: int | None = None,
                 progress: Callable[[BatchStats | EpochStats], None] | None = None) -> None:
        self.run, self.pid, self.progress = run, pid or os.getpid(), progress
        self._index = RunIndex(run.path.parent)
        self._checkpoint: dict | None = None
        self._last_beat = 0.0

    # ------------------------------------------------------------------ life
    def queued(self, **fields: object) -> None:
        """The run waits for its turn (or for its data); a fresh attempt has no error."""
        self.run.update_status(self._indexed, state=RunState.QUEUED, pid=self.pid, heartbeat=time.time(),
                               error=None, phase=None, **fields)

    def restore(self, resume: bool) -> dict | None:
        """Before training (re)starts: load the checkpoint when resuming (``RunDamaged`` for a
        foreign or broken one) and make the metrics, probe and landscape logs hold exactly its epochs, so a
        kill at any step of an epoch's end loses nothing. Returns the checkpoint (None: from the
        start)."""
        ckpt = self.run.load_checkpoint() if resume else None
        done = int(ckpt["epoch"]) if ckpt else 0
        self.run.restore_log(done, ckpt["history"] if ckpt else [])
        self.run.restore_inside(done, ckpt.get("inside", []) if ckpt else [])
        self.run.restore_landscape(ckpt.get("landscape", []) if ckpt else [])
        self._checkpoint = ckpt
        return ckpt

    def started(self, **info: object) -> None:
        """Training begins (``info``: where the data came from, the node, threads, ...)."""
        done = int(self._checkpoint["epoch"]) if self._checkpoint else 0
        self.run.heartbeat(self._indexed, state=RunState.RUNNING, pid=self.pid, started=time.time(),
                           epoch=done, error=None, phase=None, **info)

    def heartbeat(self, **fields: object) -> None:
        self.run.heartbeat(**fields)

    def finish(self, result: dict) -> None:
        """Store the final model and test predictions (``outcome``), then mark it completed."""
        self.run.save_model(result["model"])
        self.run.save_predictions(result["probs"], result["labels"], result["fingerprint"])
        self._end(RunState.COMPLETED)

    def stopped(self) -> None:
        """Stopped on request: the last epoch checkpoint stays; the request is consumed."""
        self._end(RunState.STOPPED)
        self.run.clear_stop()

    def failed(self, error: str, traceback: str | None = None) -> None:
        self._end(RunState.FAILED, error=error, traceback=traceback)

    def interrupted(self, why: str) -> None:
        """Lost without a result (a Ray worker died): resumable from the last checkpoint."""
        self._end(RunState.INTERRUPTED, error=why)

    def _end(self, state: RunState, **fields: object) -> None:
        self.run.update_status(self._indexed, state=state, finished=time.time(), pid=None, phase=None,
                               **fields)

    def _indexed(self) -> None:
        """Called under the run's status lock at each state change and epoch end: the run's row in
        the run index follows its files."""
        self._index.put(self.run)

    # ------------------------------------------------------------------ the engine's callbacks
    def batch(self, b: BatchStats) -> None:
        self.run.append_metrics(_stamped(b))
        if time.monotonic() - self._last_beat > HEARTBEAT_EVERY_S:
            self.run.heartbeat()
            self._last_beat = time.monotonic()
        if self.progress is not None:
            self.progress(b)

    def epoch(self, e: EpochStats) -> None:
        self.run.append_metrics(e)
        self.run.heartbeat(self._indexed, epoch=e.epoch)
        if self.progress is not None:
            self.progress(e)

    def probe(self, record: dict) -> None:
        self.run.append_inside(record)

    def landscape(self, record: dict) -> None:
        self.run.append_landscape(record)

    def load_checkpoint(self) -> dict | None:
        return self._checkpoint

    def save_checkpoint(self, state: dict) -> None:
        self.run.save_checkpoint(state)

    # ------------------------------------------------------------------ relayed events
    def apply(self, kind: str, payload: object) -> None:
        """Record an event a ``Relay`` sent (``EVENTS``), decoded."""
        if kind == "status":
            self.heartbeat(**payload)
        elif kind == "batch":
            self.batch(BatchStats.from_dict(payload))
        elif kind == "epoch":
            self.epoch(EpochStats.from_dict(payload))
        elif kind == "probe":
            self.probe(payload)
        elif kind == "landscape":
            self.landscape(payload)
        elif kind == "checkpoint":
            self.save_checkpoint(from_bytes(payload))
        else:
            raise ValueError(f"unknown event {kind!r}")


class Relay:
    """A ``Recorder``'s callbacks on the far side of a queue (inside a Ray task): each event goes to
    ``send(kind, payload)`` as plain data, for the driver's ``Recorder.apply``."""

    probes = True

    def __init__(self, send: Callable[[str, object], None], checkpoint: bytes | None) -> None:
        self.send, self.start = send, checkpoint

    def heartbeat(self, **fields: object) -> None:
        self.send("status", fields)

    def batch(self, b: BatchStats) -> None:
        self.send("batch", _stamped(b).to_record())

    def epoch(self, e: EpochStats) -> None:
        self.send("epoch", e.to_record())

    def probe(self, record: dict) -> None:
        self.send("probe", record)

    def landscape(self, record: dict) -> None:
        self.send("landscape", record)

    def load_checkpoint(self) -> dict | None:
        return None if self.start is None else checkpoint_from_bytes(self.start)

    def save_checkpoint(self, state: dict) -> None:
        self.send("checkpoint", to_bytes(state))


def to_bytes(obj: object) -> bytes:
    """A dict of tensors and plain values as torch bytes (loadable ``weights_only``)."""
    import torch

    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def from_bytes(data: bytes) -> dict:
    import torch

    return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)


def checkpoint_to_bytes(ckpt: dict) -> bytes:
    """A loaded checkpoint (history as ``EpochStats``) back to bytes, to start a remote resume."""
    return to_bytes({**ckpt, "history": [asdict(e) for e in ckpt["history"]]})


def checkpoint_from_bytes(data: bytes) -> dict:
    ckpt = from_bytes(data)
    ckpt["history"] = [EpochStats.from_dict(h) for h in ckpt["history"]]
    return ckpt
