"""Data augmentation on whole batches of image tensors, on whatever device they live on."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def random_crop(x: torch.Tensor, pad: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Random ``H x W`` crop of each image after zero-padding ``pad`` pixels on every side.

    x: (N, C, H, W), any dtype. Returns the same shape; every image gets its own shift in
    [-pad, pad] along each axis.
    """
    if pad <= 0:
        return x
    n, _, h, w = x.shape
    padded = F.pad(x, (pad, pad, pad, pad))
    dy = torch.randint(0, 2 * pad + 1, (n,), generator=generator, device=x.device)
    dx = torch.randint(0, 2 * pad + 1, (n,), generator=generator, device=x.device)
    rows = (dy[:, None] + torch.arange(h, device=x.device))[:, None, :, None]  # (N,1,H,1)
    cols = (dx[:, None] + torch.arange(w, device=x.device))[:, None, None, :]  # (N,1,1,W)
    batch = torch.arange(n, device=x.device)[:, None, None, None]
    chans = torch.arange(x.shape[1], device=x.device)[None, :, None, None]
    return padded[batch, chans, rows, cols]


def random_flip(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Mirror each image (N, C, H, W) left-right with probability 1/2."""
    flip = torch.rand(x.shape[0], generator=generator, device=x.device) < 0.5
    return torch.where(flip[:, None, None, None], x.flip(3), x)


def cutout(x: torch.Tensor, size: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Zero one ``size x size`` square per image (N, C, H, W), centred anywhere in the image."""
    if size <= 0:
        return x
    n, _, h, w = x.shape
    cy = torch.randint(0, h, (n,), generator=generator, device=x.device)
    cx = torch.randint(0, w, (n,), generator=generator, device=x.device)
    y0 = (cy - size // 2)[:, None, None]
    x0 = (cx - size // 2)[:, None, None]
    ys = torch.arange(h, device=x.device)[None, :, None]
    xs = torch.arange(w, device=x.device)[None, None, :]
    inside = (ys >= y0) & (ys < y0 + size) & (xs >= x0) & (xs < x0 + size)  # (N, H, W)
    return x.masked_fill(inside[:, None], 0)


def alternating_flips(first: torch.Tensor, epoch: int) -> torch.Tensor:
    """Which images to mirror in ``epoch`` (1-based) under the derandomised flip of airbench (Jordan
    2024): each image draws whether it is mirrored in epoch 1 (``first``, bool (N,)), then
    alternates, so over any two epochs every image is seen both ways."""
    return first if epoch % 2 == 1 else ~first


def augment_batch(x: torch.Tensor, crop_pad: int = 4, flip: bool = True, cutout_size: int = 0,
                  generator: torch.Generator | None = None,
                  flip_mask: torch.Tensor | None = None) -> torch.Tensor:
    """Random crop (zero padding ``crop_pad``), horizontal flip and optional cutout of (N, C, H, W).
    With ``flip_mask`` (bool (N,)) exactly those images are mirrored, instead of each with
    probability 1/2."""
    x = random_crop(x, crop_pad, generator)
    if flip_mask is not None:
        x = torch.where(flip_mask[:, None, None, None], x.flip(3), x)
    elif flip:
        x = random_flip(x, generator)
    return cutout(x, cutout_size, generator)
