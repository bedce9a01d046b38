"""Experiments: a grid of ordinary runs that tests one claim about BN, GN and LN.

An experiment has a name, base settings (any ``TrainSettings`` fields), a grid (fields, each with a
list of values) and optional derived rules (``lr_scales_with_batch``: max_lr = base max_lr x
batch_size / 128, the linear scaling rule of Goyal et al. used by the GroupNorm paper). Each grid
point becomes a normal run in the run store, tagged ``{"experiment": id, "point": i}``, so every
page and CLI verb works on sweep points unchanged.

    <runs root>/.experiments/<experiment id>/
        experiment.json    name, base, grid, rules, points (settings + run id), driver pid/heartbeat
        stop               present = stop requested: the running point stops, the rest are cancelled

The record is written atomically, like a run's files. A point's state is its run's state
(``PointState.PENDING`` before its run exists); a failed or diverged point is a result and the sweep goes on.
Resuming reruns only what is missing: completed and failed points are kept, a stopped or
interrupted point continues from its checkpoint.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from cifar_app.core.data import CifarData, load_cifar10
from cifar_app.core.settings import SettingsError, TrainSettings, shown
from cifar_app.lab.presets import CONFIRM_ABOVE, PRESETS, check_resources, expand
from cifar_app.store.fileio import StoreError, file_lock, pid_alive, write_json_atomic
from cifar_app.store.results import (
    ENV_FIELDS,
    EPOCH_FIELDS,
    ExperimentResults,
    Point,
    PointResult,
    PointStatus,
)
from cifar_app.store.run import RunDamaged, RunNotFound
from cifar_app.store.runstore import RunStore
from cifar_app.store.states import ACTIVE, POINT_DONE, TERMINAL, ExperimentState, PointState, RunState

EXPERIMENTS_DIR = ".experiments"
# Two 1-thread points at once beat one 2-thread point on a 2-core CPU at every batch size measured
# (1.86x at 2 down to 1.13x at 128); beyond 128 it was not measured, so such points run alone
# (measured: benchmarks/results/sweep_parallelism.json, README "Experiments").
PARALLEL_MAX_BATCH = 128
SHARED_WORKERS = 2  # 1-thread workers a local sweep runs at once (this machine: 2 cores)
_ID_RE = re.compile(r"^exp-[a-z0-9-]{1,60}$")
BACKENDS = {"local": "this machine (the run queue)", "ray": "a Ray cluster (one task per point)"}


class ExperimentNotFound(KeyError):
    def __str__(self) -> str:
        return f"no experiment {self.args[0]!r}"


@dataclass
class Experiment:
    """An experiment record (see the module docstring)."""

    id: str
    name: str
    base: dict
    grid: dict
    rules: list[str] = field(default_factory=list)
    preset: str | None = None
    backend: str = "local"
    ray_address: str | None = None  # the cluster, for the ray backend (None: $RAY_ADDRESS or local)
    created: float = 0.0
    points: list[Point] = field(default_factory=list)
    driver_pid: int | None = None
    heartbeat: float = 0.0
    finished: float | None = None
    error: str | None = None        # why the driver stopped early (e.g. the Ray cluster refused it)
    cpus_per_point: int = 1         # ray backend: CPUs each point asks for (its torch threads)
    gpus_per_point: float = 0.0     # ray backend: GPUs each point asks for (0.5: two points a GPU)

    @classmethod
    def from_dict(cls, d: dict) -> Experiment:
        d = dict(d)
        d["points"] = [Point(**p) for p in d.get("points", [])]
        return cls(**d)


class ExperimentStore:
    """Experiment records beside the runs of a ``RunStore``."""

    def __init__(self, store: RunStore) -> None:
        self.runs = store
        self.root = store.root / EXPERIMENTS_DIR

    def _path(self, exp_id: str) -> Path:
        if not isinstance(exp_id, str) or not _ID_RE.match(exp_id):
            raise ExperimentNotFound(exp_id)
        return self.root / exp_id

    def create(self, name: str, base: dict, grid: dict, rules: list[str] | tuple[str, ...] = (),
               preset: str | None = None, backend: str = "local", confirm_large: bool = False,
               ray_address: str | None = None, cpus_per_point: int = 1,
               gpus_per_point: float = 0.0) -> Experiment:
        """Validate and expand the grid, then store the experiment (no run starts here). A grid of
        more than ``CONFIRM_ABOVE`` points needs ``confirm_large``. ``cpus_per_point`` and
        ``gpus_per_point`` (``check_resources``) are what each point asks a Ray cluster for."""
        points = expand(base, grid, rules)
        check_resources(cpus_per_point, gpus_per_point, backend)
        if len(points) > CONFIRM_ABOVE and not confirm_large:
            raise SettingsError("grid", f"{len(points)} points is more than {CONFIRM_ABOVE}; confirm "
                                "to run them all (CLI: --yes)")
        if backend not in BACKENDS:
            raise SettingsError("backend", f"must be one of {', '.join(BACKENDS)}, got {shown(backend)}")
        self.runs.ensure_root()
        slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:30] or "sweep"
        exp = Experiment(id=f"exp-{time.strftime('%Y%m%d-%H%M%S')}-{slug}-{secrets.token_hex(2)}",
                         name=name.strip()[:80] or slug, base=base, grid=grid, rules=list(rules),
                         preset=preset, backend=backend, ray_address=ray_address, created=time.time(),
                         points=[Point(p.to_dict()) for p in points], cpus_per_point=cpus_per_point,
                         gpus_per_point=float(gpus_per_point))
        try:
            self._path(exp.id).mkdir(parents=True)
        except OSError as e:
            raise StoreError(f"cannot write {self.root}: {e.strerror}") from None
        self.save(exp)
        return exp

    def save(self, exp: Experiment) -> None:
        write_json_atomic(self._path(exp.id) / "experiment.json", asdict(exp))

    def update(self, exp_id: str, change: Callable[[Experiment], None]) -> Experiment:
        """Read the record, ``change(exp)`` it and write it back, under the experiment's lock: the
        page starting a sweep and the sweep's driver never undo each other's fields."""
        with file_lock(self._path(exp_id) / ".lock"):
            exp = self.get(exp_id)
            change(exp)
            self.save(exp)
        return exp

    def get(self, exp_id: str) -> Experiment:
        path = self._path(exp_id) / "experiment.json"
        try:
            return Experiment.from_dict(json.loads(path.read_text(encoding="utf-8")))
        except FileNotFoundError:
            raise ExperimentNotFound(exp_id) from None
        except (OSError, ValueError, TypeError, AttributeError) as e:
            raise RunDamaged(exp_id, "experiment.json", f"unreadable ({e})") from None

    def list(self) -> list[Experiment]:
        """Experiments newest first (unreadable records are skipped)."""
        if not self.root.is_dir():
            return []
        out = []
        for p in self.root.iterdir():
            try:
                out.append(self.get(p.name))
            except (ExperimentNotFound, RunDamaged):
                continue
        return sorted(out, key=lambda e: (e.created, e.id), reverse=True)  # ids share a second

    # -------------------------------------------------------------- stop
    def request_stop(self, exp_id: str) -> None:
        """Stop the running point and cancel the ones not started."""
        exp = self.get(exp_id)
        try:
            (self._path(exp_id) / "stop").write_text(f"{time.time()}\n")
        except OSError as e:
            raise StoreError(f"cannot write {self._path(exp_id)}: {e.strerror}") from None
        for p in self.point_statuses(exp):
            if p.state in ACTIVE and p.run_id:
                self.runs.get(p.run_id).request_stop()

    def log_path(self, exp_id: str) -> Path:
        """Output of the experiment's driver process."""
        return self._path(exp_id) / "log.txt"

    def mark_started(self, exp_id: str, pid: int) -> None:
        """``pid`` drives the sweep now (a fresh attempt: no error)."""
        def change(exp: Experiment) -> None:
            exp.driver_pid, exp.heartbeat, exp.finished, exp.error = pid, time.time(), None, None

        self.update(exp_id, change)

    def mark_finished(self, exp_id: str, error: str | None = None) -> None:
        """The driver is done (``error``: why it gave up early)."""
        def change(exp: Experiment) -> None:
            exp.driver_pid, exp.finished, exp.error = None, time.time(), error

        self.update(exp_id, change)

    def stop_requested(self, exp_id: str) -> bool:
        return (self._path(exp_id) / "stop").exists()

    def clear_stop(self, exp_id: str) -> None:
        (self._path(exp_id) / "stop").unlink(missing_ok=True)

    # -------------------------------------------------------------- status
    def point_statuses(self, exp: Experiment) -> list[PointStatus]:
        out = []
        for i, p in enumerate(exp.points):
            state, best, final, seconds, error = PointState.PENDING, None, None, 0.0, None
            if p.run_id:
                try:
                    s = self.runs.summary(p.run_id)  # through the run index
                    state, best, final, seconds, error = (s.status, s.best_test_acc, s.final_test_acc,
                                                          s.seconds, s.error)
                except RunNotFound:
                    state, error = PointState.DELETED, "its run was deleted"
            out.append(PointStatus(i, p.describe(exp.grid), p.settings, p.run_id, state, best, final,
                                   seconds, error))
        return out

    def results(self, exp: Experiment) -> ExperimentResults:
        """The experiment's results with each completed point's epoch records and landscape
        records (a damaged run counts as not completed); a failed (diverged) point keeps the epochs
        it finished before it failed, and both record their arithmetic (``env``: a divergence can
        depend on it)."""
        out = []
        for p in self.point_statuses(exp):
            epochs = landscape = env = None
            state = p.state
            if p.state in (RunState.COMPLETED, RunState.FAILED):
                try:
                    run = self.runs.get(p.run_id)
                    epochs = [{k: e.to_record()[k] for k in EPOCH_FIELDS} for e in run.metrics().epochs]
                    if p.state == RunState.COMPLETED:
                        landscape = list(run.landscape()) or None
                    status = run.raw_status()
                    env = {k: status[k] for k in ENV_FIELDS if k in status} or None
                except (RunNotFound, RunDamaged):
                    state = RunState.DAMAGED if p.state == RunState.COMPLETED else state
            out.append(PointResult(p.settings, str(state), p.final_test_acc, p.best_test_acc, p.seconds,
                                   p.run_id, epochs, landscape, env))
        return ExperimentResults(exp.id, exp.preset, exp.grid, out, created=exp.created)

    def state(self, exp: Experiment, points: list[PointStatus] | None = None) -> ExperimentState:
        """The sweep's state. ``points``: its ``point_statuses``, when the caller has them already."""
        points = self.point_statuses(exp) if points is None else points
        if exp.driver_pid is not None and pid_alive(exp.driver_pid):
            return ExperimentState.RUNNING
        if all(p.state in POINT_DONE for p in points):
            return ExperimentState.COMPLETED
        if self.stop_requested(exp.id):
            return ExperimentState.STOPPED
        if any(p.run_id for p in points):
            return ExperimentState.INTERRUPTED
        return ExperimentState.PENDING

    def counts(self, exp: Experiment) -> dict[str, int]:
        counts: dict[str, int] = {}
        for p in self.point_statuses(exp):
            counts[p.state] = counts.get(p.state, 0) + 1
        return counts


