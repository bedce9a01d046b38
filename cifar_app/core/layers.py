"""The lab's own normalization layers (the registry in ``norms`` builds them): Batch Renorm, the
seed's LayerNorm without affine, and the weight-standardized convolution."""

from __future__ import annotations

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
