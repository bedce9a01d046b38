"""The training loop: data as tensors on the device, batch augmentation, SGD + OneCycle.

``train`` knows nothing of the run store or the UI: it reports through ``Callbacks`` (the run
store's recorder has that shape; ``Hooks`` makes them from plain functions), asks ``should_stop``
between batches, and saves a checkpoint after every epoch from which ``resume=True`` continues.
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Protocol

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from cifar_app.core.augment import alternating_flips, augment_batch, mix_batch, progressive_side, resize_batch
from cifar_app.core.data import CifarData, channel_stats
from cifar_app.core.distill import Teacher, distill_loss
from cifar_app.core.landscape import landscape_record, probe_steps
from cifar_app.core.model import CifarNet, build_model, count_parameters
from cifar_app.core.precision import memory_format, resolve
from cifar_app.core.records import BatchStats, EpochStats
from cifar_app.core.settings import TrainSettings


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the message says where and what to change."""


class Checkpointer(Protocol):
    """Where ``train`` keeps its epoch checkpoints (the run store's ``Run`` is one)."""

    def load_checkpoint(self) -> dict | None: ...

    def save_checkpoint(self, state: dict) -> None: ...


@dataclass
class TrainResult:
    model: CifarNet
    mean: torch.Tensor  # (3,) per-channel mean, [0, 1] units
    std: torch.Tensor   # (3,)
    history: list[EpochStats] = field(default_factory=list)
    inside: list[dict] = field(default_factory=list)  # inside.probe_record per epoch (0 = init)
    landscape: list[dict] = field(default_factory=list)  # landscape.landscape_record per probe step
    arithmetic: str = "fp32"  # what the training step ran in (precision.resolve)
    stopped: bool = False
    test_probs: np.ndarray | None = None  # float32 (N_test, 10), final model, when not stopped


