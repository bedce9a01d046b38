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

Start a cluster with ``ray start --head --port P`` on one machine and ``ray start --address HEAD:P``
on the others; pass the address with ``--ray-address`` or ``RAY_ADDRESS``. ``connect`` meets the
cluster as a user's shell would: when Ray's access token is on this machine (``$RAY_AUTH_TOKEN``,
``$RAY_AUTH_TOKEN_PATH`` or the ``~/.ray/auth_token`` that ``ray start --head`` uses) it turns on
Ray's token mode, which Ray 2.60 never does by itself for an explicit address; an unreachable head
or a missing or refused token is one ``RayConnectError`` line with the fix, checked in seconds
instead of Ray's 20-40 s of retries and log lines.
"""

from __future__ import annotations

import contextlib
import os
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path

from cifar_app.core.settings import TrainSettings
from cifar_app.lab.experiments import ExperimentStore, create_point_run, existing_run
from cifar_app.store.recorder import (
    Recorder,
    Relay,
    TeacherUnavailable,
    checkpoint_to_bytes,
    data_info,
    from_bytes,
    outcome,
    run_training,
    teacher_records,
    to_bytes,
)
from cifar_app.store.states import TERMINAL

INSTALL_HINT = "the Ray backend needs Ray: pip install 'ray==2.60.0' (see requirements-dev.txt)"
AUTH_MODE_ENV, TOKEN_ENV, TOKEN_PATH_ENV = "RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH"
TOKEN_HELP = ("copy the head's ~/.ray/auth_token to ~/.ray/auth_token on this machine (or set "
              "RAY_AUTH_TOKEN to its content, or RAY_AUTH_TOKEN_PATH to a copy)")


class RayConnectError(RuntimeError):
    """The Ray cluster cannot be used from here; the message names the cause and the fix."""


def ray_available() -> bool:
    try:
        import ray  # noqa: F401
    except ImportError:
        return False
    return True


def token_source(env: dict | None = None) -> str | None:
    """Where Ray will find its access token on this machine, in Ray's own order of precedence
    (``$RAY_AUTH_TOKEN``, ``$RAY_AUTH_TOKEN_PATH``, ``~/.ray/auth_token``); None when nowhere."""
    env = os.environ if env is None else env
    if env.get(TOKEN_ENV, "").strip():
        return f"${TOKEN_ENV}"
    if env.get(TOKEN_PATH_ENV):
        return env[TOKEN_PATH_ENV]
    default = Path.home() / ".ray" / "auth_token"
    return str(default) if default.is_file() else None


def _host_port(address: str) -> tuple[str, int]:
    if "://" in address:
        raise RayConnectError(f"{address!r}: give the head's GCS address as HOST:PORT (the port of "
                              "`ray start --head --port PORT`), not a URL")
    host, sep, port = address.strip().rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise RayConnectError(f"{address!r} is not a Ray address: write HOST:PORT, as `ray start "
                              "--head --port PORT` prints it")
    return host.strip("[]"), int(port)


def check_cluster(address: str, timeout_s: float = 5.0) -> None:
    """Fail fast, with the fix, when the head at ``address`` cannot be reached or will not take
    this machine's token. Turns on Ray's token mode when a token is here (a cluster without
    authentication accepts it too)."""
    host, port = _host_port(address)
    try:
        socket.create_connection((host, port), timeout=timeout_s).close()
    except (OSError, UnicodeError) as e:  # UnicodeError: a host name no resolver takes
        why = getattr(e, "strerror", None) or type(e).__name__
        raise RayConnectError(f"no Ray head answers at {address} ({why}): start one there with `ray "
                              f"start --head --port {port}`, or check the address and that the port "
                              "is open to this machine") from None
    source = token_source()
    from ray._raylet import Config, GcsClient  # the client ray.init itself uses: one request
    from ray.exceptions import AuthenticationError

    if source is not None and AUTH_MODE_ENV not in os.environ:
        os.environ[AUTH_MODE_ENV] = "token"
        Config.initialize("")  # Ray's native side reads the mode once; as ray.init does for a local Ray
    try:
        with _native_logs_hidden():  # Ray's C++ client logs each failed request on stderr
            GcsClient(address=f"{host}:{port}").internal_kv_get(b"cifar-app-probe", None)
    except AuthenticationError:
        if os.environ.get(AUTH_MODE_ENV, "").lower() != "token":
            have = ("RAY_AUTH_MODE=disabled is set here" if AUTH_MODE_ENV in os.environ
                    else "this machine has none")
            raise RayConnectError(f"the Ray cluster at {address} asks for an access token and {have}: "
                                  f"{TOKEN_HELP}") from None
        raise RayConnectError(f"the Ray cluster at {address} refused the access token from {source}: "
                              f"it is not the head's; {TOKEN_HELP}") from None
    except Exception as e:  # noqa: BLE001 - anything else: the GCS is not a usable Ray head
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
        raise RayConnectError(f"the Ray head at {address} did not answer as a Ray {_ray_version()} "
                              f"cluster ({first}); check the address and that both sides run the "
                              "same Ray version") from None


@contextlib.contextmanager
def _native_logs_hidden():
    """Send what native code writes to stderr (file descriptor 2) nowhere while the block runs."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _ray_version() -> str:
    import ray

    return ray.__version__