# ---------------------------------------------------------------------------- the local backend


def run_experiment(exps: ExperimentStore, exp_id: str, data=None, data_dir: str | Path | None = None,
                   on_point: Callable[[int, int, str], None] | None = None,
                   parallel: bool = True) -> Experiment:
    """Run every missing point of the experiment here, through the run queue (the local backend).

    ``data`` as for ``jobs.execute_run``; ``on_point(i, n, state)`` after each point. Completed and
    failed points are kept; stopped/interrupted points resume from their checkpoint. With
    ``parallel`` and a ``data_dir`` the workers can load, consecutive CPU points whose batch sizes
    are at most ``PARALLEL_MAX_BATCH`` train ``SHARED_WORKERS`` at a time, in 1-thread processes
    (measured faster than one 2-thread run there: benchmarks/sweep_parallelism.py); when one ends
    the next starts, so a fast point does not wait for a slow one. Others run one at a time.
    """
    from cifar_app.store.jobs import execute_run

    exps.clear_stop(exp_id)
    exps.mark_started(exp_id, os.getpid())  # reads and rewrites the record: read it after
    exp = exps.get(exp_id)
    store = exps.runs
    loaded = {}

    def data_once(progress=None) -> CifarData:  # CIFAR-10 is loaded once for all points
        if "data" not in loaded:
            if isinstance(data, CifarData):
                loaded["data"] = data
            elif data is not None:
                loaded["data"] = data(progress=progress)
            else:
                loaded["data"] = load_cifar10(data_dir, progress=progress)
        return loaded["data"]

    def todo(i: int) -> bool:
        run = existing_run(exps, exp, i)
        return run is None or run.state() not in TERMINAL

    def prepare(i: int):
        run = existing_run(exps, exp, i)
        if run is None:
            return create_point_run(exps, exp, i)
        run.clear_stop()
        return run

    def report(i: int, run) -> None:
        if on_point is not None:
            on_point(i, len(exp.points), run.state())

    try:
        i = 0
        while i < len(exp.points):
            if exps.stop_requested(exp_id):
                break
            if not todo(i):
                i += 1
                continue
            # the todo points from i on that may share the CPU, up to the first that may not
            rest = [k for k in range(i, len(exp.points)) if todo(k)]
            shared = list(itertools.takewhile(lambda k: _shares_cpu(exp, k), rest))
            if parallel and data_dir is not None and len(shared) >= 2 and _on_cpu():
                _run_shared(exps, exp_id, shared, prepare, report, data_dir)
                i = shared[-1] + 1
                continue
            run = prepare(i)
            try:
                execute_run(store, run.id, data=data_once, resume=run.has_checkpoint())
            except (StoreError, KeyboardInterrupt):
                raise
            except Exception:  # noqa: BLE001 - a failed or diverged point is a result, recorded in its run
                pass
            report(i, run)
            i += 1
    finally:
        exps.mark_finished(exp_id)
    return exps.get(exp_id)


