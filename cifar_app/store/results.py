"""Experiment results as plain data: the results files of ``benchmarks/presets.py``, the ones shipped
with the app (``reference_experiments/``), and the stored verdict on bf16 training's accuracy.

A results file is checked by ``formats.parse_results`` (the run store owns every file format);
``ExperimentResults.load`` reads one and ``ResultsDamaged`` says why not.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from cifar_app.core import norms
from cifar_app.core.settings import TrainSettings, recipe_key
from cifar_app.store.formats import FileInvalid, parse_results
from cifar_app.store.states import PointState, RunState

# What results keep of each epoch record (wall-clock stamps and learning rates are left out).
EPOCH_FIELDS = ("epoch", "train_loss", "train_acc", "test_loss", "test_acc", "seconds", "images_per_s",
                "train_eval_acc")


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
    """A results file that does not pass ``formats.parse_results``; the text names the file and why."""

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
        """A results file, checked by ``formats.parse_results``; ``ResultsDamaged`` says why not."""
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
            if (key := point_key(pt.settings)) in seen:
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


def point_key(settings: dict) -> str:
    """A point's settings as one comparable text, in the schema's current form."""
    return json.dumps(TrainSettings.from_record(settings).to_dict(), sort_keys=True)


def compare_by_norm(candidate: ExperimentResults, baseline: ExperimentResults) -> dict[str, dict]:
    """Per normalization measured at least twice on both sides: the candidate's and the baseline's
    final accuracies, the difference of the means (candidate − baseline), its Welch 95% interval
    (``stats.welch``; None without spread) and 2 standard errors of it. What a recipe or a
    precision is judged by."""
    import statistics

    from cifar_app.core.stats import welch

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


# bf16 training's accuracy verdict: what precision=auto goes by on a CPU with bf16 instructions
BF16_ACCURACY = REFERENCE_EXPERIMENTS / "preset_bf16-seeds.json"  # the seeds preset in bf16
# the seeds preset in fp32 on the seed-plain recipe, bf16-seeds' recipe: not a preset_*.json, as the
# Claims page's seeds are the default recipe's (preset_seeds.json)
FP32_SEEDS = REFERENCE_EXPERIMENTS / "fp32-seeds_seed-plain.json"


def bf16_verdict(bf16_path: Path, fp32_path: Path) -> dict | None:
    """bf16 against fp32 accuracy from two seeds results files (the seeds preset trained with
    ``precision=bf16``, and in fp32): per norm both means ± std and whether the difference is within
    2 standard errors, sqrt(s₁²/n₁ + s₂²/n₂). Only a norm trained on one and the same recipe on both
    sides is compared (a precision is judged on one recipe, not across two). None when either file is
    missing or unreadable, or no norm is comparable."""
    try:
        bf16, fp32 = ExperimentResults.load(bf16_path), ExperimentResults.load(fp32_path)
    except ResultsDamaged:
        return None
    bf16_recipes = _recipes(bf16)
    same = {norm for norm, keys in _recipes(fp32).items()
            if len(keys) == 1 and bf16_recipes.get(norm) == keys}
    rows = {norm: {"bf16": r["candidate"], "fp32": r["baseline"], "difference": r["difference"],
                   "two_se": r["two_se"], "within_noise": r["difference"] >= -r["two_se"]}
            for norm, r in compare_by_norm(bf16, fp32).items() if norm in same}
    if not rows:
        return None
    return {"norms": rows, "within_noise": all(r["within_noise"] for r in rows.values())}


def _recipes(results) -> dict[str, set[str]]:
    """Per norm, the recipes its completed points trained (``settings.recipe_key`` but the seed)."""
    out: dict[str, set[str]] = {}
    for p in results.completed():
        key = {k: v for k, v in recipe_key(p.settings).items() if k != "seed"}
        out.setdefault(p.settings["norm"], set()).add(json.dumps(key, sort_keys=True))
    return out


def bf16_results_path() -> Path:
    """The bf16 seeds results ``auto`` goes by: ``$CIFAR_APP_BF16_RESULTS`` when set (one's own
    machine's, or none: the tests point it at a missing file), else the shipped ones."""
    return Path(os.environ.get("CIFAR_APP_BF16_RESULTS") or BF16_ACCURACY)


def bf16_accuracy_ok() -> bool | None:
    """The stored verdict on bf16 training's accuracy (``bf16_verdict`` of ``bf16_results_path``
    against the fp32 seeds): True when bf16 scores no lower than fp32 beyond 2 SE for every norm
    measured, False when not, None when there are no results."""
    verdict = bf16_verdict(bf16_results_path(), FP32_SEEDS)
    return None if verdict is None else verdict["within_noise"]


def resolve_precision(setting: str, device, norm: str, arch: str = "plain",
                      batch_size: int = 128) -> tuple[str, str]:
    """What a run trains in: ``precision.resolve`` with the stored bf16 verdict (``bf16_accuracy_ok``).
    The one place a run's arithmetic is chosen (the recorder; ``cifar-app precision``)."""
    from cifar_app.core import precision  # torch: only where a run is about to train

    return precision.resolve(setting, device, norm, arch, batch_size, bf16_accurate=bf16_accuracy_ok)
