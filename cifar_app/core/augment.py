"""Data augmentation on whole batches of image tensors, on whatever device they live on."""

from __future__ import annotations

import math

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


def mix_batch(x: torch.Tensor, kind: str, lam: float, perm: torch.Tensor,
              box: tuple[int, int] | None = None) -> tuple[torch.Tensor, float]:
    """Mix each image of ``x`` (N, C, H, W) with image ``perm[i]`` of the same batch.

    kind: "mixup" blends whole images, ``lam * x + (1 - lam) * x[perm]`` (Zhang et al. 2018);
        "cutmix" pastes a rectangle of ``x[perm]`` covering ``1 - lam`` of the area, centred at
        ``box`` (row, column), clipped at the borders (Yun et al. 2019).
    Returns the mixed batch and the weight of each image's own label: ``lam`` for mixup, the share
    of the area left unpasted for cutmix (clipping can shrink the rectangle).
    """
    if kind == "mixup":
        return lam * x + (1 - lam) * x[perm], lam
    if kind != "cutmix":
        raise ValueError(f"unknown mix {kind!r}")
    h, w = x.shape[2], x.shape[3]
    cy, cx = box if box is not None else (h // 2, w // 2)
    side = math.sqrt(1 - lam)
    bh, bw = round(h * side), round(w * side)
    y0, y1 = max(cy - bh // 2, 0), min(cy - bh // 2 + bh, h)
    x0, x1 = max(cx - bw // 2, 0), min(cx - bw // 2 + bw, w)
    if y1 <= y0 or x1 <= x0:
        return x, 1.0
    out = x.clone()
    out[:, :, y0:y1, x0:x1] = x[perm, :, y0:y1, x0:x1]  # only the pasted pixels are gathered
    return out, 1 - (y1 - y0) * (x1 - x0) / (h * w)


RESIZE_FULL_AT = 0.5  # progressive resizing reaches the full side at this fraction of the epochs


def progressive_side(epoch: int, epochs: int, start: int, full: int = 32) -> int:
    """The side of the training images in ``epoch`` (1-based) under progressive resizing: ``start``
    px in epoch 1, growing linearly (to even sides) to ``full`` px at epoch
    ceil(RESIZE_FULL_AT * epochs), and ``full`` from then on. ``start >= full`` is off."""
    last = max(1, math.ceil(RESIZE_FULL_AT * epochs))
    if start >= full or epoch >= last:
        return full
    side = start + (full - start) * (epoch - 1) / (last - 1)
    return min(full, 2 * int(side / 2))


def resize_batch(x: torch.Tensor, side: int) -> torch.Tensor:
    """Images (N, C, H, W) resized to ``side x side`` (bilinear, antialiased); unchanged at their
    own size."""
    if x.shape[2] == side and x.shape[3] == side:
        return x
    return F.interpolate(x, size=(side, side), mode="bilinear", align_corners=False, antialias=True)