def existing_run(exps: ExperimentStore, exp: Experiment, i: int):
    """The run of point ``i``, or None before it was created (or after it was deleted)."""
    if not exp.points[i].run_id:
        return None
    try:
        return exps.runs.get(exp.points[i].run_id)
    except RunNotFound:
        return None


def create_point_run(exps: ExperimentStore, exp: Experiment, i: int, **tags: object):
    """Create the tagged run of point ``i`` and record its id in the experiment (and in ``exp``)."""
    point = exp.points[i]
    run = exps.runs.create(TrainSettings.from_record(point.settings),
                           label=f"{exp.name}: {point.describe(exp.grid)}",
                           tags={"experiment": exp.id, "point": i, **tags})
    point.run_id = run.id

    def change(stored: Experiment) -> None:
        stored.points[i].run_id = run.id

    exps.update(exp.id, change)
    return run


def _shares_cpu(exp: Experiment, i: int) -> bool:
    """Whether point ``i`` may train in a 1-thread worker beside others (a CPU point, small batch)."""
    s = TrainSettings.from_record(exp.points[i].settings)
    return s.batch_size <= PARALLEL_MAX_BATCH and s.device in ("cpu", "auto")


def _on_cpu() -> bool:
    from cifar_app.core.engine import select_device

    return select_device("auto").type == "cpu"


