"""Training settings: one schema, from which validation, the CLI flags, the Train page's widgets and
the sweep grid parser all follow.

Each ``TrainSettings`` field declares its type, range or choices, unit and help once, as a ``Spec`` in
the field's metadata. Adding a hyperparameter is a one-place change: add the field here.
"""

from __future__ import annotations

import functools
import math
import re
from dataclasses import MISSING, asdict, dataclass, field, fields

from cifar_app.core import norms
from cifar_app.core.architectures import ARCHITECTURES, DEFAULT_ARCH, NORMS, PARAM_BUDGET, PARAMS


class SettingsError(ValueError):
    """An invalid setting; ``field`` names it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


_RUN_ID = re.compile(r"^[a-z0-9][a-z0-9-]{0,63}$")


MAX_TEACHERS = 8  # the teacher setting names at most this many runs


def teacher_ids(text: str) -> list[str]:
    """The teacher setting's run ids: 'ref-batch, ref-group' -> ['ref-batch', 'ref-group'] (no
    validation: ``TrainSettings.validate`` does it)."""
    return [t.strip() for t in text.split(",") if t.strip()]


def valid_run_id(text: object) -> bool:
    """Whether ``text`` has the form of a run id (a teacher names runs by id; the run store names
    its folders by it)."""
    return isinstance(text, str) and bool(_RUN_ID.match(text))


NOT_GIVEN = type("NotGiven", (), {"__repr__": lambda self: "NOT_GIVEN"})()  # Spec.absent's "none"


@dataclass(frozen=True)
class Spec:
    """What one setting is.

    kind: the Python type of a value (int, float, bool or str).
    help: one line for the CLI's --help and the page's tooltip.
    unit: shown after the value (e.g. "px", "images").
    choices: the allowed values (str settings).
    low, high: the allowed range; ``low_open`` excludes ``low`` itself.
    optional: None is allowed (shown as "all" / "none").
    suggested: values offered by the page's pickers and presets (any valid value is accepted).
    absent: what a stored record that lacks the field means (its value when the record was written:
        the default of the day before the field existed or before its default changed); the
        current default when not given.
    """

    kind: type
    help: str
    unit: str = ""
    choices: tuple[str, ...] | None = None
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    optional: bool = False
    suggested: tuple = ()
    absent: object = NOT_GIVEN

    def describe_range(self) -> str:
        """'an integer in 1..50', 'in (0, 10]', 'one of batch, group', ..."""
        if self.choices is not None:
            return f"one of {', '.join(self.choices)}"
        if self.kind is bool:
            return "true or false"
        noun = "an integer" if self.kind is int else "a number"
        if self.low is not None and self.high is not None:
            if self.kind is int:
                text = f"{noun} in {int(self.low)}..{int(self.high)}"
            else:
                text = f"{noun} in {'(' if self.low_open else '['}{self.low:g}, {self.high:g}]"
        elif self.low is not None:
            text = f"{noun} >= {self.low:g}" if not self.low_open else f"{noun} > {self.low:g}"
        else:
            text = noun
        return text + (" or empty" if self.optional else "")

    def check(self, name: str, value: object) -> None:
        """Raise ``SettingsError`` unless ``value`` is allowed."""
        if value is None and self.optional:
            return
        ok = _type_ok(self.kind, value)
        if ok and self.choices is not None:
            ok = value in self.choices
        if ok and self.kind in (int, float):
            v = value  # compared as it is: float() of a whole number past any float raises
            if self.low is not None:
                ok = v > self.low if self.low_open else v >= self.low
            if ok and self.high is not None:
                ok = v <= self.high
        if not ok:
            raise SettingsError(name, f"must be {self.describe_range()}, got {shown(value)}")

    def parse(self, name: str, text: str) -> object:
        """A value from text (CLI flag, grid cell): '0.1', '8', 'true', 'none'; validated."""
        raw = text.strip()
        if self.optional and raw.lower() in ("", "none", "null", "all"):
            return None
        try:
            if self.kind is bool:
                if raw.lower() not in ("true", "false", "1", "0", "yes", "no", "on", "off"):
                    raise ValueError
                value: object = raw.lower() in ("true", "1", "yes", "on")
            elif self.kind is int:
                value = int(raw)
            elif self.kind is float:
                value = float(raw)
            else:
                value = raw
        except ValueError:
            raise SettingsError(name, f"must be {self.describe_range()}, got {shown(raw)}") from None
        self.check(name, value)
        return value


def shown(value: object, limit: int = 60) -> str:
    """``repr(value)`` for an error message, cut to ``limit`` characters (a 10,000-character input
    is not echoed back whole)."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + f"… ({len(text):,} characters)"


