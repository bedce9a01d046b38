"""Typed metric records: what the training loop reports and the run store's metrics log holds."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields


class RecordError(ValueError):
    """A metrics record that is not what the app writes; the message says which field."""


def _number(d: dict, name: str, kind: type, optional: bool = False) -> object:
    if name not in d or d[name] is None:
        if optional:
            return None
        raise RecordError(f"missing field {name!r}")
    v = d[name]
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise RecordError(f"field {name!r} is not a number: {v!r}")
    if kind is int:
        if isinstance(v, float) and not v.is_integer():
            raise RecordError(f"field {name!r} is not an integer: {v!r}")
        return int(v)
    try:
        return float(v)
    except OverflowError:  # a whole number past any float (JSON allows one)
        raise RecordError(f"field {name!r} is past any float: {str(v)[:20]}...") from None


@dataclass
class EpochStats:
    """One epoch's figures.

    train_loss: mean training loss as optimized (cross-entropy *with* label smoothing);
    train_ce: mean plain cross-entropy on the same training batches (no smoothing), comparable to
        test_loss; None in logs written before it was recorded;
    test_loss: mean cross-entropy on the test images (nats); accuracies are fractions in 0..1;
    seconds: the epoch's wall time including the test pass;
    images_per_s: training images over the training part only; lr: the last step's learning rate.
    """

    epoch: int
    train_loss: float
    train_acc: float
    test_loss: float
    test_acc: float
    seconds: float
    images_per_s: float
    lr: float
    train_ce: float | None = None
    train_eval_acc: float | None = None  # eval mode on the first ``train_eval`` training images

    TYPE = "epoch"

    @classmethod
    def from_dict(cls, d: dict) -> EpochStats:
        """Parse one log record (``RecordError`` when a field is missing or not a number)."""
        kinds = {"epoch": int}
        values = {f.name: _number(d, f.name, kinds.get(f.name, float),
                                  optional=f.name in ("train_ce", "train_eval_acc"))
                  for f in fields(cls)}
        if values["epoch"] < 1:
            raise RecordError(f"epoch must be >= 1, got {values['epoch']}")
        return cls(**values)

    def to_record(self) -> dict:
        return {"type": self.TYPE, **asdict(self)}

    @property
    def comparable_train_loss(self) -> tuple[float, bool]:
        """(train loss comparable to test_loss when known, whether it is the plain cross-entropy)."""
        if self.train_ce is not None and math.isfinite(self.train_ce):
            return self.train_ce, True
        return self.train_loss, False


@dataclass
class BatchStats:
    """One optimizer step: global ``step`` (1-based), ``epoch`` (1-based), batch index in the epoch
    (1-based), ``batches`` per epoch, training loss (with label smoothing), the learning rate used,
    and ``t``, the wall-clock time it was logged (Unix seconds; None in thinned reference logs)."""

    step: int
    epoch: int
    batch: int
    batches: int
    loss: float
    lr: float
    t: float | None = None

    TYPE = "batch"

    @classmethod
    def from_dict(cls, d: dict) -> BatchStats:
        """Parse one log record (``RecordError`` when a field is missing or not a number). A log
        holds a line per few steps (1,560 in a 20-epoch run), so the record as the app writes it
        (ints and floats of the exact types) is taken at once; anything else is checked field by
        field, with the same result."""
        step, epoch, batch, batches = (d.get(k) for k in ("step", "epoch", "batch", "batches"))
        loss, lr, t = d.get("loss"), d.get("lr"), d.get("t")
        if type(step) is type(epoch) is type(batch) is type(batches) is int and step >= 1 \
                and epoch >= 1 and type(loss) is type(lr) is float and (t is None or type(t) is float):
            return cls(step, epoch, batch, batches, loss, lr, t)
        return cls._checked(d)

    @classmethod
    def _checked(cls, d: dict) -> BatchStats:
        kinds = {"step": int, "epoch": int, "batch": int, "batches": int}
        values = {f.name: _number(d, f.name, kinds.get(f.name, float), optional=f.name == "t")
                  for f in fields(cls)}
        if values["step"] < 1 or values["epoch"] < 1:
            raise RecordError("step and epoch must be >= 1")
        return cls(**values)

    def to_record(self) -> dict:
        d = asdict(self)
        if d["t"] is None:
            del d["t"]
        return {"type": self.TYPE, **d}


def parse_record(d: object) -> EpochStats | BatchStats:
    """A decoded JSON line -> its record (``RecordError`` for anything else)."""
    if not isinstance(d, dict):
        raise RecordError(f"not a JSON object but {type(d).__name__}")
    kind = d.get("type")
    if kind == EpochStats.TYPE:
        return EpochStats.from_dict(d)
    if kind == BatchStats.TYPE:
        return BatchStats.from_dict(d)
    raise RecordError(f"unknown record type {kind!r}")
