"""Training settings: one validated dataclass, stored as JSON with every run."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

from .model import ARCHITECTURES, DEFAULT_ARCH, NORMS, build_model


class SettingsError(ValueError):
    """An invalid setting; ``field`` names it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


@dataclass
class TrainSettings:
    """Everything that defines a training run.

    Learning rate follows OneCycle: warm up from max_lr/div_factor to ``max_lr`` over the first
    ``pct_start`` of the steps, then anneal to ~0. SGD with Nesterov momentum.
    """

    norm: str = "batch"
    groups: int = 4               # GroupNorm groups (norm="group")
    arch: str = DEFAULT_ARCH      # key of model.ARCHITECTURES
    epochs: int = 20              # 1..50
    batch_size: int = 128         # 2..1024
    max_lr: float = 0.2           # OneCycle peak learning rate
    pct_start: float = 0.25       # fraction of steps spent warming up
    momentum: float = 0.9
    weight_decay: float = 5e-4    # L2 on conv weights (not on norm affine or biases)
    dropout: float = 0.0          # Dropout2d after each C block, 0..0.9
    label_smoothing: float = 0.1  # 0..0.5
    augment: bool = True          # random crop (``crop_pad`` px) + horizontal flip
    crop_pad: int = 2             # padding of the random crop in pixels, 0..8 (2 beat 4 and 1 here)
    cutout: int = 0               # side of the cutout square in pixels, 0 = off
    seed: int = 0
    train_limit: int | None = None  # use only the first N training images
    test_limit: int | None = None   # use only the first N test images
    device: str = "auto"          # auto | cpu | cuda | mps

    def validate(self) -> TrainSettings:
        """Raise ``SettingsError`` naming the first invalid field; return self when valid."""
        def need(ok: bool, field: str, message: str) -> None:
            if not ok:
                raise SettingsError(field, message)

        def is_int(v: object) -> bool:
            return isinstance(v, int) and not isinstance(v, bool)

        def is_num(v: object) -> bool:
            return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)

        need(self.norm in NORMS, "norm", f"must be one of {', '.join(NORMS)}, got {self.norm!r}")
        need(self.arch in ARCHITECTURES, "arch",
             f"must be one of {', '.join(ARCHITECTURES)}, got {self.arch!r}")
        need(is_int(self.groups) and self.groups >= 1, "groups", "must be a positive integer")
        if self.norm == "group":
            widths = [w for k, w in ARCHITECTURES[self.arch].widths.items() if k.startswith("C")]
            bad = [w for w in widths if w % self.groups]
            need(not bad, "groups", f"{self.groups} must divide every block width {sorted(set(widths))}")
        need(is_int(self.epochs) and 1 <= self.epochs <= 50, "epochs", "must be an integer in 1..50")
        need(is_int(self.batch_size) and 2 <= self.batch_size <= 1024, "batch_size",
             "must be an integer in 2..1024")
        need(is_num(self.max_lr) and 0 < self.max_lr <= 10, "max_lr", "must be in (0, 10]")
        need(is_num(self.pct_start) and 0 < self.pct_start < 1, "pct_start", "must be in (0, 1)")
        need(is_num(self.momentum) and 0 <= self.momentum < 1, "momentum", "must be in [0, 1)")
        need(is_num(self.weight_decay) and 0 <= self.weight_decay <= 0.1, "weight_decay",
             "must be in [0, 0.1]")
        need(is_num(self.dropout) and 0 <= self.dropout <= 0.9, "dropout", "must be in [0, 0.9]")
        need(is_num(self.label_smoothing) and 0 <= self.label_smoothing <= 0.5, "label_smoothing",
             "must be in [0, 0.5]")
        need(isinstance(self.augment, bool), "augment", "must be true or false")
        need(is_int(self.crop_pad) and 0 <= self.crop_pad <= 8, "crop_pad",
             "must be an integer in 0..8")
        need(is_int(self.cutout) and 0 <= self.cutout <= 32, "cutout", "must be an integer in 0..32")
        need(is_int(self.seed) and self.seed >= 0, "seed", "must be a non-negative integer")
        for name in ("train_limit", "test_limit"):
            v = getattr(self, name)
            need(v is None or (is_int(v) and v >= 1), name, "must be a positive integer or empty")
        need(self.device in ("auto", "cpu", "cuda", "mps"), "device",
             "must be one of auto, cpu, cuda, mps")
        return self

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> TrainSettings:
        """Build from a dict, refusing unknown keys; validates."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise SettingsError(unknown[0], "unknown setting")
        return cls(**d).validate()

    def param_count(self) -> int:
        """Trainable parameters of the model these settings build."""
        from .model import count_parameters

        return count_parameters(build_model(self.norm, self.groups, self.dropout, self.arch))
