"""Every normalization the lab knows: one ``Norm`` entry each in ``REGISTRY``.

An entry says how to build the layer after a C block's conv and ReLU (and whether that conv is
weight-standardized), its label, short name and fixed colour on every page, whether it uses the
``groups`` setting, and whether it normalizes with batch statistics (so its answer can depend on
the batch at inference). The settings' choices, the CLI, the pages' pickers and colours, the
Inside and batch-dependence analyses all follow from this table: adding a normalization is one
entry here.

The network's C blocks see (C, H, W) = (16|32, 32, 32), (24|32, 16, 16) and (32, 8, 8) activations
(``model.ARCHITECTURES``). ``layer`` is the lab's LayerNorm, ``GroupNorm(1, C)`` (statistics over
C, H, W per image, a per-channel affine: 2C parameters); ``layer-chw`` and ``layer-chw-affine`` are
the seed's own ``nn.LayerNorm([C, H, W])``, without and with its element-wise affine (2CHW
parameters a layer: 32,768 for C1 alone, far over the 50,000 budget, which is why the seed turned
it off).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


class BatchRenorm2d(nn.BatchNorm2d):
    """Batch Renormalization (Ioffe 2017). In training, the batch's statistics normalize as in
    BatchNorm, then are corrected towards the running ones by r = clip(σ_B/σ, 1/r_max, r_max) and
    d = clip((μ_B − μ)/σ, −d_max, d_max), held constant in the backward pass, so the output depends
    less on the batch. Schedule (Ioffe's, scaled from ImageNet's ~100k steps to a 20-epoch CIFAR
    run's ~7,800): plain BatchNorm (r_max = 1, d_max = 0) for the first ``hold`` steps, then r_max
    rises linearly to 3 and d_max to 5 by step ``hold + relax``. Eval mode is BatchNorm's (running
    statistics)."""

    def __init__(self, channels: int, r_max: float = 3.0, d_max: float = 5.0, hold: int = 500,
                 relax: int = 2500) -> None:
        super().__init__(channels, momentum=0.01)
        self.r_max, self.d_max, self.hold, self.relax = r_max, d_max, hold, relax
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))

    def limits(self) -> tuple[float, float]:
        """(r_max, d_max) at the current step."""
        frac = min(1.0, max(0.0, (int(self.steps) - self.hold) / self.relax))
        return 1.0 + (self.r_max - 1.0) * frac, self.d_max * frac

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.running_mean is None:  # eval, or batch statistics only
            return super().forward(x)
        with torch.no_grad():
            var, mean = torch.var_mean(x.float(), dim=(0, 2, 3), unbiased=False)
            running_std = (self.running_var + self.eps).sqrt()
            r_max, d_max = self.limits()
            r = ((var + self.eps).sqrt() / running_std).clamp(1.0 / r_max, r_max)
            d = ((mean - self.running_mean) / running_std).clamp(-d_max, d_max)
            n = x.numel() / x.shape[1]
            self.running_mean.lerp_(mean, self.momentum)
            self.running_var.lerp_(var * n / max(n - 1, 1), self.momentum)
            self.num_batches_tracked += 1
            self.steps += 1
        # x̂·r + d, then the affine: one fused batch-statistics normalization whose scale and shift
        # are γ·r and γ·d + β (r and d held constant, so the gradient flows as in the paper)
        return F.batch_norm(x, None, None, self.weight * r.to(self.weight.dtype),
                            self.bias + self.weight * d.to(self.weight.dtype), True, 0.0, self.eps)


class LayerNormCHW(nn.GroupNorm):
    """``nn.LayerNorm([C, H, W], elementwise_affine=False)`` computed as ``GroupNorm(1, C)`` without
    affine: the same statistics (each image over C, H, W) and result, without the copy LayerNorm
    needs for the channels-last layout the engine trains in."""

    def __init__(self, channels: int) -> None:
        super().__init__(1, channels, affine=False)


class WSConv2d(nn.Conv2d):
    """A convolution whose weights are standardized per output channel (zero mean, unit variance
    over its fan-in) at every forward pass: Weight Standardization (Qiao et al. 2019)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight
        w = (w - w.mean(dim=(1, 2, 3), keepdim=True)) / (w.std(dim=(1, 2, 3), keepdim=True,
                                                               unbiased=False) + 1e-5)
        return F.conv2d(x, w, self.bias, self.stride, self.padding, self.dilation, self.groups)