def select_device(name: str = "auto") -> torch.device:
    """``auto`` picks CUDA, then Apple MPS, then CPU."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device 'cuda' was asked for but CUDA is not available")
    if name == "mps" and not torch.backends.mps.is_available():
        raise RuntimeError("device 'mps' was asked for but MPS is not available")
    return torch.device(name)


def normalize(x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """uint8 (N, 3, H, W) -> float32 standardized by per-channel ``mean``/``std`` ([0, 1] units)."""
    x = x.to(torch.float32).div_(255)
    return (x - mean.view(1, 3, 1, 1).to(x.device)) / std.view(1, 3, 1, 1).to(x.device)


WHITEN_IMAGES = 5_000  # the training images whose patches ``whiten`` whitens


def make_optimizer(model: CifarNet, s: TrainSettings) -> torch.optim.SGD:
    """SGD with Nesterov momentum; weight decay on conv weights only (not norm affine, biases). With
    ``norm_lr`` other than 1 the norm layers' scale and shift are a group of their own whose learning
    rate is that many times the schedule's (``lr_mult``; airbench trains BN biases at 64x); at 1 the
    groups are the two they always were, so earlier checkpoints resume."""
    in_norms = set() if s.norm_lr == 1 else {id(p) for layer in model.norm_layers().values()
                                             for p in layer.parameters()}
    trained = [p for p in model.parameters() if p.requires_grad]  # not a frozen whitening layer
    decay = [p for p in trained if p.ndim > 1]
    norm_affine = [p for p in trained if p.ndim <= 1 and id(p) in in_norms]
    no_decay = [p for p in trained if p.ndim <= 1 and id(p) not in in_norms]
    groups = [{"params": decay, "weight_decay": s.weight_decay, "lr_mult": 1.0},
              {"params": no_decay, "weight_decay": 0.0, "lr_mult": 1.0},
              {"params": norm_affine, "weight_decay": 0.0, "lr_mult": s.norm_lr}]
    return torch.optim.SGD([g for g in groups if g["params"]], lr=s.max_lr, momentum=s.momentum,
                           nesterov=s.momentum > 0)


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """The schedule's learning rate for this step, times each group's ``lr_mult``."""
    for group in optimizer.param_groups:
        group["lr"] = lr * group["lr_mult"]


def onecycle_lr(step: int, total_steps: int, max_lr: float, pct_start: float,
                div_factor: float = 20.0, final_div_factor: float = 200.0) -> float:
    """Learning rate at 0-based ``step``: linear warm-up from max_lr/div_factor to ``max_lr`` until
    step pct_start*total-1, then linear decay to max_lr/(div_factor*final_div_factor) at the last
    step. The same arithmetic as ``torch.optim.lr_scheduler.OneCycleLR(anneal_strategy="linear")``,
    but defined for any number of steps, even 1."""
    initial = max_lr / div_factor
    phases = ((float(pct_start * total_steps) - 1, initial, max_lr),
              (float(total_steps - 1), max_lr, initial / final_div_factor))
    start_step = 0.0
    for i, (end_step, lr_from, lr_to) in enumerate(phases):
        if step <= end_step or i == len(phases) - 1:
            if end_step <= start_step:  # degenerate phase (very few steps): jump to its end
                return lr_to if step >= end_step else lr_from
            pct = (step - start_step) / (end_step - start_step)
            return (lr_to - lr_from) * pct + lr_from
        start_step = end_step
    raise AssertionError("unreachable")


def steps_per_epoch(n_train: int, batch_size: int) -> int:
    """Full batches per epoch (the last partial batch is dropped; at least one batch)."""
    return max(1, n_train // batch_size)


@torch.no_grad()
def predict_probs(model: nn.Module, x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor,
                  device: torch.device, batch_size: int = 1000, flip_tta: bool = False) -> torch.Tensor:
    """Class probabilities float32 (N, 10) on the CPU for uint8 images (N, 3, 32, 32).

    Always full float32 (no autocast, no TF32), so a model scores the same on every device.
    ``flip_tta`` averages the probabilities of each image and its mirror image (test-time
    augmentation; twice the compute).
    """
    model.eval()
    out = []
    tf32 = torch.backends.cudnn.allow_tf32
    torch.backends.cudnn.allow_tf32 = False
    try:
        for i in range(0, len(x), batch_size):
            xb = normalize(x[i:i + batch_size].to(device, non_blocking=True), mean, std)
            if device.type != "mps":
                xb = xb.contiguous(memory_format=torch.channels_last)
            probs = model(xb).float().softmax(1)
            if flip_tta:
                probs = (probs + model(xb.flip(3)).float().softmax(1)) / 2
            out.append(probs.cpu())
    finally:
        torch.backends.cudnn.allow_tf32 = tf32
    return torch.cat(out) if out else torch.zeros(0, 10)


def make_ema(model: nn.Module, decay: float) -> AveragedModel | None:
    """An exponential moving average of ``model``'s weights and buffers (BN's running statistics
    too), updated after every optimizer step; None when ``decay`` is 0."""
    if decay <= 0:
        return None
    return AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)


def mixed_cross_entropy(logits: torch.Tensor, y: torch.Tensor, y_other: torch.Tensor, lam: float,
                        label_smoothing: float = 0.0) -> torch.Tensor:
    """The labels' loss of a mixed batch: ``lam`` of the cross-entropy with each image's own label
    ``y``, ``1 - lam`` with its partner's ``y_other`` (the plain loss at ``lam`` = 1)."""
    loss = F.cross_entropy(logits.float(), y, label_smoothing=label_smoothing)
    if lam == 1.0:
        return loss
    return lam * loss + (1 - lam) * F.cross_entropy(logits.float(), y_other,
                                                    label_smoothing=label_smoothing)


def _autocast(device: torch.device, arithmetic: str):
    """The training step's autocast: bf16 or none (``arithmetic`` from ``precision.resolve``)."""
    if arithmetic == "bf16" and device.type in ("cuda", "cpu"):
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return torch.autocast(device.type, enabled=False)


class Callbacks(Protocol):
    """What ``train`` reports while it runs, and where it keeps its checkpoints: the shape of the run
    store's ``Recorder`` (and of the Ray ``Relay``). ``probes``: whether to measure the fixed probe
    batch (``inside.probe_record``) at initialisation and after every epoch."""

    probes: bool

    def batch(self, stats: BatchStats) -> None: ...

    def epoch(self, stats: EpochStats) -> None: ...

    def probe(self, record: dict) -> None: ...

    def landscape(self, record: dict) -> None: ...

    def load_checkpoint(self) -> dict | None: ...

    def save_checkpoint(self, state: dict) -> None: ...