def _type_ok(kind: type, value: object) -> bool:
    if kind is bool:
        return isinstance(value, bool)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if kind is float:
        if isinstance(value, bool):
            return False
        # a whole number is finite; math.isfinite of one past any float raises OverflowError
        return isinstance(value, int) or (isinstance(value, float) and math.isfinite(value))
    return isinstance(value, kind)


def setting(default: object, kind: type, help: str, unit: str = "", **spec: object):  # noqa: A002
    """A dataclass field carrying its ``Spec`` (``help`` is the setting's one-line help text)."""
    return field(default=default, metadata={"spec": Spec(kind, help, unit, **spec)})  # type: ignore[arg-type]


@dataclass
class TrainSettings:
    """Everything that defines a training run.

    Learning rate follows OneCycle: warm up from max_lr/div_factor to ``max_lr`` over the first
    ``pct_start`` of the steps, then anneal to ~0. SGD with Nesterov momentum.
    """

    norm: str = setting("batch", str, "normalization after each 3x3 conv block", choices=NORMS)
    groups: int = setting(4, int, "GroupNorm groups (norm=group); must divide every block width",
                          low=1, high=64, suggested=(1, 2, 4, 8, 16))
    arch: str = setting(DEFAULT_ARCH, str, "channel widths and conv type of the C blocks (the layer "
                        "plan stays)", choices=tuple(ARCHITECTURES), absent="plain")
    epochs: int = setting(20, int, "passes over the training images", low=1, high=50)
    batch_size: int = setting(128, int, "images per optimizer step", "images", low=2, high=1024,
                              suggested=(2, 4, 8, 16, 32, 64, 128, 256, 512))
    max_lr: float = setting(0.2, float, "OneCycle peak learning rate", low=0, high=10, low_open=True,
                            suggested=(0.02, 0.05, 0.1, 0.2, 0.4, 0.8, 1.6))
    pct_start: float = setting(0.25, float, "fraction of the steps spent warming up", low=0, high=0.99,
                               low_open=True)
    momentum: float = setting(0.9, float, "SGD Nesterov momentum", low=0, high=0.999)
    norm_lr: float = setting(1.0, float, "learning-rate multiplier for the norm layers' scale and shift",
                             low=0, high=100, low_open=True, suggested=(1.0, 4.0, 16.0, 64.0))
    weight_decay: float = setting(5e-4, float, "L2 on conv weights (not on norm affine or biases)",
                                  low=0, high=0.1)
    dropout: float = setting(0.0, float, "Dropout2d probability after each C block", low=0, high=0.9)
    label_smoothing: float = setting(0.1, float, "label smoothing of the training loss", low=0, high=0.5)
    ema: float = setting(0.0, float, "exponential moving average of the weights (and BN statistics), "
                         "decay per step: the run's model is the average; 0 = off", low=0, high=0.9999,
                         suggested=(0.0, 0.99, 0.995, 0.999))
    whiten: str = setting("off", str, "C1's convolution: trained from a random start (off), or started "
                          "as patch-whitening filters of the training images and trained (init) or "
                          "kept (frozen): airbench's first layer", choices=("off", "init", "frozen"))
    dirac: bool = setting(False, bool, "start each C block's convolution as the identity on its first "
                          "channels (airbench's dirac init)")
    teacher: str = setting("", str, "knowledge distillation: the runs (ids, comma-separated, e.g. "
                           "ref-batch,ref-group,ref-layer) whose averaged predictions the run also "
                           "learns from; empty = labels alone")
    distill: float = setting(0.0, float, "weight of the teacher's soft targets in the loss (the labels' "
                             "cross-entropy gets 1 - this); 0 = off", low=0, high=1,
                             suggested=(0.0, 0.5, 0.9))
    distill_temp: float = setting(4.0, float, "temperature of the teacher's and student's softened "
                                  "predictions", low=0.1, high=20)
    augment: bool = setting(True, bool, "random crop (crop_pad px) + horizontal flip")
    flip: str = setting("random", str, "horizontal flip of the augmentation: each image with "
                        "probability 1/2 every epoch (random), or drawn once and then every other "
                        "epoch (alternate: airbench's derandomised flip)", choices=("random", "alternate"))
    mix: str = setting("off", str, "mix pairs of training images and their labels: blend whole images "
                       "(mixup) or paste a rectangle of one into the other (cutmix), in epochs "
                       "mix_from..mix_to", choices=("off", "mixup", "cutmix"))
    mix_alpha: float = setting(1.0, float, "mixing weights are drawn from Beta(alpha, alpha)", low=0,
                               high=10, low_open=True, suggested=(0.2, 0.5, 1.0))
    mix_from: int = setting(1, int, "first epoch that mixes (mix not off)", low=1, high=50)
    mix_to: int = setting(50, int, "last epoch that mixes (mix not off); past the run's epochs = to "
                          "the end", low=1, high=50)
    resize_start: int = setting(32, int, "progressive resizing: the training images' side in epoch 1, "
                                "growing to 32 px by the halfway epoch; 32 = off (tests are 32 px)",
                                "px", low=8, high=32, suggested=(16, 20, 24, 28, 32))
    crop_pad: int = setting(2, int, "padding of the random crop (2 beat 4 and 1 here)", "px", low=0, high=8)
    cutout: int = setting(0, int, "side of the cutout square, 0 = off", "px", low=0, high=32)
    seed: int = setting(0, int, "random seed (initialisation, data order, augmentation)", low=0,
                        high=2**31 - 1)
    train_limit: int | None = setting(None, int, "use only the first N training images", "images",
                                      low=1, high=10**7, optional=True,
                                      suggested=(None, 10_000, 5_000, 1_000, 500))
    test_limit: int | None = setting(None, int, "use only the first N test images", "images",
                                     low=1, high=10**7, optional=True, suggested=(None, 2_000, 1_000))
    train_eval: int = setting(0, int, "score the first N training images in eval mode after each epoch "
                              "(no augmentation; the train accuracy a train - test gap compares), "
                              "0 = off", "images", low=0, high=10**7, suggested=(0, 5_000))
    landscape: int = setting(0, int, "loss-landscape and internal-covariate-shift probes over training "
                             "(Santurkar et al.): how many steps, 0 = off", low=0, high=32, suggested=(0, 8))
    precision: str = setting("auto", str, "training arithmetic: fp32, bf16 autocast, or auto (bf16 on "
                             "a GPU; on a CPU with bf16 instructions once measured faster and as "
                             "accurate)", choices=("auto", "fp32", "bf16"))
    device: str = setting("auto", str, "where to train (auto: CUDA, then MPS, then CPU)",
                          choices=("auto", "cpu", "cuda", "mps"))

    @staticmethod
    def spec(name: str) -> Spec:
        """The ``Spec`` of setting ``name`` (``SettingsError`` for an unknown name)."""
        for f in fields(TrainSettings):
            if f.name == name:
                return f.metadata["spec"]
        raise SettingsError(name, "unknown setting")

    @staticmethod
    def names() -> list[str]:
        return [f.name for f in fields(TrainSettings)]

    @staticmethod
    def default(name: str) -> object:
        f = next(f for f in fields(TrainSettings) if f.name == name)
        return None if f.default is MISSING else f.default

    def validate(self) -> TrainSettings:
        """Raise ``SettingsError`` naming the first invalid field; return self when valid."""
        for f in fields(self):
            f.metadata["spec"].check(f.name, getattr(self, f.name))
        if norms.get(self.norm).uses_groups:
            widths = sorted({w for k, w in ARCHITECTURES[self.arch].widths.items() if k.startswith("C")})
            if any(w % self.groups for w in widths):
                raise SettingsError("groups", f"{self.groups} must divide every block width {widths}")
        if self.whiten != "off" and norms.get(self.norm).weight_standardized:
            raise SettingsError("whiten", f"{norms.get(self.norm).label} standardizes C1's weights at "
                                "every step, which would undo the whitening: use whiten=off")
        if self.mix_from > self.mix_to:
            raise SettingsError("mix_from", f"{self.mix_from} is after mix_to ({self.mix_to})")
        self._check_teacher()
        params = _param_count(self.norm, self.groups, self.arch)
        if params > PARAM_BUDGET:
            raise SettingsError("norm", f"{norms.get(self.norm).label} makes the network {params:,} "
                                f"parameters, over the {PARAM_BUDGET:,} budget")
        return self

    def _check_teacher(self) -> None:
        ids = teacher_ids(self.teacher)
        if len(ids) > MAX_TEACHERS or len(self.teacher) > 70 * MAX_TEACHERS:
            raise SettingsError("teacher", f"at most {MAX_TEACHERS} run ids, got {shown(self.teacher)}")
        bad = next((t for t in ids if not valid_run_id(t)), None)
        if bad is not None:
            raise SettingsError("teacher", f"{shown(bad)} is not a run id (lower-case letters, digits "
                                "and dashes)")
        if self.distill > 0 and not ids:
            raise SettingsError("distill", "needs a teacher: give teacher=RUN_ID[,RUN_ID...]")
        if ids and self.distill == 0:
            raise SettingsError("teacher", "is unused with distill=0: give distill > 0 (e.g. 0.5)")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_record(cls, d: object) -> TrainSettings:
        """Settings as a stored record holds them (a run's settings.json, a model's record, an
        experiment's point): a field the record lacks takes the value it had when the record was
        written (``Spec.absent``), not today's default. Validates."""
        if isinstance(d, dict):
            d = {**{f.name: f.metadata["spec"].absent for f in fields(cls)
                    if f.metadata["spec"].absent is not NOT_GIVEN and f.name not in d}, **d}
        return cls.from_dict(d)

    @classmethod
    def from_dict(cls, d: object) -> TrainSettings:
        """Build from a dict, refusing non-dicts and unknown keys; validates."""
        if not isinstance(d, dict):
            raise SettingsError("settings", f"must be a JSON object, got {type(d).__name__}")
        unknown = sorted(set(d) - set(cls.names()))
        if unknown:
            raise SettingsError(str(unknown[0]), "unknown setting")
        return cls(**d).validate()

    def recipe(self) -> str:
        """The named recipe these settings start from: the most specific one of ``RECIPES`` whose
        every value they have ('default' when no other fits)."""
        fits = [name for name, r in RECIPES.items()
                if r.values and all(getattr(self, k) == v for k, v in r.values.items())]
        return max(fits, key=lambda name: len(RECIPES[name].values), default=DEFAULT_RECIPE)

    def changes(self) -> str:
        """What these settings change from the default recipe, other than the norm (and its groups
        where the norm uses none): the named recipe they start from, then the settings that differ
        from it: 'ema=0.999', 'recipe=seed-plain, cutout=8'; '' for the default recipe."""
        skip = {"norm"} | (set() if norms.get(self.norm).uses_groups else {"groups"})
        name = self.recipe()
        base = {f.name: TrainSettings.default(f.name) for f in fields(self)} | RECIPES[name].values
        parts = [f"recipe={name}"] if name != DEFAULT_RECIPE else []
        return ", ".join(parts + [f"{f.name}={getattr(self, f.name)}" for f in fields(self)
                                  if f.name not in skip and getattr(self, f.name) != base[f.name]])

    def replace(self, **changes: object) -> TrainSettings:
        """A validated copy with ``changes`` applied."""
        return TrainSettings.from_dict({**self.to_dict(), **changes})

    def param_count(self) -> int:
        """Trainable parameters of the model these settings build."""
        return _param_count(self.norm, self.groups, self.arch)


