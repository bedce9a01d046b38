"""The loss landscape and internal covariate shift during training (Santurkar et al. 2018).

At a few fixed steps of training (``probe_steps``: ``n`` points spread evenly, step 0 and the last
included), right after the step's gradient ``g`` has been computed on its training batch and before
the optimizer uses it, ``landscape_record`` measures, in train mode, on that same batch and loss:

- **smoothness** (their §3.1, Fig. 4): the weights move along the gradient, w − k·η·g for k in
  ``MULTIPLIERS`` (η: the step's learning rate). Recorded: the loss at each, the *loss range*
  (largest minus smallest, the current loss included), the *gradient change* ‖∇L(w) − ∇L(w − kηg)‖
  (at k = 1 the gradient *predictiveness*), and the *effective β*, the largest gradient change
  divided by the distance moved, max_k ‖∇L(w) − ∇L(w − kηg)‖ / ‖kηg‖.
- **internal covariate shift** (their Definition 2.1): for each C block, G is the block's gradient
  and G′ its gradient after every layer before it has taken a plain SGD step (w − η·g, no momentum
  or weight decay) on the same batch; recorded ‖G − G′‖₂ and cos(G, G′).
- the gradient norm of each C block (Bjorck et al. 2018 look at step 0: heavy-tailed without a norm).

Training is not changed: the weights, the gradients the optimizer is about to use, every buffer
(BatchNorm's running statistics, Batch Renorm's step count) and the random number generators are
saved before and restored after, bit for bit; the optimizer is never called. Each forward pass of
the probe restarts from the same RNG state, so dropout draws the same masks for every k.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch is imported where a probe is taken, not by the pages that draw them
    import torch
    from torch import nn

MULTIPLIERS = (0.25, 0.5, 1.0, 2.0)  # step sizes along the gradient, in units of the current LR
DEFAULT_POINTS = 8                   # what the presets use


def probe_steps(total_steps: int, points: int) -> list[int]:
    """``points`` 0-based steps spread evenly over ``total_steps``, the first and the last included
    (fewer when training has fewer steps)."""
    if points <= 0 or total_steps <= 0:
        return []
    if points == 1 or total_steps == 1:
        return [0]
    return sorted({round(i * (total_steps - 1) / (points - 1)) for i in range(points)})


def _norm(ts: list[torch.Tensor]) -> float:
    import torch

    return float(torch.sqrt(sum((t.float() ** 2).sum() for t in ts))) if ts else 0.0


def landscape_record(model: nn.Module, loss_of: Callable[[], torch.Tensor], lr: float, *,
                     step: int, epoch: int, loss: float,
                     autocast: Callable[[], AbstractContextManager] | None = None) -> dict:
    """Measure at the current weights, whose ``.grad`` holds the step's gradient ``g`` of
    ``loss_of()`` (the training loss on the step's batch, ``loss`` its value). ``autocast``: the
    training step's autocast context. Leaves the model, its gradients and the RNGs as they were."""
    import torch

    t0 = time.perf_counter()
    ctx = autocast or torch.autocast("cpu", enabled=False)
    layers = [(name, list(layer.parameters())) for name, layer in model.layers.items()]
    params = [p for _, ps in layers for p in ps]
    with torch.no_grad():
        w0 = [p.detach().clone() for p in params]
        g = [p.grad.detach().clone() if p.grad is not None else torch.zeros_like(p) for p in params]
        buffers = [b.detach().clone() for b in model.buffers()]
    cpu_rng = torch.get_rng_state()
    cuda_rng = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None
    index = {id(p): i for i, p in enumerate(params)}

    def grads_at(shift: Callable[[int], float]) -> tuple[float, list[torch.Tensor]]:
        """Loss and gradients at w0 − shift(i)·g for each parameter i (same batch, same RNG)."""
        with torch.no_grad():
            for i, p in enumerate(params):
                p.copy_(w0[i])
                if (k := shift(i)):
                    p.sub_(g[i], alpha=k)
            for b, saved in zip(model.buffers(), buffers):
                b.copy_(saved)
        torch.set_rng_state(cpu_rng)
        if cuda_rng is not None:
            torch.cuda.set_rng_state_all(cuda_rng)
        for p in params:
            p.grad = None
        with ctx():
            value = loss_of()
        value.backward()
        return float(value.detach()), [p.grad.detach().clone() if p.grad is not None else torch.zeros_like(p)
                                       for p in params]

    try:
        g_norm = _norm(g)
        # The reference gradient at w, under the probe's RNG state (the same as g without dropout).
        _, g0 = grads_at(lambda i: 0.0)
        losses, changes, betas = [], [], []
        for k in MULTIPLIERS:
            value, gk = grads_at(lambda i, k=k: k * lr)
            change = _norm([a - b for a, b in zip(g0, gk)])
            losses.append(value)
            changes.append(change)
            betas.append(change / (k * lr * g_norm) if g_norm > 0 else 0.0)
        blocks = {}
        before: set[int] = set()
        for name, ps in layers:
            if name.startswith("C"):
                ids = [index[id(p)] for p in ps]
                _, gp = grads_at(lambda i: lr if i in before else 0.0)
                G = torch.cat([g0[i].flatten().float() for i in ids])
                G2 = torch.cat([gp[i].flatten().float() for i in ids])
                denom = float(G.norm() * G2.norm())
                blocks[name] = {"grad_norm": float(G.norm()), "ics_l2": float((G - G2).norm()),
                                # clamped: the float sums can land a hair outside [-1, 1]
                                "ics_cos": min(1.0, max(-1.0, float(G @ G2) / denom)) if denom > 0 else 0.0}
            before.update(index[id(p)] for p in ps)
    finally:
        with torch.no_grad():
            for p, w, gi in zip(params, w0, g):
                p.copy_(w)
                p.grad = gi
            for b, saved in zip(model.buffers(), buffers):
                b.copy_(saved)
        torch.set_rng_state(cpu_rng)
        if cuda_rng is not None:
            torch.cuda.set_rng_state_all(cuda_rng)
    return {"step": step, "epoch": epoch, "lr": lr, "loss": loss, "grad_norm": g_norm,
            "multipliers": list(MULTIPLIERS), "losses": losses, "grad_change": changes,
            "loss_range": max([loss, *losses]) - min([loss, *losses]),
            "predictiveness": changes[MULTIPLIERS.index(1.0)], "beta": max(betas),
            "blocks": blocks, "seconds": time.perf_counter() - t0}


def ics(record: dict) -> float:
    """A record's internal covariate shift: 1 − cos(G, G′), averaged over the C blocks."""
    blocks = record["blocks"].values()
    return sum(1 - b["ics_cos"] for b in blocks) / max(1, len(blocks))


def summary(records: list[dict]) -> dict:
    """Per-run aggregates the claims compare: the median over probe steps after step 0 of the loss
    range, predictiveness, effective β and ICS (1 − cos, ℓ2, averaged over blocks); the step-0
    gradient norms per block."""
    import statistics

    later = [r for r in records if r["step"] > 0] or records
    if not later:
        return {}

    def med(f):
        return statistics.median(f(r) for r in later)

    return {"loss_range": med(lambda r: r["loss_range"]),
            "predictiveness": med(lambda r: r["predictiveness"]),
            "beta": med(lambda r: r["beta"]),
            "ics_1_minus_cos": med(ics),
            "ics_l2": med(lambda r: statistics.fmean(b["ics_l2"] for b in r["blocks"].values())),
            "grad_norm_step0": next(({k: b["grad_norm"] for k, b in r["blocks"].items()}
                                     for r in records if r["step"] == 0), {})}
