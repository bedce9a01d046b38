"""The Ray backend for experiments: each grid point is one Ray task on an existing cluster.

Why tasks, not Ray Tune trials: a point is an independent training run whose record already lives
in our run store (settings, log, checkpoint, model, predictions). Tune would add its own trial
directories, result format and scheduler that we would have to map back; a task is the smallest
unit Ray has, and the driver keeps the run store the single source of truth.

No shared filesystem is assumed. The task trains in the worker's memory and streams its progress
through a ``ray.util.queue.Queue``: batch and epoch records, each epoch's checkpoint, and at the end
the model and test predictions. The driver (this process, next to the dashboard's run store) writes
every event into the local run as it arrives, so pages follow remote points live, exactly like local
ones. A worker loads CIFAR-10 itself when it has a copy (``$CIFAR_APP_DATA`` on the worker, or the
``data_dir`` given); otherwise it gets the arrays once from the driver through the object store.
Torch threads per point follow the CPUs Ray assigned to it.

Start a cluster with ``ray start --head`` on one machine and ``ray start --address=HEAD:6379`` on the
others; pass the address with ``--ray-address`` or ``RAY_ADDRESS``.
"""

from __future__ import annotations

import io
import os
import time
from collections.abc import Callable
from pathlib import Path

from .experiments import TERMINAL, ExperimentStore, create_point_run, existing_run
from .records import BatchStats, EpochStats
from .settings import TrainSettings

INSTALL_HINT = "the Ray backend needs Ray: pip install 'ray==2.60.0' (see requirements-dev.txt)"
CPUS_PER_POINT = 1


def ray_available() -> bool:
    try:
        import ray  # noqa: F401
    except ImportError:
        return False
    return True


def _tensor_bytes(obj: object) -> bytes:
    import torch

    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def _from_bytes(data: bytes) -> dict:
    import torch

    return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)


class _QueueCheckpoint:
    """The engine's checkpoint store inside a task: saves go to the driver through the queue."""

    def __init__(self, queue, index: int, start: bytes | None) -> None:
        self.queue, self.index, self.start = queue, index, start

    def load_checkpoint(self) -> dict | None:
        if self.start is None:
            return None
        ckpt = _from_bytes(self.start)
        ckpt["history"] = [EpochStats.from_dict(h) for h in ckpt["history"]]
        return ckpt

    def save_checkpoint(self, state: dict) -> None:
        self.queue.put((self.index, "checkpoint", _tensor_bytes(state)))


def train_point(index: int, settings: dict, queue, data_box: list, data_dir: str | None,
                checkpoint: bytes | None) -> dict:
    """Body of the Ray task for one point (see the module docstring). Returns the model record and
    test predictions as bytes/arrays; raises what training raises (recorded by the driver)."""
    import ray
    import torch

    from .data import DataError, load_cifar10
    from .engine import model_record, train

    cpus = ray.get_runtime_context().get_assigned_resources().get("CPU", 1)
    torch.set_num_threads(max(1, int(cpus)))
    s = TrainSettings.from_dict(settings)
    try:
        data = load_cifar10(data_dir or os.environ.get("CIFAR_APP_DATA"))
        source = "worker"
    except DataError:
        data = ray.get(data_box[0])  # the driver's copy, fetched once from the object store
        source = "driver"
    queue.put((index, "start", {"data_source": f"{data.source} (loaded by the {source})",
                                "node": ray.get_runtime_context().get_node_id()[:12],
                                "threads": torch.get_num_threads()}))

    def on_batch(b: BatchStats) -> None:
        b.t = round(time.time(), 3)
        queue.put((index, "batch", b.to_record()))

    def on_epoch(e: EpochStats) -> None:
        queue.put((index, "epoch", e.to_record()))

    result = train(s, data, on_batch=on_batch, on_epoch=on_epoch,
                   checkpoint=_QueueCheckpoint(queue, index, checkpoint), resume=checkpoint is not None)
    limited = data.limit(s.train_limit, s.test_limit)
    return {"model": _tensor_bytes(model_record(result, s, data.classes)), "probs": result.test_probs,
            "labels": limited.test_y.numpy(), "fingerprint": limited.test_fingerprint}


