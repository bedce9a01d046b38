"""Training as a job: the worker that runs one stored run, and launching it as its own process.

``execute_run`` is what runs inside the training process (the CLI's ``train`` calls it directly,
the dashboard starts ``python -m cifar_app worker RUN`` through ``start_run``). It writes progress to
the run store, so any number of readers (pages, tabs, the CLI) can follow it. This module only
orchestrates: every file is read and written through ``Run``.

On a CPU-only machine, runs take turns: a run waits as ``RunState.QUEUED`` until no other run holds the
training lock (an ``flock`` on ``<runs root>/.train.lock``, released by the OS even if the holder is
killed), so two runs never halve each other's speed.

A stop request is never dropped: the worker does not clear it when it starts (the user may have
pressed Stop a moment after Start); it is removed only once honoured, or by the user's next Start.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from cifar_app.core.data import CifarData, load_cifar10
from cifar_app.core.records import BatchStats, EpochStats
from cifar_app.core.settings import TrainSettings
from cifar_app.store.fileio import StoreError, pid_alive, write_json_atomic
from cifar_app.store.recorder import Recorder, data_info, outcome, run_training, teacher_records
from cifar_app.store.run import Run, RunDamaged
from cifar_app.store.runstore import RunStore
from cifar_app.store.states import ACTIVE, RESUMABLE, DownloadState, RunState

DataSource = CifarData | Callable[..., CifarData] | None


class StopRequested(Exception):
    """The run was asked to stop before its training started."""


@contextlib.contextmanager
def training_slot(store: RunStore, runs: Run | list[Run], exclusive: bool) -> Iterator[None]:
    """Hold the store-wide training lock (when ``exclusive``), heartbeating ``runs`` as queued while
    waiting; ``StopRequested`` if any of them is asked to stop meanwhile."""
    if not exclusive:
        yield
        return
    runs = runs if isinstance(runs, list) else [runs]
    root = store.ensure_root()
    try:
        lock = open(root / ".train.lock", "a+")
    except OSError as e:
        raise StoreError(f"cannot write {root / '.train.lock'}: {e.strerror}") from None
    with lock:
        while True:
            if any(run.stop_requested() for run in runs):
                raise StopRequested
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                for run in runs:
                    run.heartbeat(state=RunState.QUEUED)
                time.sleep(1.0)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def execute_run(
    store: RunStore,
    run_id: str,
    data: DataSource = None,
    resume: bool = False,
    progress: Callable[[BatchStats | EpochStats], None] | None = None,
    slot_held: bool = False,
) -> Run:
    """Train the stored run ``run_id`` in this process and record everything in the store.

    ``data`` is the dataset or a function ``f(progress=callback)`` that loads it (default:
    ``load_cifar10``); it is loaded only once this run's turn has come, and the run's status shows
    the loading's progress. Errors are stored as ``RunState.FAILED`` and re-raised; a damaged
    run is refused before anything is written. ``slot_held``: the caller already holds the
    training lock for this run (a sweep running two 1-thread points at once).
    """
    run = store.get(run_id)
    settings = run.settings()  # RunDamaged: nothing written
    run.remove_temp_files()
    rec = Recorder(run, progress=progress)
    rec.queued()
    try:
        from cifar_app.core.engine import select_device  # torch: only where a run trains

        device = select_device(settings.device)
        with training_slot(store, run, exclusive=device.type == "cpu" and not slot_held):
            data = _load(run, data)
            if run.stop_requested():
                raise StopRequested
            rec.restore(resume)  # RunDamaged for a foreign or broken checkpoint
            rec.started(**data_info(data, settings))
            result = run_training(rec, settings, data, resume, should_stop=run.stop_requested,
                                  teachers=teacher_records(store, settings))
            if result.stopped:
                raise StopRequested
            rec.finish(outcome(result, settings, data))
    except StopRequested:
        rec.stopped()
    except BaseException as e:  # noqa: BLE001 - record every failure, then re-raise it
        if isinstance(e, KeyboardInterrupt):
            rec.stopped()
        elif not isinstance(e, StoreError):  # an unwritable store cannot record anything
            rec.failed(str(e) or type(e).__name__,
                       None if isinstance(e, RunDamaged) else traceback.format_exc(limit=8))
        raise
    return run


def _load(run: Run, data: DataSource) -> CifarData:
    if isinstance(data, CifarData):
        return data
    last = 0.0

    def loading(done: int, total: int) -> None:
        nonlocal last
        if time.monotonic() - last > 1.0 or done == total:
            run.heartbeat(phase=f"decoding CIFAR-10 images: {done:,}/{total:,}")
            last = time.monotonic()

    load = data if data is not None else load_cifar10
    result = load(progress=loading)
    run.heartbeat(phase=None)
    return result


# ---------------------------------------------------------------------------- background processes

_children: set[subprocess.Popen] = set()


def _reap(proc: subprocess.Popen) -> None:
    """Wait for a child in a daemon thread, so a finished worker never lingers as a zombie."""
    _children.add(proc)

    def wait() -> None:
        proc.wait()
        _children.discard(proc)

    threading.Thread(target=wait, name=f"reap-{proc.pid}", daemon=True).start()


def _die_with_parent() -> None:
    """In the child, before exec: get SIGKILL when the parent dies (Linux ``PR_SET_PDEATHSIG``)."""
    import ctypes
    import signal

    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux: the child outlives its parent
        pass


def spawn_cli(args: list[str], log_path: Path, die_with_parent: bool = False) -> subprocess.Popen:
    """Run ``python -m cifar_app ARGS`` detached (own session), output appended to ``log_path``.
    ``die_with_parent``: the child is killed if this process dies (a sweep's paired points)."""
    try:
        log = open(log_path, "ab")
    except OSError as e:
        raise StoreError(f"cannot write {log_path}: {e.strerror}") from None
    with log:
        proc = subprocess.Popen([sys.executable, "-m", "cifar_app", *args], stdout=log,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True, env={**os.environ, "PYTHONUNBUFFERED": "1"},
                                preexec_fn=_die_with_parent if die_with_parent else None)
    _reap(proc)
    return proc


@dataclass(frozen=True)
class WorkerArgs:
    """``python -m cifar_app worker``'s command line, owned here for both sides: ``start_run`` builds
    it (``argv``), the CLI declares and reads it (``add_arguments``, ``from_namespace``)."""

    run: str
    runs_dir: str | None = None  # None: the default ($CIFAR_APP_RUNS or ./runs)
    data: str | None = None
    resume: bool = False
    threads: int | None = None  # torch threads
    slot_held: bool = False     # the caller holds the training lock (a sweep running two points)

    def argv(self) -> list[str]:
        args = ["worker", self.run]
        args += ["--runs-dir", self.runs_dir] if self.runs_dir is not None else []
        args += ["--data", self.data] if self.data is not None else []
        args += ["--resume"] if self.resume else []
        args += ["--threads", str(self.threads)] if self.threads is not None else []
        return args + (["--slot-held"] if self.slot_held else [])

    @staticmethod
    def add_arguments(p, threads_type: Callable[[str], int]) -> None:
        """The worker's own arguments (``--data`` and ``--runs-dir`` are every verb's)."""
        p.add_argument("run")
        p.add_argument("--resume", action="store_true")
        p.add_argument("--threads", type=threads_type, default=None, help="torch threads")
        p.add_argument("--slot-held", action="store_true",
                       help="the caller holds the training lock (a sweep running two points at once)")

    @classmethod
    def from_namespace(cls, ns) -> WorkerArgs:
        return cls(ns.run, ns.runs_dir, ns.data, ns.resume, ns.threads, ns.slot_held)


def start_run(store: RunStore, run_id: str, data_dir: Path | str | None = None,
              resume: bool = False, threads: int | None = None,
              slot_held: bool = False) -> subprocess.Popen:
    """Start ``python -m cifar_app worker RUN`` as a detached process (own session, output to the
    run's log.txt). Closing the browser or restarting the dashboard does not stop it. This is the
    user's Start (or Resume), so an old stop request is forgotten first. ``slot_held``: started by a
    sweep that holds the training lock for it; it then dies with that sweep process."""
    run = store.get(run_id)
    run.clear_stop()
    args = WorkerArgs(run_id, str(store.root), None if data_dir is None else str(data_dir), resume, threads,
                      slot_held).argv()
    run.update_status(state=RunState.QUEUED, heartbeat=time.time(), error=None, pid=None)
    proc = spawn_cli(args, run.log_path, die_with_parent=slot_held)
    run.update_status(pid=proc.pid)  # the worker writes the same pid once it is up
    return proc


@dataclass
class Started:
    """A run just started from the UI, and the runs it waits behind (empty: it trains now)."""

    run: Run
    behind: list[str]


def start_new_run(store: RunStore, settings: TrainSettings, label: str | None,
                  data_dir: Path | str | None) -> Started:
    """Create a run and start its worker; say which active runs it will queue behind (the queue
    policy: one run at a time on a CPU). ``StoreError`` when the store cannot be written."""
    behind = [s.id for s in store.summaries() if not s.reference and s.status in ACTIVE]
    run = store.create(settings, label=label)
    start_run(store, run.id, data_dir)
    return Started(run, behind)


def start_batchdep(store: RunStore, run_id: str, data_dir: Path | str | None = None) -> subprocess.Popen:
    """Measure a run's batch dependence in the background (``python -m cifar_app batchdep``); the
    result is cached with the run (output in its log.txt)."""
    run = store.get(run_id)
    args = ["batchdep", run_id, "--runs-dir", str(store.root)]
    if data_dir is not None:
        args += ["--data", str(data_dir)]
    return spawn_cli(args, run.log_path)


def can_resume(run: Run) -> bool:
    """A user run that stopped, failed or was interrupted: it continues from its last epoch
    checkpoint (or from the start when it had not finished an epoch)."""
    return not run.reference and run.state() in RESUMABLE


def start_download(data_dir: Path | str) -> None:
    """Download CIFAR-10 into ``data_dir`` in a background process (see ``download_status``)."""
    root = Path(data_dir)
    try:
        root.mkdir(parents=True, exist_ok=True)
        (root / ".download.log").unlink(missing_ok=True)
    except OSError as e:
        raise StoreError(f"cannot write to the data folder {root}: {e.strerror}") from None
    proc = spawn_cli(["download", "--data", str(root)], root / ".download.log")
    write_json_atomic(root / ".download.json", {"pid": proc.pid, "started": time.time()})


def download_status(data_dir: Path | str) -> dict | None:
    """None if no download was started here, else ``{"state": DownloadState,
    "message": last line of its output}``."""
    from cifar_app.core.data import dataset_status

    root = Path(data_dir)
    try:
        info = json.loads((root / ".download.json").read_text())
        if not isinstance(info, dict):
            return None
    except (OSError, ValueError):
        return None
    try:
        lines = [ln for ln in (root / ".download.log").read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        lines = []
    message = lines[-1].split("\r")[-1] if lines else ""
    if pid_alive(info.get("pid")):
        return {"state": DownloadState.RUNNING, "message": message}
    if dataset_status(root)["found"]:
        return {"state": DownloadState.DONE, "message": message}
    return {"state": DownloadState.FAILED, "message": message or "the download process ended without output"}