@dataclass
class Hooks:
    """``Callbacks`` made of plain functions, each optional (scripts, benchmarks, tests); probing is on
    when ``on_probe`` is given; ``checkpoint``: where checkpoints go (a ``Run`` is one)."""

    on_batch: Callable[[BatchStats], None] | None = None
    on_epoch: Callable[[EpochStats], None] | None = None
    on_probe: Callable[[dict], None] | None = None
    on_landscape: Callable[[dict], None] | None = None
    checkpoint: Checkpointer | None = None

    @property
    def probes(self) -> bool:
        return self.on_probe is not None

    def batch(self, stats: BatchStats) -> None:
        if self.on_batch is not None:
            self.on_batch(stats)

    def epoch(self, stats: EpochStats) -> None:
        if self.on_epoch is not None:
            self.on_epoch(stats)

    def probe(self, record: dict) -> None:
        if self.on_probe is not None:
            self.on_probe(record)

    def landscape(self, record: dict) -> None:
        if self.on_landscape is not None:
            self.on_landscape(record)

    def load_checkpoint(self) -> dict | None:
        return self.checkpoint.load_checkpoint() if self.checkpoint is not None else None

    def save_checkpoint(self, state: dict) -> None:
        if self.checkpoint is not None:
            self.checkpoint.save_checkpoint(state)


@dataclass
class _Training:
    """Everything one training run holds while it runs (built by ``_prepare``)."""

    s: TrainSettings
    data: CifarData
    device: torch.device
    arithmetic: str
    model: CifarNet
    layout: torch.memory_format
    optimizer: torch.optim.Optimizer
    ema: AveragedModel | None
    evaluated: nn.Module  # the run's model: scored, probed, saved (the EMA's when there is one)
    teacher: Teacher | None
    batches: int          # steps per epoch
    batch_size: int
    result: TrainResult
    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    first_flips: torch.Tensor | None  # the alternating flip's epoch-1 draw, one per training image
    landscape_at: set[int]
    flush_every: int      # losses are fetched from the GPU in bursts, so the CPU can queue work ahead

    @property
    def total_steps(self) -> int:
        return self.s.epochs * self.batches


def train(settings: TrainSettings, data: CifarData, callbacks: Callbacks | None = None, *,
          resume: bool = False, should_stop: Callable[[], bool] | None = None,
          arithmetic: str | None = None, teacher: Teacher | None = None) -> TrainResult:
    """Train a ``CifarNet`` as ``settings`` say on ``data`` (limits in settings are applied here).

    Returns the trained model and history. ``callbacks`` (``Callbacks``: the recorder, or ``Hooks``)
    get every batch and epoch record; after every epoch the state goes to their
    ``save_checkpoint`` (then ``epoch`` is called), and ``resume=True`` continues from their
    ``load_checkpoint()``. When ``should_stop()`` turns true the current epoch is abandoned,
    ``stopped`` is set, and the last epoch checkpoint stays for a later ``resume``. When
    ``callbacks.probes``, the fixed probe batch (the first 256 test images) is measured at
    initialisation and after every epoch (``inside.probe_record``, its cost in ``seconds``); the
    records go to ``probe`` and into the checkpoint. With ``settings.landscape`` > 0, the loss
    landscape and internal covariate shift are measured at that many steps
    (``landscape.probe_steps``) on the step's own batch, without changing training; the records go
    to ``landscape`` and into the checkpoint. ``arithmetic`` ("fp32" or "bf16"): what the caller
    resolved ``settings.precision`` to (the recorder: ``store.results.resolve_precision``, with the
    stored bf16 verdict); when None, ``precision.resolve`` without a verdict (``auto`` is fp32 on a
    CPU). ``teacher``: the ``distill.Teacher`` of ``settings.teacher`` (given exactly when
    ``settings.distill`` > 0): the loss adds its softened predictions on each batch.
    """
    cb = callbacks if callbacks is not None else Hooks()
    s = settings.validate()
    if (teacher is None) != (s.distill == 0):
        raise ValueError("distill > 0 needs its teacher, and a teacher needs distill > 0")
    t = _prepare(s, data.limit(s.train_limit, s.test_limit), arithmetic, teacher)
    ckpt = cb.load_checkpoint() if resume else None
    start_epoch = _restore(t, ckpt) if ckpt is not None else 0
    probe = _prober(t) if cb.probes else None
    if probe is not None and ckpt is None:
        cb.probe(probe(0))
    for epoch in range(start_epoch + 1, s.epochs + 1):
        t0 = time.perf_counter()
        sums = _train_epoch(t, epoch, cb, should_stop)
        if sums is None:
            t.result.stopped = True
            return t.result
        stats = _epoch_stats(t, epoch, t0, *sums)
        t.result.history.append(stats)
        inside = probe(epoch) if probe is not None else None
        cb.save_checkpoint(_checkpoint_state(t, epoch))
        cb.epoch(stats)
        if inside is not None:
            cb.probe(inside)
    t.result.test_probs = predict_probs(t.evaluated, t.test_x, t.result.mean, t.result.std, t.device).numpy()
    return t.result


