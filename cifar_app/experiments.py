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

from . import norms
from .data import CifarData, load_cifar10
from .runstore import (
    FileInvalid,
    RunDamaged,
    RunNotFound,
    RunStore,
    StoreError,
    file_lock,
    parse_results,
    pid_alive,
    write_json_atomic,
)
from .settings import SettingsError, TrainSettings, parse_grid, parse_setting, shown
from .states import ACTIVE, POINT_DONE, TERMINAL, ExperimentState, PointState, RunState

EXPERIMENTS_DIR = ".experiments"
CONFIRM_ABOVE = 200
MAX_POINTS = 10_000  # a grid larger than this is refused before it is expanded
RULES = {"lr_scales_with_batch": "max_lr = base max_lr × batch_size / 128 (linear scaling rule)",
         "images_scale_with_batch": "train_limit = base train_limit × batch_size / 128 (every batch size "
                                    "takes the same number of steps)"}
REFERENCE_BATCH = 128
# Two 1-thread points at once beat one 2-thread point on a 2-core CPU at every batch size measured
# (1.86x at 2 down to 1.13x at 128); beyond 128 it was not measured, so such points run alone
# (measured: benchmarks/results/sweep_parallelism.json, README "Experiments").
PARALLEL_MAX_BATCH = 128
SHARED_WORKERS = 2  # 1-thread workers a local sweep runs at once (this machine: 2 cores)
# What results keep of each epoch record (wall-clock stamps and learning rates are left out).
EPOCH_FIELDS = ("epoch", "train_loss", "train_acc", "test_loss", "test_acc", "seconds", "images_per_s",
                "train_eval_acc")
_ID_RE = re.compile(r"^exp-[a-z0-9-]{1,60}$")
BACKENDS = {"local": "this machine (the run queue)", "ray": "a Ray cluster (one task per point)"}


class ExperimentNotFound(KeyError):
    def __str__(self) -> str:
        return f"no experiment {self.args[0]!r}"


@dataclass(frozen=True)
class Preset:
    """A one-click experiment answering one claim of the seed. ``note`` says what was reduced."""

    name: str
    claim: str
    base: dict
    grid: dict
    rules: tuple[str, ...] = ()
    x: str = "batch_size"          # the plot's x axis
    note: str = ""

    def grid_with(self, norms: list[str] | tuple[str, ...] | None = None) -> dict:
        """The preset's grid, its normalizations replaced by ``norms`` (any of the registry's that
        fit the budget, e.g. the wider family); the preset's own when None."""
        grid = dict(self.grid)
        if norms is not None:
            if not norms:
                raise SettingsError("norm", "choose at least one normalization")
            grid["norm"] = list(dict.fromkeys(norms))
        return grid

    def foreign_points(self, results: ExperimentResults, overrides: dict | None = None) -> list[dict]:
        """The settings of ``results``' points that are not points of this preset (its base with
        ``overrides``, as a sweep's ``--set`` gives them, over its grid): what must not be recorded
        as this preset's results."""
        own = {_key(s.to_dict()) for s in expand({**self.base, **(overrides or {})}, self.grid, self.rules)}
        return [p.settings for p in results.points if _key(p.settings) not in own]