@dataclass(frozen=True)
class Recipe:
    """A named starting point: values of some settings over the schema's defaults (``values``)."""

    about: str
    values: dict = field(default_factory=dict)


DEFAULT_RECIPE = "default"
RECIPES: dict[str, Recipe] = {
    DEFAULT_RECIPE: Recipe("the schema's defaults: depthwise-separable C blocks (arch=separable-b), "
                           "chosen by the recipe study (20 epochs x BN/GN/LN x 3 seeds, README)"),
    "seed-plain": Recipe("the lab's recipe before the recipe study: plain 3x3 convolutions with the "
                         "widths of the seed's notebooks; the earlier reference runs, the seeds "
                         "presets and the claims' presets were measured on it",
                         {"arch": "plain"}),
}


def recipe_values(name: str) -> dict:
    """The settings recipe ``name`` sets (``SettingsError`` naming 'recipe' for an unknown one)."""
    if name not in RECIPES:
        raise SettingsError("recipe", f"must be one of {', '.join(RECIPES)}, got {shown(name)}")
    return dict(RECIPES[name].values)


def recipe_key(settings: dict) -> dict:
    """Settings (a dict) but the norm and the arithmetic a run ran in (precision, device): runs with
    the same key trained the same recipe."""
    return {k: v for k, v in settings.items() if k not in ("norm", "precision", "device")}