def connect(address: str | None = None) -> None:
    """Join the cluster at ``address`` (default ``$RAY_ADDRESS``), after ``check_cluster``, shipping
    this package to its workers; without an address, start a Ray of this machine only. A Ray
    already initialised in this process is used as it is."""
    import ray

    if ray.is_initialized():
        return
    address = address or os.environ.get("RAY_ADDRESS")
    if not address:
        ray.init(address="local", include_dashboard=False, logging_level="ERROR", log_to_driver=False)
        return
    check_cluster(address)
    try:
        ray.init(address=address, runtime_env={"py_modules": [str(Path(__file__).resolve().parents[1])]},
                 logging_level="ERROR", log_to_driver=False)
    except ConnectionError as e:
        raise RayConnectError(f"{e}; check that `ray start --head` is still running there") from None


def check_fits(cpus: int, gpus: float, nodes: list[dict]) -> None:
    """Refuse points that no live node of the cluster (``ray.nodes()``) can run: Ray would keep
    such tasks pending forever."""
    alive = [n.get("Resources", {}) for n in nodes if n.get("Alive")]
    most_gpus = max((r.get("GPU", 0) for r in alive), default=0)
    most_cpus = max((r.get("CPU", 0) for r in alive), default=0)
    if gpus > most_gpus:
        raise RayConnectError(f"the sweep asks for {gpus:g} GPU per point; the Ray cluster has "
                              f"{most_gpus:g} on its best node: lower --gpus-per-point, or 0 for CPUs")
    if cpus > most_cpus:
        raise RayConnectError(f"the sweep asks for {cpus} CPUs per point; the largest Ray node has "
                              f"{most_cpus:g}: lower --cpus-per-point")


def train_point(index: int, settings: dict, queue, data_box: list, data_dir: str | None,
                checkpoint: bytes | None, teachers: list[bytes] = ()) -> dict:
    """Body of the Ray task for one point: trains with a ``Relay`` that sends every event through
    ``queue`` to the driver's ``Recorder``. Returns the outcome (the model record as bytes);
    raises what training raises (recorded by the driver). ``teachers``: the model records of the
    point's teacher runs (distillation), as bytes, read by the driver from its run store."""
    import ray
    import torch

    from cifar_app.core.data import DataError, load_cifar10

    assigned = ray.get_runtime_context().get_assigned_resources()
    torch.set_num_threads(max(1, int(assigned.get("CPU", 1))))
    gpus = [str(g) for g in ray.get_gpu_ids()]
    if not gpus:  # no GPU was given to this point: it trains on its CPU threads, never on a GPU
        os.environ["CUDA_VISIBLE_DEVICES"] = ""
    s = TrainSettings.from_record(settings)
    try:
        data = load_cifar10(data_dir or os.environ.get("CIFAR_APP_DATA"))
        source = "worker"
    except DataError:
        data = ray.get(data_box[0])  # the driver's copy, fetched once from the object store
        source = "driver"
    queue.put((index, "started", {**data_info(data, s),
                                  "data_source": f"{data.source} (loaded by the {source})",
                                  "node": ray.get_runtime_context().get_node_id()[:12],
                                  "gpus": gpus,
                                  "gpu_share": assigned.get("GPU", 0),
                                  "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES")}))
    relay = Relay(lambda kind, payload: queue.put((index, kind, payload)), checkpoint)
    result = run_training(relay, s, data, resume=checkpoint is not None,
                          teachers=[from_bytes(t) for t in teachers])
    done = outcome(result, s, data)
    return {**done, "model": to_bytes(done["model"])}