def _prepare(s: TrainSettings, data: CifarData, arithmetic: str | None, teacher: Teacher | None) -> _Training:
    """The model, its optimizer and EMA, the data on the device, and the run's fixed draws."""
    device = select_device(s.device)
    if arithmetic is None:
        arithmetic = resolve(s.precision, device, s.norm, s.arch, s.batch_size)[0]
    torch.manual_seed(s.seed)
    mean, std = channel_stats(data.train_x)
    model = build_model(s.norm, s.groups, s.dropout, s.arch)
    built, listed = count_parameters(model), s.param_count()
    if built != listed:  # the budget was checked on the table's count
        raise RuntimeError(f"the network has {built:,} parameters, but core/architectures.PARAMS "
                           f"says {listed:,}: update the table (tests/test_model.py prints it)")
    if s.dirac:
        model.dirac_init()
    if s.whiten != "off":  # a checkpoint being resumed brings its own C1 weights
        model.whiten_stem(normalize(data.train_x[:WHITEN_IMAGES], mean, std), frozen=s.whiten == "frozen")
    model = model.to(device)
    layout = memory_format(model, device, arithmetic)
    model = model.to(memory_format=layout)
    optimizer = make_optimizer(model, s)
    ema = make_ema(model, s.ema)
    evaluated = ema.module if ema is not None else model
    n_train = len(data.train_x)
    batches = steps_per_epoch(n_train, s.batch_size)
    first_flips = None
    if s.flip == "alternate":
        first_flips = torch.rand(n_train, generator=torch.Generator().manual_seed(s.seed)).lt(0.5).to(device)
    return _Training(
        s, data, device, arithmetic, model, layout, optimizer, ema, evaluated,
        teacher.to(device) if teacher is not None else None, batches, min(s.batch_size, n_train),
        TrainResult(evaluated, mean, std, arithmetic=arithmetic), data.train_x.to(device),
        data.train_y.to(device), data.test_x.to(device), first_flips,
        set(probe_steps(s.epochs * batches, s.landscape)), 1 if device.type == "cpu" else 50)


def _restore(t: _Training, ckpt: dict) -> int:
    """Load a checkpoint into the run; the epoch it ends."""
    t.model.load_state_dict(ckpt["model"])
    t.optimizer.load_state_dict(ckpt["optimizer"])
    if t.ema is not None:
        t.ema.load_state_dict(ckpt["ema"])
    done = int(ckpt["epoch"])
    t.result.history = list(ckpt["history"])[:done]
    t.result.inside = list(ckpt.get("inside", []))[:done + 1]
    t.result.landscape = [r for r in ckpt.get("landscape", []) if r["step"] < done * t.batches]
    return done


