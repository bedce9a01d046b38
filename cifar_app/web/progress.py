"""Where a run stands: epoch, batch, speed and time left, from its metrics log (pure functions)."""

from __future__ import annotations

from dataclasses import dataclass

from cifar_app.store.formats import Metrics
from cifar_app.store.states import ACTIVE, RunState


@dataclass(frozen=True)
class Progress:
    """Progress of a run. ``fraction`` in 0..1; ``eta_s`` seconds left (None when unknown)."""

    epoch: int          # epoch in progress (1-based), or the last one when finished
    epochs: int
    batch: int          # batches done in that epoch
    batches: int        # batches per epoch (0 before the first one)
    fraction: float
    images_per_s: float | None
    eta_s: float | None


def training_progress(metrics: Metrics, epochs: int, batch_size: int, state: str) -> Progress:
    """Progress from the log. Speed is the last epoch's images/s, or before the first epoch ends,
    the batches logged so far over their wall time (needs the ``t`` field of batch records)."""
    done_epochs = len(metrics.epochs)
    last = metrics.batches[-1] if metrics.batches else None
    batches = last.batches if last else 0
    if last is None:
        epoch, batch = max(1, done_epochs), 0
    elif last.epoch > done_epochs:
        epoch, batch = last.epoch, last.batch
    else:
        epoch, batch = done_epochs, batches
    total_steps = epochs * batches
    steps_done = (epoch - 1) * batches + batch if batches else 0
    if state == RunState.COMPLETED:
        fraction = 1.0
    else:
        fraction = min(1.0, steps_done / total_steps) if total_steps else 0.0

    speed = metrics.epochs[-1].images_per_s if metrics.epochs else None
    if speed is None and len(metrics.batches) >= 2:
        first, last_b = metrics.batches[0], metrics.batches[-1]
        if first.t is not None and last_b.t is not None and last_b.t > first.t:
            speed = (last_b.step - first.step) * batch_size / (last_b.t - first.t)
    eta = None
    if speed and total_steps and state in ACTIVE:
        eta = (total_steps - steps_done) * batch_size / speed
        if metrics.epochs:  # add the test pass of each remaining epoch
            per_epoch_eval = max(0.0, metrics.epochs[-1].seconds - batches * batch_size / speed)
            eta += per_epoch_eval * (epochs - done_epochs)
    return Progress(epoch, epochs, batch, batches, fraction, speed, eta)


def format_duration(seconds: float | None) -> str:
    """12.3 -> '12 s', 754 -> '12 min 34 s', 5400 -> '1 h 30 min'; None -> '-'."""
    if seconds is None:
        return "-"
    s = int(round(seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {s % 3600 // 60:02d} min"