def run_experiment_on_ray(exps: ExperimentStore, exp_id: str, address: str | None = None,
                          data_dir: str | None = None, data=None,
                          on_point: Callable[[int, int, str], None] | None = None,
                          poll_s: float = 0.2) -> None:
    """Run the experiment's missing points as Ray tasks and record their progress in the run store.

    ``address``: the cluster (``connect``). ``data``: the driver's dataset (default: loaded from
    ``data_dir``) for workers without one. Stop (``exps.request_stop``) cancels the running tasks
    and the queued ones; a lost worker leaves its point interrupted, and resuming continues it from
    its last relayed checkpoint. Each point asks for the experiment's ``cpus_per_point`` CPUs and
    ``gpus_per_point`` GPUs: Ray runs as many at once as the cluster's resources allow (with 0.5,
    two points share each GPU), and a point with a GPU trains on it (device auto)."""
    try:
        import ray
        from ray.util.queue import Empty, Queue
    except ImportError:
        raise RuntimeError(INSTALL_HINT) from None
    from cifar_app.core.data import load_cifar10

    try:
        connect(address)
    except RayConnectError as e:  # the Experiments page shows it too
        exps.mark_finished(exp_id, error=str(e))
        raise
    exp = exps.get(exp_id)
    try:
        check_fits(exp.cpus_per_point, exp.gpus_per_point, ray.nodes())
    except RayConnectError as e:  # tasks that fit no node would wait forever
        exps.mark_finished(exp_id, error=str(e))
        raise
    exps.clear_stop(exp_id)
    exps.mark_started(exp_id, os.getpid())
    queue = Queue()
    task = ray.remote(num_cpus=exp.cpus_per_point, num_gpus=exp.gpus_per_point, max_retries=0)(train_point)
    dataset = data if data is not None else load_cifar10(data_dir)
    data_ref = ray.put(dataset)
    pending: dict = {}  # object ref -> point index
    recorders: dict[int, Recorder] = {}
    teachers: dict[str, list[bytes]] = {}  # settings.teacher -> its runs' model records
    try:
        for i, point in enumerate(exp.points):
            run = existing_run(exps, exp, i)
            if run is not None and run.state() in TERMINAL:
                continue
            if run is None:
                run = create_point_run(exps, exp, i, backend="ray")
            rec = Recorder(run, pid=os.getpid())  # this driver owns the run while its task runs
            ckpt = rec.restore(resume=run.has_checkpoint())
            run.clear_stop()
            rec.queued()
            start = None if ckpt is None else checkpoint_to_bytes(ckpt)
            settings = TrainSettings.from_record(point.settings)
            try:
                if settings.teacher not in teachers:  # read each teacher once, whatever shares it
                    teachers[settings.teacher] = [to_bytes(r) for r in teacher_records(exps.runs, settings)]
            except TeacherUnavailable as e:  # this point cannot train; the others can
                rec.failed(str(e), None)
                continue
            ref = task.remote(i, point.settings, queue, [data_ref], data_dir, start,
                              teachers[settings.teacher])
            pending[ref], recorders[i] = i, rec
        beat = 0.0
        while pending:
            _drain(queue, recorders, Empty)
            if exps.stop_requested(exp_id):
                for ref, i in pending.items():
                    ray.cancel(ref, force=True)
                    recorders[i].stopped()
                pending.clear()
                break
            if time.monotonic() - beat > 2:
                for i in pending.values():
                    recorders[i].heartbeat()
                beat = time.monotonic()
            ready, _ = ray.wait(list(pending), num_returns=1, timeout=poll_s)
            for ref in ready:
                i = pending.pop(ref)
                _drain(queue, recorders, Empty)
                _finish(ray, ref, recorders[i])
                if on_point is not None:
                    on_point(i, len(exp.points), recorders[i].run.state())
    finally:
        exps.mark_finished(exp_id)
        queue.shutdown()


def _drain(queue, recorders: dict[int, Recorder], empty_error: type) -> None:
    """Record every event the tasks have sent so far."""
    while True:
        try:
            i, kind, payload = queue.get_nowait()
        except empty_error:
            return
        if kind == "started":
            recorders[i].started(**payload)
        else:
            recorders[i].apply(kind, payload)


def _finish(ray, ref, rec: Recorder) -> None:
    """Store a finished task's outcome, or record why it did not finish."""
    from ray.exceptions import RayTaskError, TaskCancelledError

    try:
        out = ray.get(ref)
    except TaskCancelledError:
        rec.stopped()
        return
    except RayTaskError as e:
        cause = e.cause if getattr(e, "cause", None) is not None else e
        text = str(cause).strip()
        rec.failed(text.splitlines()[-1] if text else type(cause).__name__)
        return
    except Exception as e:  # noqa: BLE001 - a worker or node lost: resumable from the last checkpoint
        rec.interrupted(f"the Ray worker was lost ({type(e).__name__}); resume continues it")
        return
    rec.finish({**out, "model": from_bytes(out["model"])})
