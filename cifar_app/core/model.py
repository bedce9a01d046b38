"""The seed's network, ``C1 C2 c3 P1 C3 C4 C5 c6 P2 C7 C8 C9 GAP c10``, with a choice of normalization.

C  = 3x3 convolution block: conv (plain, or depthwise-separable: 3x3 depthwise then 1x1 pointwise),
     ReLU, normalization, dropout.
c  = 1x1 transition convolution (no activation: a linear bottleneck).
P  = 2x2 max-pool.  GAP = global average pool.  c10 = 1x1 convolution to the 10 class logits.

Input: float tensor (N, 3, 32, 32), normalized by the training set's mean/std.
Output: logits (N, 10).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch
from torch import nn

from cifar_app.core import layers, norms
from cifar_app.core.architectures import (  # noqa: F401  (re-exported: the model's plan)
    ARCHITECTURES,
    CONV_BLOCKS,
    DEFAULT_ARCH,
    LAYOUT,
    NORMS,
    PARAM_BUDGET,
    Architecture,
)


def make_norm(norm: str, channels: int, groups: int = 4, hw: tuple[int, int] = (32, 32),
              last: bool = False) -> nn.Module:
    """The normalization layer ``norm`` (an entry of ``norms.REGISTRY``) for a (N, C, H, W)
    activation of ``channels`` channels and spatial size ``hw``; ``last``: the block that feeds
    global average pooling (an entry may use another layer there, see ``Norm.make_last``)."""
    entry = norms.get(norm)
    make = entry.make_last if last and entry.make_last is not None else entry.make
    return make(channels, groups, hw)


class ConvBlock(nn.Sequential):
    """C block: 3x3 conv (padding 1, keeps H, W), ReLU, normalization, dropout."""

    def __init__(self, cin: int, cout: int, norm: str, groups: int, dropout: float,
                 separable: bool = False, hw: tuple[int, int] = (32, 32), last: bool = False) -> None:
        bias = norm == "none"  # a following norm layer makes a conv bias redundant
        conv_cls = layers.WSConv2d if norms.get(norm).weight_standardized else nn.Conv2d
        if separable:
            conv: nn.Module = nn.Sequential(
                conv_cls(cin, cin, 3, padding=1, groups=cin, bias=False),
                conv_cls(cin, cout, 1, bias=bias),
            )
        else:
            conv = conv_cls(cin, cout, 3, padding=1, bias=bias)
        parts = [conv, nn.ReLU(inplace=True), make_norm(norm, cout, groups, hw, last)]
        if dropout > 0:
            parts.append(nn.Dropout2d(dropout))
        super().__init__(*parts)

    @property
    def conv(self) -> nn.Module:
        """The block's convolution (a Conv2d, or the depthwise + pointwise pair)."""
        return self[0]

    @property
    def norm_layer(self) -> nn.Module:
        """The block's normalization layer."""
        return self[2]


