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
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from torch import nn

# The registry is read without torch (the settings' choices, the CLI's listing); the layers are
# built, and torch imported, only when a network is.


def _nn():
    from torch import nn

    return nn


def _layers():
    from cifar_app.core import layers

    return layers


Make = Callable[[int, int, tuple[int, int]], "nn.Module"]  # (channels, groups, (H, W)) -> layer


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
    return _nn().GroupNorm(groups, channels)


REGISTRY: dict[str, Norm] = {n.name: n for n in (
    Norm("batch", "BatchNorm", "BN", "#1f77b4", lambda c, g, hw: _nn().BatchNorm2d(c),
         "each channel over the batch and the image (N, H, W)", batch_statistics=True,
         reference="Ioffe & Szegedy 2015"),
    Norm("group", "GroupNorm", "GN", "#2ca02c", _group,
         "each image's group of C/G channels (C/G, H, W)", uses_groups=True, reference="Wu & He 2018"),
    Norm("layer", "LayerNorm", "LN", "#d62728", lambda c, g, hw: _nn().GroupNorm(1, c),
         "each image's whole activation (C, H, W), per-channel affine", reference="Ba et al. 2016"),
    Norm("none", "no norm", "none", "#7f7f7f", lambda c, g, hw: _nn().Identity(), "nothing"),
    # InstanceNorm leaves every channel with mean β over (H, W), so right before global average
    # pooling it would hand the classifier the same constant for every image (measured: a 20-epoch
    # run stayed at chance, loss ln 10). The block feeding GAP (C9) therefore uses LayerNorm.
    Norm("instance", "InstanceNorm (LN in C9)", "IN", "#9467bd",
         lambda c, g, hw: _nn().InstanceNorm2d(c, affine=True),
         "each image's single channel (H, W); C9, before the pooling: (C, H, W)",
         reference="Ulyanov et al. 2016", make_last=lambda c, g, hw: _nn().GroupNorm(1, c)),
    Norm("ws-group", "WS + GroupNorm", "WS+GN", "#98df8a", _group,
         "as GroupNorm, after a weight-standardized conv", uses_groups=True, weight_standardized=True,
         reference="Qiao et al. 2019"),
    Norm("batch-renorm", "Batch Renorm", "BRN", "#aec7e8", lambda c, g, hw: _layers().BatchRenorm2d(c),
         "as BatchNorm, corrected towards the running statistics", batch_statistics=True,
         reference="Ioffe 2017"),
    Norm("layer-chw", "LayerNorm [C,H,W], no affine (seed)", "LN-chw", "#ff9896",
         lambda c, g, hw: _layers().LayerNormCHW(c),
         "each image's whole activation (C, H, W), no affine", reference="the seed's notebook"),
    Norm("layer-chw-affine", "LayerNorm [C,H,W], affine (seed)", "LN-chw-a", "#e377c2",
         lambda c, g, hw: _nn().LayerNorm([c, *hw], elementwise_affine=True),
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