def run_experiment_on_ray(exps: ExperimentStore, exp_id: str, address: str | None = None,
                          data_dir: str | None = None, data=None,
                          on_point: Callable[[int, int, str], None] | None = None,
                          cpus_per_point: int = CPUS_PER_POINT, poll_s: float = 0.2) -> None:
    """Run the experiment's missing points as Ray tasks and relay their progress into the run store.

    ``address``: the cluster (default ``$RAY_ADDRESS``; an already initialised Ray is used as it
    is). ``data``: the driver's dataset (default: loaded from ``data_dir``) for workers without one.
    Stop (``exps.request_stop``) cancels the running tasks and the queued ones; a lost worker leaves
    its point interrupted, and resuming continues it from its last relayed checkpoint."""
    try:
        import ray
        from ray.util.queue import Empty, Queue
    except ImportError:
        raise RuntimeError(INSTALL_HINT) from None
    from .data import load_cifar10

    if not ray.is_initialized():
        address = address or os.environ.get("RAY_ADDRESS")
        if address:  # a cluster: ship this package to its workers (they need its requirements)
            ray.init(address=address, runtime_env={"py_modules": [str(Path(__file__).resolve().parent)]},
                     logging_level="ERROR", log_to_driver=False)
        else:  # no cluster given: a local Ray on this machine only
            ray.init(include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    exp = exps.get(exp_id)
    exps.clear_stop(exp_id)
    exps.mark_started(exp_id, os.getpid())
    queue = Queue()
    task = ray.remote(num_cpus=cpus_per_point, max_retries=0)(train_point)
    dataset = data if data is not None else load_cifar10(data_dir)
    data_ref = ray.put(dataset)
    pending: dict = {}  # object ref -> point index
    runs = {}
    try:
        for i, point in enumerate(exp.points):
            run = existing_run(exps, exp, i)
            if run is not None and run.state() in TERMINAL:
                continue
            if run is None:
                run = create_point_run(exps, exp, i, backend="ray")
            ckpt = run.load_checkpoint()
            done = int(ckpt["epoch"]) if ckpt else 0
            run.restore_log(done, ckpt["history"] if ckpt else [])
            run.clear_stop()
            run.update_status(state="queued", pid=os.getpid(), heartbeat=time.time(), error=None)
            start = None if ckpt is None else _tensor_bytes(
                {**ckpt, "history": [e.__dict__ for e in ckpt["history"]]})
            ref = task.remote(i, point.settings, queue, [data_ref], data_dir, start)
            pending[ref], runs[i] = i, run
        beat = 0.0
        while pending:
            _drain(queue, runs, Empty)
            if exps.stop_requested(exp_id):
                for ref, i in pending.items():
                    ray.cancel(ref, force=True)
                    runs[i].update_status(state="stopped", pid=None, finished=time.time())
                    runs[i].clear_stop()
                pending.clear()
                break
            if time.monotonic() - beat > 2:
                for i in pending.values():
                    runs[i].heartbeat()
                beat = time.monotonic()
            ready, _ = ray.wait(list(pending), num_returns=1, timeout=poll_s)
            for ref in ready:
                i = pending.pop(ref)
                _drain(queue, runs, Empty)
                _finish(ray, ref, runs[i])
                if on_point is not None:
                    on_point(i, len(exp.points), runs[i].state())
    finally:
        exp = exps.get(exp_id)
        exp.driver_pid, exp.finished = None, time.time()
        exps.save(exp)
        queue.shutdown()


def _drain(queue, runs: dict, empty_error: type) -> None:
    """Write every queued event into its local run."""
    while True:
        try:
            i, kind, payload = queue.get_nowait()
        except empty_error:
            return
        run = runs[i]
        if kind == "start":
            run.heartbeat(state="running", started=time.time(), **payload)
        elif kind == "batch":
            run.append_metrics(BatchStats.from_dict(payload))
        elif kind == "epoch":
            e = EpochStats.from_dict(payload)
            run.append_metrics(e)
            run.heartbeat(epoch=e.epoch)
        elif kind == "checkpoint":
            run.save_checkpoint(_from_bytes(payload))


def _finish(ray, ref, run) -> None:
    """Store a finished task's model and predictions, or record why it did not finish."""
    from ray.exceptions import RayTaskError, TaskCancelledError

    try:
        out = ray.get(ref)
    except TaskCancelledError:
        run.update_status(state="stopped", pid=None, finished=time.time())
        return
    except RayTaskError as e:
        cause = e.cause if getattr(e, "cause", None) is not None else e
        text = str(cause).strip()
        run.update_status(state="failed", pid=None, finished=time.time(),
                          error=text.splitlines()[-1] if text else type(cause).__name__)
        return
    except Exception as e:  # noqa: BLE001 - a worker or node lost: resumable from the last checkpoint
        run.update_status(state="interrupted", pid=None, finished=time.time(),
                          error=f"the Ray worker was lost ({type(e).__name__}); resume continues it")
        return
    run.save_model(_from_bytes(out["model"]))
    run.save_predictions(out["probs"], out["labels"], out["fingerprint"])
    run.update_status(state="completed", pid=None, finished=time.time())