class CifarNet(nn.Module):
    """The seed's CIFAR-10 network.

    Args:
        norm: one of ``NORMS``.
        groups: number of groups for ``norm="group"``; must divide every block's width.
        dropout: channel dropout probability after each C block.
        arch: a key of ``ARCHITECTURES``.
        num_classes: number of output logits.
    """

    def __init__(self, norm: str = "batch", groups: int = 4, dropout: float = 0.0,
                 arch: str = DEFAULT_ARCH, num_classes: int = 10) -> None:
        super().__init__()
        norms.get(norm)  # ValueError naming the known ones
        if arch not in ARCHITECTURES:
            raise ValueError(f"arch must be one of {', '.join(ARCHITECTURES)}, got {arch!r}")
        spec = ARCHITECTURES[arch]
        self.norm, self.groups, self.arch = norm, groups, arch
        cin, side = 3, 32
        layers: dict[str, nn.Module] = {}
        for name in LAYOUT:
            if name.startswith("C"):
                cout = spec.widths[name]
                layers[name] = ConvBlock(cin, cout, norm, groups, dropout, name in spec.separable,
                                         hw=(side, side), last=name == CONV_BLOCKS[-1])
                cin = cout
            elif name == "c10":
                layers[name] = nn.Conv2d(cin, num_classes, 1)
            elif name.startswith("c"):
                cout = spec.widths[name]
                layers[name] = nn.Conv2d(cin, cout, 1, bias=False)
                cin = cout
            elif name.startswith("P"):
                layers[name] = nn.MaxPool2d(2)
                side //= 2
            else:  # GAP
                layers[name] = nn.AdaptiveAvgPool2d(1)
        self.layers = nn.ModuleDict(layers)
        self._init_weights()

    def _init_weights(self) -> None:
        """He init for convs followed by ReLU, variance-preserving init for the linear 1x1
        transitions, and a zero classifier so training starts at loss ln(10) whatever the norm."""
        for name, layer in self.layers.items():
            for m in layer.modules():
                if isinstance(m, nn.Conv2d):
                    if name.startswith("C"):
                        nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
                    else:
                        nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="linear")
                    if m.bias is not None:
                        nn.init.zeros_(m.bias)
        nn.init.zeros_(self.layers["c10"].weight)

    def dirac_init(self) -> None:
        """airbench's dirac initialisation: every C block's convolution starts as the identity on
        as many of its output channels as it has inputs (the rest keep their random start); a
        depthwise convolution starts as the identity on every channel."""
        with torch.no_grad():
            for block in self.blocks().values():
                for conv in (m for m in block.conv.modules() if isinstance(m, nn.Conv2d)):
                    if conv.groups > 1:  # depthwise: one 3x3 filter per channel
                        nn.init.dirac_(conv.weight, groups=conv.groups)
                    else:
                        nn.init.dirac_(conv.weight[:conv.in_channels])

    def whiten_stem(self, x: torch.Tensor, frozen: bool = False) -> None:
        """Set C1's convolution to patch-whitening filters of the images ``x`` (``patch_whitening``;
        airbench's first layer); ``frozen``: C1's convolution then stays as it is (no gradient)."""
        conv = self.blocks()["C1"].conv
        if not isinstance(conv, nn.Conv2d) or conv.kernel_size != (3, 3):
            raise ValueError("patch whitening needs C1 to be a plain 3x3 convolution")
        with torch.no_grad():
            conv.weight.copy_(patch_whitening(x, conv.out_channels).to(conv.weight))
        conv.weight.requires_grad_(not frozen)

    def blocks(self) -> dict[str, ConvBlock]:
        """The C blocks by name, in order."""
        return {name: layer for name, layer in self.layers.items() if isinstance(layer, ConvBlock)}

    def norm_layers(self) -> dict[str, nn.Module]:
        """Each C block's normalization layer, by the block's name."""
        return {name: block.norm_layer for name, block in self.blocks().items()}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 3, 32, 32) float -> (N, num_classes) logits."""
        for layer in self.layers.values():
            x = layer(x)
        return x.flatten(1)


def patch_whitening(x: torch.Tensor, out_channels: int, eps: float = 5e-4) -> torch.Tensor:
    """3x3 filters (out_channels, C, 3, 3) that whiten the 3x3 patches of the images ``x`` (N, C, H,
    W, standardized floats) along their ``out_channels / 2`` directions of largest variance: each
    filter is an eigenvector of the patch covariance divided by the square root of its eigenvalue
    (+ eps), and comes with its negative, so the ReLU after the convolution keeps both signs
    (Jordan 2024, airbench). On the same patches, the outputs of one sign have unit variance and
    are uncorrelated."""
    if out_channels % 2:
        raise ValueError(f"patch whitening makes filters in +/- pairs: {out_channels} channels is odd")
    c, dim = x.shape[1], x.shape[1] * 9
    if out_channels // 2 > dim:
        raise ValueError(f"{out_channels // 2} directions asked of {dim}-dimensional patches")
    # the covariance from sums over chunks of images: all 3x3 patches of 5,000 images at once would
    # take about 1 GB in float64
    total, outer, n = torch.zeros(dim, dtype=torch.float64), torch.zeros(dim, dim, dtype=torch.float64), 0
    for chunk in x.split(256):
        patches = torch.nn.functional.unfold(chunk.double(), 3).transpose(1, 2).reshape(-1, dim)
        total += patches.sum(0)
        outer += patches.T @ patches
        n += len(patches)
    cov = (outer - torch.outer(total, total) / n) / (n - 1)
    values, vectors = torch.linalg.eigh(cov)  # ascending
    k = out_channels // 2
    top = vectors[:, -k:].flip(1).T / (values[-k:].flip(0) + eps).sqrt()[:, None]
    filters = torch.cat([top, -top]).reshape(out_channels, c, 3, 3)
    return filters.float()


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


@dataclass(frozen=True)
class LayerRow:
    """One row of the model summary."""

    name: str
    kind: str
    output_shape: tuple[int, int, int]  # (C, H, W)
    params: int
    receptive_field: int  # pixels, side of the square input region one output sees


def _describe(name: str, module: nn.Module) -> str:
    if isinstance(module, ConvBlock):
        sep = isinstance(module.conv, nn.Sequential)
        layer = module.norm_layer
        norm = type(layer).__name__
        if isinstance(layer, nn.GroupNorm):
            norm = f"GroupNorm({layer.num_groups})"
        elif isinstance(layer, nn.LayerNorm):
            affine = "" if layer.elementwise_affine else ", no affine"
            norm = f"LayerNorm({list(layer.normalized_shape)}{affine})"
        ws = any(isinstance(m, layers.WSConv2d) for m in module.conv.modules())
        conv = ("3x3 dw-sep conv" if sep else "3x3 conv") + (" (WS)" if ws else "")
        return f"{conv}, ReLU, {norm}"
    return {"c": "1x1 conv", "P": "2x2 max-pool", "G": "global avg pool"}[name[0]]


def summarize(model: CifarNet, input_size: int = 32) -> list[LayerRow]:
    """One row per layer of ``LAYOUT`` with output shape, parameters and receptive field."""
    rows: list[LayerRow] = []
    rf, jump = 1, 1
    x = torch.zeros(1, 3, input_size, input_size)
    model_was_training = model.training
    model.eval()
    with torch.no_grad():
        for name, layer in model.layers.items():
            x = layer(x)
            if name.startswith("C"):
                rf += 2 * jump
            elif name.startswith("P"):
                rf += jump
                jump *= 2
            elif name == "GAP":
                rf += (input_size // jump - 1) * jump
            rows.append(LayerRow(name, _describe(name, layer), tuple(x.shape[1:]),
                                 count_parameters(layer), rf))
    model.train(model_was_training)
    return rows


@functools.lru_cache(maxsize=32)
def norm_budget_rows(groups: int = 4, arch: str = DEFAULT_ARCH) -> list[dict]:
    """One row per normalization (``norms.REGISTRY``): what it averages over, the parameters of its
    norm layers and of the whole network, and whether that fits ``PARAM_BUDGET``. Built once per
    (groups, arch): the list is shared, do not modify it."""
    rows = []
    for n in norms.REGISTRY.values():
        model = build_model(n.name, groups if n.uses_groups else 4, arch=arch)
        total = count_parameters(model)
        in_norms = sum(count_parameters(layer) for layer in model.norm_layers().values())
        rows.append({"normalization": n.label, "one mean / variance covers": n.averages_over,
                     "parameters in the norm layers": in_norms, "network": total,
                     "fits the budget": total <= PARAM_BUDGET, "from": n.reference})
    return rows


def build_model(norm: str = "batch", groups: int = 4, dropout: float = 0.0,
                arch: str = DEFAULT_ARCH) -> CifarNet:
    """Convenience constructor, same arguments as ``CifarNet``."""
    return CifarNet(norm=norm, groups=groups, dropout=dropout, arch=arch)