def _run_shared(exps: ExperimentStore, exp_id: str, points: list[int], prepare: Callable,
                report: Callable, data_dir: str | Path) -> None:
    """Train ``points`` in 1-thread worker processes, ``SHARED_WORKERS`` at a time, starting the
    next as soon as one ends, while this process holds the training lock for all of them. A stop
    request stops the active ones and starts no more."""
    from cifar_app.store.jobs import start_run, training_slot

    queue = list(points)
    first = [(k, prepare(k)) for k in queue[:SHARED_WORKERS]]
    del queue[:SHARED_WORKERS]
    for _, run in first:
        run.update_status(state=RunState.QUEUED, pid=os.getpid(), heartbeat=time.time(), error=None)
    active: dict[int, tuple] = {}

    def launch(k: int, run) -> None:
        active[k] = (run, start_run(exps.runs, run.id, data_dir, resume=run.has_checkpoint(), threads=1,
                                    slot_held=True))

    with training_slot(exps.runs, [run for _, run in first], exclusive=True):
        for k, run in first:
            launch(k, run)
        while active:
            stopping = exps.stop_requested(exp_id)
            for k, (run, proc) in list(active.items()):
                if proc.poll() is None:
                    if stopping and run.state() in ACTIVE:
                        run.request_stop()
                    continue
                del active[k]
                report(k, run)
                if queue and not stopping:
                    nxt = queue.pop(0)
                    launch(nxt, prepare(nxt))
            time.sleep(0.3)


# ---------------------------------------------------------------------------- results


@dataclass(frozen=True)
class GroupStats:
    """Final test accuracy of the completed points of one group (e.g. one norm): mean, sample
    standard deviation (0 for one point) and count; accuracies as fractions 0..1."""

    group: str
    mean: float
    std: float
    n: int