Make = Callable[[int, int, tuple[int, int]], nn.Module]  # (channels, groups, (H, W)) -> layer


@dataclass(frozen=True)
class Norm:
    """One normalization (see the module docstring)."""

    name: str                      # the value of the ``norm`` setting, stored with every run
    label: str                     # "BatchNorm"
    short: str                     # "BN"
    color: str                     # the same on every page
    make: Make
    averages_over: str             # what one mean / variance covers, in words
    batch_statistics: bool = False  # normalizes with the batch's statistics in training
    uses_groups: bool = False      # the ``groups`` setting applies
    weight_standardized: bool = False  # the block's conv is a ``WSConv2d``
    reference: str = ""            # where it comes from
    make_last: Make | None = None  # for the block that feeds global average pooling, when not ``make``


def _group(channels: int, groups: int, hw: tuple[int, int]) -> nn.Module:
    if channels % groups:
        raise ValueError(f"groups={groups} does not divide {channels} channels")
    return nn.GroupNorm(groups, channels)


REGISTRY: dict[str, Norm] = {n.name: n for n in (
    Norm("batch", "BatchNorm", "BN", "#1f77b4", lambda c, g, hw: nn.BatchNorm2d(c),
         "each channel over the batch and the image (N, H, W)", batch_statistics=True,
         reference="Ioffe & Szegedy 2015"),
    Norm("group", "GroupNorm", "GN", "#2ca02c", _group,
         "each image's group of C/G channels (C/G, H, W)", uses_groups=True, reference="Wu & He 2018"),
    Norm("layer", "LayerNorm", "LN", "#d62728", lambda c, g, hw: nn.GroupNorm(1, c),
         "each image's whole activation (C, H, W), per-channel affine", reference="Ba et al. 2016"),
    Norm("none", "no norm", "none", "#7f7f7f", lambda c, g, hw: nn.Identity(), "nothing"),
    # InstanceNorm leaves every channel with mean β over (H, W), so right before global average
    # pooling it would hand the classifier the same constant for every image (measured: a 20-epoch
    # run stayed at chance, loss ln 10). The block feeding GAP (C9) therefore uses LayerNorm.
    Norm("instance", "InstanceNorm (LN in C9)", "IN", "#9467bd",
         lambda c, g, hw: nn.InstanceNorm2d(c, affine=True),
         "each image's single channel (H, W); C9, before the pooling: (C, H, W)",
         reference="Ulyanov et al. 2016", make_last=lambda c, g, hw: nn.GroupNorm(1, c)),
    Norm("ws-group", "WS + GroupNorm", "WS+GN", "#98df8a", _group,
         "as GroupNorm, after a weight-standardized conv", uses_groups=True, weight_standardized=True,
         reference="Qiao et al. 2019"),
    Norm("batch-renorm", "Batch Renorm", "BRN", "#aec7e8", lambda c, g, hw: BatchRenorm2d(c),
         "as BatchNorm, corrected towards the running statistics", batch_statistics=True,
         reference="Ioffe 2017"),
    Norm("layer-chw", "LayerNorm [C,H,W], no affine (seed)", "LN-chw", "#ff9896",
         lambda c, g, hw: LayerNormCHW(c),
         "each image's whole activation (C, H, W), no affine", reference="the seed's notebook"),
    Norm("layer-chw-affine", "LayerNorm [C,H,W], affine (seed)", "LN-chw-a", "#e377c2",
         lambda c, g, hw: nn.LayerNorm([c, *hw], elementwise_affine=True),
         "each image's whole activation (C, H, W), an affine per element",
         reference="the seed's notebook"),
)}
NORMS: tuple[str, ...] = tuple(REGISTRY)
COLORS: dict[str, str] = {n.name: n.color for n in REGISTRY.values()}
LABELS: dict[str, str] = {n.name: n.label for n in REGISTRY.values()}


def get(name: str) -> Norm:
    """The entry of ``name``; ``ValueError`` naming the known ones otherwise."""
    try:
        return REGISTRY[name]
    except (KeyError, TypeError):
        raise ValueError(f"norm must be one of {', '.join(NORMS)}, got {name!r}") from None
