"""Training as a job: the worker that runs one stored run, and launching it as its own process.

``execute_run`` is what runs inside the training process (the CLI's ``train`` calls it directly,
the dashboard starts ``python -m cifar_app worker RUN`` through ``start_run``). It writes progress to
the run store, so any number of readers (pages, tabs, the CLI) can follow it.

On a CPU-only machine, runs take turns: a run waits in state "queued" until no other run holds the
training lock (an ``flock`` on ``<runs root>/.train.lock``, released by the OS even if the holder is
killed), so two runs never halve each other's speed.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import asdict
from pathlib import Path

import torch

from .data import CifarData, load_cifar10
from .engine import BatchStats, EpochStats, model_record, select_device, train
from .runstore import Run, RunStore, pid_alive, write_json_atomic
from .settings import TrainSettings

HEARTBEAT_EVERY_S = 2.0


@contextlib.contextmanager
def training_slot(store: RunStore, run: Run, exclusive: bool) -> Iterator[None]:
    """Hold the store-wide training lock (when ``exclusive``), heartbeating while queued."""
    if not exclusive:
        yield
        return
    store.root.mkdir(parents=True, exist_ok=True)
    with open(store.root / ".train.lock", "a+") as lock:
        while True:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if run.stop_requested():
                    raise StopRequested from None
                run.heartbeat(state="queued", pid=os.getpid())
                time.sleep(1.0)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


class StopRequested(Exception):
    """The run was asked to stop before it started."""


def execute_run(
    store: RunStore,
    run_id: str,
    data: CifarData | Callable[[], CifarData] | None = None,
    resume: bool = False,
    progress: Callable[[BatchStats | EpochStats], None] | None = None,
) -> Run:
    """Train the stored run ``run_id`` in this process and record everything in the store.

    ``data`` is the dataset or a function that loads it (default: ``load_cifar10()``); it is loaded
    only once this run's turn has come. Errors are stored as state "failed" and re-raised.
    """
    run = store.get(run_id)
    settings = run.settings()
    run.clear_stop()
    run.heartbeat(state="queued", pid=os.getpid(), error=None)
    device = select_device(settings.device)
    try:
        with training_slot(store, run, exclusive=device.type == "cpu"):
            if callable(data):
                data = data()
            elif data is None:
                data = load_cifar10()
            _train_and_record(run, settings, data, resume, progress)
    except StopRequested:
        run.update_status(state="stopped", finished=time.time(), pid=None)
    except BaseException as e:  # noqa: BLE001 - record every failure, then re-raise it
        message = str(e) or type(e).__name__
        if isinstance(e, KeyboardInterrupt):
            run.update_status(state="stopped", finished=time.time(), pid=None)
        else:
            run.update_status(state="failed", error=message, finished=time.time(), pid=None,
                              traceback=traceback.format_exc(limit=8))
        raise
    return run


def _train_and_record(run: Run, settings: TrainSettings, data: CifarData, resume: bool,
                      progress: Callable[[BatchStats | EpochStats], None] | None) -> None:
    done_epochs = 0
    if resume and run.checkpoint_path.exists():
        ckpt = torch.load(run.checkpoint_path, map_location="cpu", weights_only=True)
        done_epochs = int(ckpt["epoch"])
    run.truncate_metrics_after(done_epochs)
    run.heartbeat(state="running", pid=os.getpid(), started=time.time(),
                  data_source=data.source, n_train=min(len(data.train_x), settings.train_limit or 10**9),
                  n_test=min(len(data.test_x), settings.test_limit or 10**9))
    last_beat = 0.0

    def on_batch(b: BatchStats) -> None:
        nonlocal last_beat
        run.append_metrics({"type": "batch", **asdict(b), "t": round(time.time(), 3)})
        if time.monotonic() - last_beat > HEARTBEAT_EVERY_S:
            run.heartbeat()
            last_beat = time.monotonic()
        if progress is not None:
            progress(b)

    def on_epoch(e: EpochStats) -> None:
        run.append_metrics({"type": "epoch", **asdict(e)})
        run.heartbeat(epoch=e.epoch)
        if progress is not None:
            progress(e)

    result = train(settings, data, on_batch=on_batch, on_epoch=on_epoch,
                   should_stop=run.stop_requested, checkpoint_path=run.checkpoint_path,
                   resume=resume)
    if result.stopped:
        run.update_status(state="stopped", finished=time.time(), pid=None)
        return
    torch.save(model_record(result, settings, data.classes), run.model_path.with_suffix(".tmp"))
    os.replace(run.model_path.with_suffix(".tmp"), run.model_path)
    limited = data.limit(settings.train_limit, settings.test_limit)
    run.save_predictions(result.test_probs, limited.test_y.numpy(), limited.test_fingerprint)
    run.update_status(state="completed", finished=time.time(), pid=None)


def start_run(store: RunStore, run_id: str, data_dir: Path | str | None = None,
              resume: bool = False) -> subprocess.Popen:
    """Start ``python -m cifar_app worker RUN`` as a detached process (own session, output to the
    run's log.txt). Closing the browser or restarting the dashboard does not stop it."""
    run = store.get(run_id)
    run.clear_stop()
    args = ["worker", run_id, "--runs-dir", str(store.root)]
    if data_dir is not None:
        args += ["--data", str(data_dir)]
    if resume:
        args.append("--resume")
    run.update_status(state="queued", heartbeat=time.time(), error=None)
    proc = _spawn_cli(args, run.log_path)
    run.update_status(pid=proc.pid)  # the worker writes the same pid once it is up
    return proc


def can_resume(run: Run) -> bool:
    """A user run that stopped, failed or was interrupted: it continues from its last epoch
    checkpoint (or from the start when it had not finished an epoch)."""
    return not run.reference and run.status().get("state") in ("stopped", "failed", "interrupted")


def _spawn_cli(args: list[str], log_path: Path) -> subprocess.Popen:
    """Run ``python -m cifar_app ARGS`` detached (own session), output appended to ``log_path``."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    package_parent = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_parent, env.get("PYTHONPATH")) if p)
    with open(log_path, "ab") as log:
        return subprocess.Popen([sys.executable, "-m", "cifar_app", *args], stdout=log,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True, env=env)


def start_download(data_dir: Path | str) -> None:
    """Download CIFAR-10 into ``data_dir`` in a background process (see ``download_status``)."""
    root = Path(data_dir)
    root.mkdir(parents=True, exist_ok=True)
    (root / ".download.log").unlink(missing_ok=True)
    proc = _spawn_cli(["download", "--data", str(root)], root / ".download.log")
    write_json_atomic(root / ".download.json", {"pid": proc.pid, "started": time.time()})


def download_status(data_dir: Path | str) -> dict | None:
    """None if no download was started here, else ``{"state": "running"|"done"|"failed",
    "message": last line of its output}``."""
    from .data import dataset_status

    root = Path(data_dir)
    try:
        info = json.loads((root / ".download.json").read_text())
    except (OSError, ValueError):
        return None
    try:
        lines = [ln for ln in (root / ".download.log").read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        lines = []
    message = lines[-1].split("\r")[-1] if lines else ""
    if pid_alive(info.get("pid")):
        return {"state": "running", "message": message}
    if dataset_status(root)["found"]:
        return {"state": "done", "message": message}
    return {"state": "failed", "message": message or "the download process ended without output"}