PRESETS: dict[str, Preset] = {
    "batch-size": Preset(
        "batch-size", "GN and LN do not depend on the batch size; BN does.",
        base={"epochs": 2, "train_limit": 50_000, "test_limit": 2000, "max_lr": 0.2, "precision": "fp32"},
        grid={"seed": [0, 1, 2], "norm": ["batch", "group", "layer"], "batch_size": [2, 8, 32]},
        rules=("lr_scales_with_batch", "images_scale_with_batch"), x="batch_size",
        note="Equal steps: every batch size takes the same 780 steps (2 epochs over the first "
             "batch_size × 390 training images: 781 at batch 2, 12,500 at 32), max_lr scales "
             "linearly with the batch size (0.05 at 32), as in Wu & He's 32 → 2 images per GPU; "
             "3 seeds per point, fp32, scored on the first 2,000 test images. Both norms see the same "
             "schedule, so what the claims test is the difference between norms of the accuracy range "
             "across batch sizes, per seed."),
    "learning-rate": Preset(
        "learning-rate", "BN allows higher learning rates.",
        base={"epochs": 3, "train_limit": 10_000, "test_limit": 2000, "precision": "fp32"},
        grid={"seed": [0, 1, 2, 3], "norm": ["none", "batch", "group", "layer"],
              "max_lr": [0.02, 0.05, 0.1, 0.2, 0.4, 0.8, 1.6]},
        x="max_lr",
        note="Reduced to fit a 2-core machine: 3 epochs over the first 10,000 training images, scored "
             "on the first 2,000 test images, batch 128, 4 seeds per point (the largest LR that trains "
             "is a grid value: a rank test on 3 seeds a side cannot reach p < 0.05, on 4 it can), "
             "fp32. A point that diverges counts as a failure (chance accuracy), never as missing."),
    "regularization": Preset(
        "regularization", "BN has a regularization effect: it reduces overfitting.",
        base={"train_limit": 5000, "augment": False, "test_limit": 2000, "max_lr": 0.05, "precision": "fp32",
              "train_eval": 5000},
        grid={"seed": [0, 1, 2], "norm": ["none", "batch", "group", "layer"]}, x="norm",
        note="Small data so that overfitting shows: the first 5,000 training images, no augmentation, "
             "the full 20 epochs, scored on the first 2,000 test images, 3 seeds, fp32. Max LR 0.05 "
             "for every norm: at the default 0.2 the network without a norm does not learn from "
             "5,000 images. The train accuracy is scored like the test accuracy (eval mode, after each "
             "epoch, on the 5,000 training images); the gap is compared at matched fit: at the train "
             "accuracy every run reaches, from each run's epoch curve."),
    "groups": Preset(
        "groups", "GN captures inter-channel correlations: some G between LN (G = 1) and IN (G = C) "
                  "beats both.",
        base={"epochs": 3, "train_limit": 10_000, "test_limit": 2000, "precision": "fp32"},
        grid={"seed": [0, 1, 2], "norm": ["group", "instance"], "groups": [1, 2, 4, 8]}, x="groups",
        note="G = 4 (the lab's default) is the one fixed in advance to decide the claim; G = 2 and 8 "
             "are shown, their comparisons Holm-corrected. 3 epochs over the first 10,000 training "
             "images, scored on the first 2,000 test images, 3 seeds, fp32. G must divide every block "
             "width (the default's 32, 48, 64 and 96); G = 1 is the lab's LayerNorm; G = C is the "
             "instance norm, whose last block (C9) is a LayerNorm because an InstanceNorm right before "
             "the global average pool would leave every image the same features."),
    "landscape": Preset(
        "landscape", "BN reduces internal covariate shift (Santurkar et al.: it does not; it smooths "
                     "the loss landscape).",
        base={"epochs": 3, "train_limit": 10_000, "test_limit": 2000, "landscape": 8, "max_lr": 0.05,
              "precision": "fp32"},
        grid={"seed": [0, 1, 2], "norm": ["none", "batch", "group", "layer"]}, x="norm",
        note="3 epochs over the first 10,000 training images, 3 seeds, fp32, max LR 0.05 for every "
             "norm (as Santurkar et al., one LR at which all of them train), with the loss-landscape and "
             "internal-covariate-shift probes at 8 steps of each run; probes where the learning rate "
             "is below a tenth of its peak are left out of the summary, and the landscape figures are "
             "per unit step length."),
    "seed-layernorm": Preset(
        "seed-layernorm", "The seed's LayerNorm over (C, H, W) without its affine, against the lab's "
                          "GroupNorm(1, C).",
        base={"epochs": 3, "train_limit": 10_000, "test_limit": 2000, "precision": "fp32"},
        grid={"seed": [0, 1, 2], "norm": ["layer", "layer-chw"]}, x="norm",
        note="3 epochs over the first 10,000 training images, 3 seeds, fp32. The seed's LayerNorm with "
             "its affine does not fit the 50,000-parameter budget, so it is not trained (Model page)."),
    "seeds": Preset(
        "seeds", "Are the differences between BN, GN and LN larger than seed noise?",
        base={"precision": "bf16"}, grid={"seed": [0, 1, 2], "norm": ["batch", "group", "layer", "none"]},
        x="norm",
        note="The full default recipe (20 epochs, all 50,000 images): 12 runs, pinned to bf16 "
             "autocast (the arithmetic its shipped figures were measured in; fp32 on a CPU without "
             "bf16 instructions would take several times longer). On a 2-core CPU VM, two at a time on "
             "one thread each, a run takes 11 (no norm) to 28 minutes (GroupNorm), about 2 hours in "
             "all; use the Ray backend to spread them."),
    "recipe-arch": Preset(
        "recipe-arch", "Spending the 50,000 parameters on depthwise-separable C blocks (2-3x the "
                       "channels) beats plain 3x3 convolutions.",
        base={"epochs": 3, "train_limit": 10_000, "test_limit": 2000},
        grid={"norm": ["batch", "group", "layer"], "arch": ["plain", "separable", "separable-b"]}, x="arch",
        note="The recipe study's architecture lever (benchmarks/recipe_study.py runs it at the full 20 "
             "epochs x 3 seeds), reduced to fit 15 minutes: 3 epochs over the first 10,000 training "
             "images, scored on the first 2,000 test images, one seed. A separable step costs about "
             "1.7x a plain one on a CPU."),
    "bf16-seeds": Preset(
        "bf16-seeds", "Does bf16 training score as fp32 does? (Within the fp32 seeds' noise.)",
        base={"precision": "bf16"}, grid={"seed": [0, 1, 2], "norm": ["batch", "group", "layer"]},
        x="norm",
        note="The seeds preset's full recipe in bf16 autocast (a CPU with avx512_bf16 or AMX, or a "
             "GPU); its verdict against the fp32 seeds of the same recipe (the shipped ones are "
             "seed-plain's: choose that recipe) decides whether precision=auto may take bf16."),
}


