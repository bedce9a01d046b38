"""The preset catalogue and grid expansion: a preset is a one-click experiment that answers one claim
of the seed; a grid is expanded into validated settings, each a point (a run)."""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass

from cifar_app.core import norms
from cifar_app.core.settings import SettingsError, TrainSettings, parse_grid, parse_setting, shown
from cifar_app.store.results import ExperimentResults, point_key

CONFIRM_ABOVE = 200
MAX_POINTS = 10_000  # a grid larger than this is refused before it is expanded
RULES = {"lr_scales_with_batch": "max_lr = base max_lr × batch_size / 128 (linear scaling rule)",
         "images_scale_with_batch": "train_limit = base train_limit × batch_size / 128 (every batch size "
                                    "takes the same number of steps)"}
REFERENCE_BATCH = 128


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

    def spec(self, norms: list[str] | tuple[str, ...] | None = None, recipe: dict | None = None,
             sets: dict | None = None,
             rules: list[str] | tuple[str, ...] = ()) -> tuple[dict, dict, list[str]]:
        """The experiment this preset runs, as ``(base, grid, rules)`` for ``ExperimentStore.create``:
        its base over a ``recipe``'s values and under ``sets`` (a sweep's ``--set``), its grid with
        ``norms`` (``grid_with``), its rules and then ``rules``. The one place a preset becomes an
        experiment (the CLI, the Experiments page, the Claims page's one-click run)."""
        return {**(recipe or {}), **self.base, **(sets or {})}, self.grid_with(norms), [*self.rules, *rules]

    def foreign_points(self, results: ExperimentResults, overrides: dict | None = None) -> list[dict]:
        """The settings of ``results``' points that are not points of this preset (its base with
        ``overrides``, as a sweep's ``--set`` gives them, over its grid): what must not be recorded
        as this preset's results."""
        points = expand({**self.base, **(overrides or {})}, self.grid, self.rules)
        own = {point_key(s.to_dict()) for s in points}
        return [p.settings for p in results.points if point_key(p.settings) not in own]


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