def fits_budget(norm: str, groups: int = 4, arch: str = DEFAULT_ARCH) -> bool:
    """Whether the network with ``norm`` stays within ``PARAM_BUDGET`` (the seed's affine
    LayerNorm does not)."""
    return _param_count(norm, groups, arch) <= PARAM_BUDGET


@functools.lru_cache(maxsize=256)
def _param_count(norm: str, groups: int, arch: str) -> int:
    """Parameters of the network for a norm, groups and architecture (dropout has none): from
    ``architectures.PARAMS`` (listing runs validates their settings, and needs no torch for it),
    else by building the network, which imports torch."""
    known = PARAMS.get((arch, norm))
    if known is not None:
        return known
    from cifar_app.core.model import build_model, count_parameters

    return count_parameters(build_model(norm, groups, 0.0, arch))


def parse_setting(name: str, text: str) -> object:
    """One setting's value from text, validated (``SettingsError`` names the field)."""
    return TrainSettings.spec(name).parse(name, text)


def parse_grid(text: str) -> tuple[str, list[object]]:
    """'batch_size=2,4,8' -> ('batch_size', [2, 4, 8]); every value validated; no duplicates."""
    name, sep, values = text.partition("=")
    name = name.strip().replace("-", "_")
    if not sep or not values.strip():
        raise SettingsError(name or "grid", "write a grid as NAME=V1,V2,...")
    parsed = [parse_setting(name, v) for v in values.split(",")]
    if len(set(map(repr, parsed))) != len(parsed):
        raise SettingsError(name, "a grid value is repeated")
    return name, parsed