def expand(base: dict, grid: dict, rules: tuple[str, ...] | list[str] = ()) -> list[TrainSettings]:
    """Every grid point as validated settings, in grid order (the first field varies slowest); the
    groups of a norm that uses none are the default's, and repeated points are kept once.
    Raises ``SettingsError`` naming the field for any invalid value, before anything runs."""
    for rule in rules:
        if rule not in RULES:
            raise SettingsError("rules", f"unknown rule {rule!r}; known: {', '.join(RULES)}")
    size = 1
    for name, values in grid.items():  # counted first: a huge grid costs nothing to refuse
        size *= len(values) if isinstance(values, list) else 1
        if size > MAX_POINTS:
            raise SettingsError(name, f"the grid has more than {MAX_POINTS:,} points; make it smaller")
    for name, values in grid.items():
        if name not in TrainSettings.names():
            raise SettingsError(name, "unknown setting")
        if not isinstance(values, list) or not values:
            raise SettingsError(name, "a grid field needs a non-empty list of values")
        for v in values:
            TrainSettings.spec(name).check(name, v)
    defaults = TrainSettings().replace(**base)  # validates base
    points, seen = [], set()
    for combo in itertools.product(*grid.values()):
        values = {**defaults.to_dict(), **dict(zip(grid, combo))}
        if "lr_scales_with_batch" in rules:
            values["max_lr"] = defaults.max_lr * values["batch_size"] / REFERENCE_BATCH
        if "images_scale_with_batch" in rules:
            if defaults.train_limit is None:
                raise SettingsError("train_limit", "the rule images_scale_with_batch needs a train_limit")
            values["train_limit"] = max(1, defaults.train_limit * values["batch_size"] // REFERENCE_BATCH)
        if not norms.get(values["norm"]).uses_groups:  # G means nothing here: one point, not one per G
            values["groups"] = defaults.groups
        key = json.dumps(values, sort_keys=True)
        if key not in seen:
            seen.add(key)
            points.append(TrainSettings.from_dict(values))
    return points


def check_resources(cpus_per_point: object, gpus_per_point: object, backend: str = "ray") -> None:
    """Ray resources of a point: a whole number of CPUs >= 1; GPUs 0 (none), a fraction in (0, 1]
    (1/F points share a GPU) or a whole number. Only the ray backend schedules by them."""
    c = cpus_per_point
    if isinstance(c, bool) or not isinstance(c, int) or not 1 <= c <= 256:
        raise SettingsError("cpus_per_point", f"must be a whole number of CPUs, 1 or more, got {shown(c)}")
    g = gpus_per_point
    if isinstance(g, bool) or not isinstance(g, (int, float)) or not (
            g == 0 or 0 < g <= 1 or (g > 1 and float(g).is_integer() and g <= 64)):
        raise SettingsError("gpus_per_point",
                            f"must be 0, a fraction in (0, 1] or a whole number, got {shown(g)}")
    if backend != "ray" and (cpus_per_point != 1 or g):
        raise SettingsError("gpus_per_point" if g else "cpus_per_point",
                            "goes with the ray backend (the local backend trains on this machine)")


def parse_cli_grid(grids: list[str], sets: list[str]) -> tuple[dict, dict]:
    """``--grid F=V1,V2`` and ``--set F=V`` texts -> (base, grid), each value validated."""
    base = {}
    for item in sets:
        name, sep, value = item.partition("=")
        name = name.strip().replace("-", "_")
        if not sep:
            raise SettingsError(name or "set", "write a setting as NAME=VALUE")
        base[name] = parse_setting(name, value)
    grid = dict(parse_grid(g) for g in grids)
    return base, grid


@dataclass
class Point:
    """One grid point: its settings and, once created, its run's id."""

    settings: dict
    run_id: str | None = None

    def describe(self, grid: dict) -> str:
        """'norm=batch batch_size=8' for the fields the grid varies (not the groups of a norm that
        has none)."""
        return " ".join(f"{k}={self.settings[k]}" for k in grid
                        if k != "groups" or norms.get(self.settings["norm"]).uses_groups)


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


@dataclass(frozen=True)
class PointStatus:
    """A point as shown in tables: index, grid values, state, accuracy (0..1), seconds."""

    index: int
    label: str
    settings: dict
    run_id: str | None
    state: RunState | PointState
    best_test_acc: float | None
    final_test_acc: float | None
    seconds: float
    error: str | None


REFERENCE_EXPERIMENTS = Path(__file__).parent / "reference_experiments"
SHIPPED_ENV = "CIFAR_APP_REFERENCE_EXPERIMENTS"  # another folder of shipped results ("" for none)


def shipped_folder() -> Path | None:
    """The folder of shipped results the app reads: ``$CIFAR_APP_REFERENCE_EXPERIMENTS`` when set
    ("" for none), else the package's own."""
    value = os.environ.get(SHIPPED_ENV)
    if value is None:
        return REFERENCE_EXPERIMENTS
    return Path(value) if value else None


@dataclass(frozen=True)
class PointResult:
    """One point's result as the claims read it: settings, state, accuracies (0..1), its run's
    epoch records (``EpochStats`` as dicts; None when the results file kept none) and its landscape
    records (None: not probed)."""

    settings: dict
    state: str
    final_test_acc: float | None
    best_test_acc: float | None
    seconds: float
    run_id: str | None = None
    epochs: list[dict] | None = None
    landscape: list[dict] | None = None
    env: dict | None = None  # the arithmetic it ran in: precision, cpu, cpu_flags, torch (``ENV_FIELDS``)


# what a run's status says of its arithmetic
ENV_FIELDS = ("precision", "device", "cpu", "cpu_flags", "cpu_capability", "torch")


class ResultsDamaged(ValueError):
    """A results file that does not pass ``runstore.parse_results``; the text names the file and why."""

    def __init__(self, path: Path | str, why: str) -> None:
        super().__init__(f"{Path(path).name}: {why}")
        self.path, self.why = Path(path), why


@dataclass(frozen=True)
class ExperimentResults:
    """An experiment's results as plain data, the same whether read from the store
    (``ExperimentStore.results``) or from a results file shipped with the app (``load_results``):
    ``benchmarks/presets.py`` writes the one from the store, and the app ships it."""

    experiment: str
    preset: str | None
    grid: dict
    points: list[PointResult]
    shipped: bool = False
    created: float | None = None

    def to_dict(self) -> dict:
        return {"experiment": self.experiment, "preset": self.preset, "grid": self.grid,
                "created": self.created, "points": [
                    {"id": p.run_id, "settings": p.settings, "status": str(p.state),
                     "best_test_acc": p.best_test_acc, "final_test_acc": p.final_test_acc,
                     "seconds": p.seconds, "epochs": p.epochs, "landscape": p.landscape, "env": p.env}
                    for p in self.points]}

    @classmethod
    def from_dict(cls, d: dict, shipped: bool = False) -> ExperimentResults:
        """Also reads the older files of ``benchmarks/presets.py`` (no curves, no grid)."""
        points = [PointResult(settings=TrainSettings.from_record(p["settings"]).to_dict(),
                              state=str(p["status"]), final_test_acc=p.get("final_test_acc"),
                              best_test_acc=p.get("best_test_acc"), seconds=float(p.get("seconds") or 0),
                              run_id=p.get("id"), epochs=p.get("epochs"), landscape=p.get("landscape"),
                              env=p.get("env") if isinstance(p.get("env"), dict) else None)
                  for p in d["points"]]
        return cls(str(d["experiment"]), d.get("preset"), dict(d.get("grid") or {}), points, shipped,
                   d.get("created"))

    @classmethod
    def load(cls, path: Path | str, shipped: bool = False) -> ExperimentResults:
        """A results file, checked by ``runstore.parse_results``; ``ResultsDamaged`` says why not."""
        try:
            data = Path(path).read_bytes()
        except OSError as e:
            raise ResultsDamaged(path, f"cannot be read ({e.strerror or e})") from None
        try:
            return cls.from_dict(parse_results(data), shipped)
        except FileInvalid as e:
            raise ResultsDamaged(path, str(e)) from None

    @classmethod
    def merge(cls, parts: list[ExperimentResults], preset: str | None = None,
              grid: dict | None = None) -> ExperimentResults:
        """Several experiments' results as one (the seeds of a recipe run as separate sweeps; a
        preset's points measured in two experiments): the experiment ids joined by "+", the first
        part's preset and grid unless given. The same completed point in two parts is refused
        (``ValueError``): it would count twice."""
        seen: set[str] = set()
        for pt in (pt for r in parts for pt in r.completed()):
            if (key := _key(pt.settings)) in seen:
                raise ValueError(f"the point {pt.settings['norm']} seed {pt.settings['seed']} "
                                 "(the same settings) completed in two of the experiments merged")
            seen.add(key)
        first = parts[0]
        return cls("+".join(r.experiment for r in parts), preset if preset is not None else first.preset,
                   dict(grid if grid is not None else first.grid), [pt for r in parts for pt in r.points],
                   created=first.created)

    def completed(self) -> list[PointResult]:
        return [p for p in self.points if p.state == RunState.COMPLETED and p.final_test_acc is not None]

    def recipes(self) -> list[str]:
        """The named recipes its points start from (``TrainSettings.recipe``), sorted."""
        return sorted({TrainSettings.from_record(p.settings).recipe() for p in self.points})

    def point_statuses(self) -> list[PointStatus]:
        """The points as the Experiments page's plots and table take them (``ExperimentStore
        .point_statuses`` for a stored experiment). No run ids: a shipped file's runs are not in
        the store."""
        states = {str(s): s for s in (*RunState, *PointState)}
        return [PointStatus(i, Point(p.settings).describe(self.grid), p.settings, None,
                            states.get(p.state, RunState.DAMAGED), p.best_test_acc, p.final_test_acc,
                            p.seconds, None) for i, p in enumerate(self.points)]

    def final_accuracies(self) -> dict[str, list[float]]:
        """The completed points' final test accuracies (0..1), by normalization."""
        out: dict[str, list[float]] = {}
        for p in self.completed():
            out.setdefault(p.settings["norm"], []).append(p.final_test_acc)
        return out


def _key(settings: dict) -> str:
    """A point's settings as one comparable text, in the schema's current form."""
    return json.dumps(TrainSettings.from_record(settings).to_dict(), sort_keys=True)


def compare_by_norm(candidate: ExperimentResults, baseline: ExperimentResults) -> dict[str, dict]:
    """Per normalization measured at least twice on both sides: the candidate's and the baseline's
    final accuracies, the difference of the means (candidate − baseline), its Welch 95% interval
    (``stats.welch``; None without spread) and 2 standard errors of it. What a recipe or a
    precision is judged by."""
    import statistics

    from .stats import welch

    a, b = candidate.final_accuracies(), baseline.final_accuracies()
    rows = {}
    for norm, xs in a.items():
        ys = b.get(norm, [])
        if len(xs) >= 2 and len(ys) >= 2:
            cmp = welch(xs, ys)
            rows[norm] = {"candidate": xs, "baseline": ys,
                          "difference": statistics.fmean(xs) - statistics.fmean(ys),
                          "two_se": 2 * cmp.se if cmp else 0.0,
                          "ci95": [cmp.low, cmp.high] if cmp else None, "p": cmp.p if cmp else None}
    return rows


@dataclass(frozen=True)
class Shipped:
    """The results shipped with the app, by preset, and the files among them that are damaged
    (preset -> "FILE: why"): a damaged file marks only the claims it feeds."""

    results: dict[str, ExperimentResults]
    damaged: dict[str, str]


def load_shipped_results(folder: Path | str | None = "app") -> Shipped:
    """The results shipped with the app, by preset (``preset_<name>.json``); none for None;
    ``"app"``: ``shipped_folder()``."""
    if folder == "app":
        folder = shipped_folder()
    out: dict[str, ExperimentResults] = {}
    damaged: dict[str, str] = {}
    if folder is None or not Path(folder).is_dir():
        return Shipped(out, damaged)
    for path in sorted(Path(folder).glob("preset_*.json")):
        name = path.stem.removeprefix("preset_")
        try:
            res = ExperimentResults.load(path, shipped=True)
        except ResultsDamaged as e:
            damaged[name] = str(e)
            continue
        out[res.preset or name] = res
    return Shipped(out, damaged)


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
                    s = self.runs.get(p.run_id).summary()
                    state, best, final, seconds, error = (s.status, s.best_test_acc, s.final_test_acc,
                                                          s.seconds, s.error)
                except RunNotFound:
                    state, error = PointState.DELETED, "its run was deleted"
            out.append(PointStatus(i, p.describe(exp.grid), p.settings, p.run_id, state, best, final,
                                   seconds, error))
        return out

    def results(self, exp: Experiment) -> ExperimentResults:
        """The experiment's results with each completed point's epoch records and landscape
        records (a damaged run counts as not completed)."""
        out = []
        for p in self.point_statuses(exp):
            epochs = landscape = env = None
            state = p.state
            if p.state == RunState.COMPLETED:
                try:
                    run = self.runs.get(p.run_id)
                    epochs = [{k: e.to_record()[k] for k in EPOCH_FIELDS} for e in run.metrics().epochs]
                    landscape = list(run.landscape()) or None
                    status = run.raw_status()
                    env = {k: status[k] for k in ENV_FIELDS if k in status} or None
                except (RunNotFound, RunDamaged):
                    state = RunState.DAMAGED
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
    from .jobs import execute_run

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
    from .engine import select_device

    return select_device("auto").type == "cpu"


def _run_shared(exps: ExperimentStore, exp_id: str, points: list[int], prepare: Callable,
                report: Callable, data_dir: str | Path) -> None:
    """Train ``points`` in 1-thread worker processes, ``SHARED_WORKERS`` at a time, starting the
    next as soon as one ends, while this process holds the training lock for all of them. A stop
    request stops the active ones and starts no more."""
    from .jobs import start_run, training_slot

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


def measured_speeds(store: RunStore) -> dict[int, float]:
    """{batch_size: median training images/s} over this store's runs with a finished epoch."""
    import statistics

    seen: dict[int, list[float]] = {}
    for run in store.list():
        if run.reference:
            continue
        try:
            s, epochs = run.settings(), run.metrics().epochs
        except RunDamaged:
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