def group_stats(points: list[PointStatus], by: str = "norm") -> list[GroupStats]:
    """Mean ± std of the final test accuracy per value of ``by``, completed points only."""
    import statistics

    groups: dict[str, list[float]] = {}
    for p in points:
        if p.state == RunState.COMPLETED and p.final_test_acc is not None:
            groups.setdefault(str(p.settings[by]), []).append(p.final_test_acc)
    return [GroupStats(g, statistics.fmean(v), statistics.stdev(v) if len(v) > 1 else 0.0, len(v))
            for g, v in groups.items()]


def noise_verdict(stats: list[GroupStats]) -> list[str]:
    """For each pair of groups, whether their mean difference exceeds the seed noise: more than
    twice the standard error of the difference (sqrt(s1²/n1 + s2²/n2), roughly a 95% interval)."""
    lines = []
    for i, a in enumerate(stats):
        for b in stats[i + 1:]:
            if a.n < 2 or b.n < 2:
                lines.append(f"{a.group} vs {b.group}: needs at least 2 seeds each")
                continue
            diff = a.mean - b.mean
            se = (a.std ** 2 / a.n + b.std ** 2 / b.n) ** 0.5
            larger = abs(diff) > 2 * se
            lines.append(f"{a.group} − {b.group} = {100 * diff:+.2f} points, seed noise (2 SE) "
                         f"{200 * se:.2f}: {'larger than the noise' if larger else 'within the noise'}")
    return lines


def estimate_seconds(settings: list[TrainSettings], speeds: dict[int, float], n_train: int = 50_000,
                     n_test: int = 10_000, test_speed: float = 8_000.0) -> float | None:
    """Estimated seconds for points not yet run: training images / measured images/s at that batch
    size (the nearest measured one, scaled by the batch-size ratio below it), plus the test passes.
    ``speeds``: {batch_size: images/s} measured on this machine; None when nothing was measured."""
    if not speeds:
        return None
    total = 0.0
    for s in settings:
        near = min(speeds, key=lambda b: abs(b - s.batch_size))
        speed = speeds[near] * min(1.0, s.batch_size / near) ** 0.5  # small batches are slower
        train_images = s.epochs * min(n_train, s.train_limit or n_train)
        total += train_images / speed + s.epochs * min(n_test, s.test_limit or n_test) / test_speed
    return total


SPEED_RUNS = 50


def measured_speeds(store: RunStore) -> dict[int, float]:
    """{batch_size: median training images/s} over this store's newest ``SPEED_RUNS`` runs with a
    finished epoch (from the run index: only those runs' logs are read)."""
    import statistics

    seen: dict[int, list[float]] = {}
    recent = [s for s in store.summaries() if not s.reference and not s.damaged and s.epoch > 0]
    for summary in recent[:SPEED_RUNS]:
        try:
            run = store.get(summary.id)
            s, epochs = run.settings(), run.metrics().epochs
        except (RunDamaged, RunNotFound):
            continue
        if epochs:
            seen.setdefault(s.batch_size, []).extend(e.images_per_s for e in epochs)
    return {b: statistics.median(v) for b, v in seen.items()}


def plot_axis(exp: Experiment) -> tuple[str, bool]:
    """The setting on the x axis of the experiment's plot and whether it is log-scaled."""
    if exp.preset in PRESETS:
        x = PRESETS[exp.preset].x
    else:
        x = next((k for k in exp.grid if k != "norm"), "norm")
    return x, x in ("batch_size", "max_lr", "weight_decay", "train_limit")


def points_table_rows(points: list[PointStatus]) -> list[dict]:
    """The Experiments page's table: one row per point with its grid values, state, accuracy (%),
    seconds, what went wrong, and a link to its curves (no link column when no point has a run in
    this store: a shipped results file)."""
    def pct(v: float | None) -> float | None:
        return None if v is None else round(100 * v, 2)

    links = any(p.run_id for p in points)
    return [{"point": p.label, "state": p.state, "max_lr": p.settings["max_lr"],
             "best test acc (%)": pct(p.best_test_acc), "final test acc (%)": pct(p.final_test_acc),
             "seconds": round(p.seconds, 1),
             "problem": p.error if p.state in (RunState.FAILED, PointState.DELETED) else "",
             **({"run": f"train?run={p.run_id}" if p.run_id else None} if links else {})}
            for p in points]
