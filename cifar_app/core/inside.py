"""What each normalization does inside the network, measured on a fixed probe batch.

At initialisation and after every epoch, ``probe_record`` passes the same 256 test images (the first
256 of the test split, the same for every run) through the model in eval mode and records, for every
C block (conv, ReLU, norm): percentiles (1, 20, 50, 80, 99), mean and std of the activations before
and after its normalization layer (the GroupNorm paper's Fig. 6 plots 1/20/80/99 over training),
the gradient norm of the block's parameters on the probe batch (cross-entropy, no label smoothing)
and their weight norm; for BatchNorm, the running mean and variance next to the probe batch's own
per-channel statistics. Eval mode changes nothing in the model (no running-statistics update, no
dropout, no RNG draw), so training is the same with or without probing.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from cifar_app.core import norms

PROBE_SIZE = 256
STATS_IMAGES = 64  # activation statistics use the first 64 probe images (the gradient all 256)
PERCENTILES = (1, 20, 50, 80, 99)
SAMPLE = 32_768  # activation values per layer used for the percentiles (a fixed random subsample)


def _stats(x: torch.Tensor, gen: torch.Generator) -> dict:
    """Percentiles p1..p99, mean and std of a tensor's values; the percentiles come from a fixed
    random subsample of ``SAMPLE`` values (their error is well under the spread shown)."""
    flat = x[:STATS_IMAGES].detach().float().flatten()
    sample = flat if flat.numel() <= SAMPLE else flat[torch.randint(flat.numel(), (SAMPLE,), generator=gen)]
    q = torch.quantile(sample, torch.tensor([p / 100 for p in PERCENTILES], device=sample.device))
    out = {f"p{p}": float(v) for p, v in zip(PERCENTILES, q)}
    std, mean = torch.std_mean(flat)
    out["mean"], out["std"] = float(mean), float(std)
    return out


def probe_record(model: nn.Module, x: torch.Tensor, y: torch.Tensor, epoch: int) -> dict:
    """One record for the probe batch ``x`` (float, normalized, (N, 3, 32, 32)) with labels ``y``:
    ``{"epoch": e, "layers": {"C1": {"pre": stats, "post": stats, "grad_norm": float,
    "weight_norm": float, "bn": {...} (BatchNorm only)}, ...}}``."""
    was_training = model.training
    batch_norm = norms.get(getattr(model, "norm", "none")).batch_statistics  # running statistics kept
    model.eval()
    captured: dict[str, dict[str, torch.Tensor]] = {}
    hooks = []
    blocks = model.blocks()
    for name, block in blocks.items():
        norm = block.norm_layer

        def hook(module, inputs, output, name=name):
            captured[name] = {"pre": inputs[0].detach(), "post": output.detach()}

        hooks.append(norm.register_forward_hook(hook))
    try:
        params = [p for p in model.parameters() if p.requires_grad]
        saved = [p.grad for p in params]
        for p in params:
            p.grad = None
        with torch.enable_grad():
            loss = F.cross_entropy(model(x).float(), y)
            loss.backward()
        gen = torch.Generator().manual_seed(epoch)
        layers = {}
        for name, block in blocks.items():
            grads = [p.grad.detach().float() for p in block.parameters() if p.grad is not None]
            weights = [p.detach().float() for p in block.parameters()]
            rec = {"pre": _stats(captured[name]["pre"], gen), "post": _stats(captured[name]["post"], gen),
                   "grad_norm": float(torch.sqrt(sum((g ** 2).sum() for g in grads))) if grads else 0.0,
                   "weight_norm": float(torch.sqrt(sum((w ** 2).sum() for w in weights)))}
            norm = block.norm_layer
            if batch_norm:
                pre = captured[name]["pre"].float()
                rec["bn"] = {"running_mean": norm.running_mean.tolist(),
                             "running_var": norm.running_var.tolist(),
                             "batch_mean": pre.mean(dim=(0, 2, 3)).tolist(),
                             "batch_var": pre.var(dim=(0, 2, 3), unbiased=False).tolist()}
            layers[name] = rec
        for p, g in zip(params, saved):
            p.grad = g
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    return {"epoch": epoch, "loss": float(loss.detach()), "layers": layers}