def _prober(t: _Training) -> Callable[[int], dict]:
    """Measures the fixed probe batch (the first test images) with the run's model: epoch -> record."""
    from cifar_app.core.inside import PROBE_SIZE, probe_record

    mean, std = t.result.mean, t.result.std
    px = normalize(t.data.test_x[:PROBE_SIZE].to(t.device), mean, std).contiguous(memory_format=t.layout)
    py = t.data.test_y[:PROBE_SIZE].to(t.device)

    def probe(epoch: int) -> dict:
        start = time.perf_counter()
        rec = probe_record(t.evaluated, px, py, epoch)
        rec["seconds"] = time.perf_counter() - start
        t.result.inside.append(rec)
        return rec

    return probe


def _batch_inputs(t: _Training, idx: torch.Tensor, epoch: int, gen: torch.Generator, side: int,
                  mix_rng: np.random.Generator | None) -> tuple[torch.Tensor, Callable]:
    """One step's augmented (and mixed) batch and its loss function of the logits."""
    s = t.s
    mean, std = t.result.mean, t.result.std
    xb = normalize(t.train_x[idx], mean, std)
    if s.augment:
        xb = augment_batch(xb, crop_pad=s.crop_pad, flip=True, cutout_size=s.cutout, generator=gen,
                           flip_mask=None if t.first_flips is None
                           else alternating_flips(t.first_flips[idx], epoch))
    elif s.cutout:
        xb = augment_batch(xb, crop_pad=0, flip=False, cutout_size=s.cutout, generator=gen)
    xb = resize_batch(xb, side)
    yb = t.train_y[idx]
    lam, y_other = 1.0, yb
    if mix_rng is not None:
        perm = torch.randperm(len(idx), generator=gen, device=t.device)
        box = (int(mix_rng.integers(side)), int(mix_rng.integers(side)))
        xb, lam = mix_batch(xb, s.mix, float(mix_rng.beta(s.mix_alpha, s.mix_alpha)), perm, box)
        y_other = yb[perm]
    labels_loss = functools.partial(mixed_cross_entropy, y=yb, y_other=y_other, lam=lam,
                                    label_smoothing=s.label_smoothing)
    return xb.contiguous(memory_format=t.layout), labels_loss


def _train_epoch(t: _Training, epoch: int, cb: Callbacks, should_stop: Callable[[], bool] | None
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, float, float] | None:
    """One epoch's steps: (loss sum, cross-entropy sum, correct, last LR, seconds), or None when
    ``should_stop`` turned true."""
    s, model, device = t.s, t.model, t.device
    t0 = time.perf_counter()
    model.train()
    gen = torch.Generator(device=device).manual_seed(s.seed * 100_003 + epoch)
    order = torch.randperm(len(t.train_x), generator=gen, device=device)
    loss_sum = torch.zeros((), device=device)
    ce_sum = torch.zeros((), device=device)  # plain cross-entropy, comparable to the test loss
    correct = torch.zeros((), device=device, dtype=torch.int64)
    pending: list[tuple[int, torch.Tensor, float]] = []
    side = progressive_side(epoch, s.epochs, s.resize_start, full=t.train_x.shape[-1])
    mixing = s.mix != "off" and s.mix_from <= epoch <= s.mix_to
    mix_rng = np.random.default_rng([s.seed, epoch]) if mixing else None  # weights and boxes, per epoch
    lr = 0.0
    for b in range(t.batches):
        if should_stop is not None and should_stop():
            return None
        idx = order[b * t.batch_size:(b + 1) * t.batch_size]
        xb, labels_loss = _batch_inputs(t, idx, epoch, gen, side, mix_rng)
        yb = t.train_y[idx]
        with _autocast(device, t.arithmetic):
            logits = model(xb)
            loss = labels_loss(logits)
            if t.teacher is not None:
                soft = t.teacher.probs(xb, t.result.mean, t.result.std, s.distill_temp)
                loss = (1 - s.distill) * loss + s.distill * distill_loss(logits, soft, s.distill_temp)
        t.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        step = (epoch - 1) * t.batches + b
        lr = onecycle_lr(step, t.total_steps, s.max_lr, s.pct_start)
        if step in t.landscape_at:
            rec = landscape_record(
                model, lambda xb=xb, labels_loss=labels_loss: labels_loss(model(xb)),
                lr, step=step, epoch=epoch, loss=float(loss.detach()),
                autocast=lambda: _autocast(device, t.arithmetic))
            t.result.landscape.append(rec)
            cb.landscape(rec)
        set_lr(t.optimizer, lr)
        t.optimizer.step()
        if t.ema is not None:
            t.ema.update_parameters(model)
        loss_sum += loss.detach() * len(idx)
        with torch.no_grad():
            ce_sum += F.cross_entropy(logits.detach().float(), yb, reduction="sum")
        correct += (logits.argmax(1) == yb).sum()  # of each (mixed) image's own label
        pending.append((b + 1, loss.detach(), lr))
        if len(pending) >= t.flush_every or b == t.batches - 1:
            _flush(pending, epoch, t.batches, s.max_lr, cb)
    return loss_sum, ce_sum, correct, lr, time.perf_counter() - t0


def _flush(pending: list[tuple[int, torch.Tensor, float]], epoch: int, batches: int, max_lr: float,
           cb: Callbacks) -> None:
    """Report the pending steps' losses (``TrainingDiverged`` at the first that is not finite)."""
    values = torch.stack([p[1] for p in pending]).float().cpu().tolist()
    for (bi, _, lr_b), v in zip(pending, values):
        if not math.isfinite(v):
            raise TrainingDiverged(f"training diverged: the loss became {v} at epoch {epoch}, batch {bi} "
                                   f"(max LR {max_lr}); try a lower max learning rate")
        cb.batch(BatchStats((epoch - 1) * batches + bi, epoch, bi, batches, v, lr_b))
    pending.clear()


def _epoch_stats(t: _Training, epoch: int, t0: float, loss_sum: torch.Tensor, ce_sum: torch.Tensor,
                 correct: torch.Tensor, lr: float, train_seconds: float) -> EpochStats:
    """The epoch's record: training figures, then the run's model scored on the test images (and, with
    ``train_eval``, on the first training images as the test images are scored)."""
    mean, std, y = t.result.mean, t.result.std, t.data.test_y
    seen = t.batches * t.batch_size
    probs = predict_probs(t.evaluated, t.test_x, mean, std, t.device)
    test_loss = F.nll_loss(probs.clamp_min(1e-12).log(), y).item() if len(probs) else math.nan
    test_acc = (probs.argmax(1) == y).float().mean().item() if len(probs) else math.nan
    train_eval_acc = None
    if t.s.train_eval > 0:  # eval mode, no augmentation
        k = min(t.s.train_eval, len(t.train_x))
        scored = predict_probs(t.evaluated, t.data.train_x[:k].to(t.device), mean, std, t.device)
        train_eval_acc = (scored.argmax(1) == t.data.train_y[:k]).float().mean().item()
    return EpochStats(
        epoch=epoch, train_loss=loss_sum.item() / seen, train_acc=correct.item() / seen,
        test_loss=test_loss, test_acc=test_acc, seconds=time.perf_counter() - t0,
        images_per_s=seen / train_seconds, lr=lr, train_ce=ce_sum.item() / seen,
        train_eval_acc=train_eval_acc)


def _checkpoint_state(t: _Training, epoch: int) -> dict:
    """What an epoch's checkpoint holds: enough to resume exactly (weights, optimizer, EMA, records)."""
    return {
        "model": t.model.state_dict(), "optimizer": t.optimizer.state_dict(),
        **({"ema": t.ema.state_dict()} if t.ema is not None else {}),
        "epoch": epoch, "history": [asdict(h) for h in t.result.history],
        "mean": t.result.mean, "std": t.result.std, "settings": t.s.to_dict(), "inside": t.result.inside,
        "landscape": t.result.landscape,
    }


def model_record(result: TrainResult, settings: TrainSettings, classes: tuple[str, ...]) -> dict:
    """What ``model.pt`` holds: weights (CPU) and everything inference needs; weights_only-safe."""
    return {
        "model": {k: v.detach().cpu() for k, v in result.model.state_dict().items()},
        "mean": result.mean.cpu(), "std": result.std.cpu(),
        "settings": settings.to_dict(), "classes": list(classes),
    }
