"""The network's layer plan and its architectures (channel widths, separable blocks), without torch:
the settings validate against them; ``model`` builds the network from them."""

from __future__ import annotations

from dataclasses import dataclass

from cifar_app.core import norms

NORMS = norms.NORMS  # every normalization the lab knows (norms.REGISTRY)
LAYOUT: tuple[str, ...] = (
    "C1", "C2", "c3", "P1", "C3", "C4", "C5", "c6", "P2", "C7", "C8", "C9", "GAP", "c10",
)
CONV_BLOCKS: tuple[str, ...] = tuple(n for n in LAYOUT if n.startswith("C"))  # normalized, probed
PARAM_BUDGET = 50_000


@dataclass(frozen=True)
class Architecture:
    """Channel widths of the conv layers and which C blocks are depthwise-separable."""

    widths: dict[str, int]
    separable: frozenset[str] = frozenset()
    about: str = ""


ARCHITECTURES: dict[str, Architecture] = {
    "plain": Architecture(
        widths={"C1": 16, "C2": 32, "c3": 16, "C3": 24, "C4": 32, "C5": 32, "c6": 16,
                "C7": 32, "C8": 32, "C9": 32},
        about="plain 3×3 convolutions everywhere, the widths of the seed's notebooks",
    ),
    "separable": Architecture(
        widths={"C1": 24, "C2": 48, "c3": 32, "C3": 64, "C4": 64, "C5": 80, "c6": 48,
                "C7": 96, "C8": 96, "C9": 96},
        separable=frozenset({"C2", "C3", "C4", "C5", "C7", "C8", "C9"}),
        about="depthwise-separable C blocks after the stem (3×3 per channel, then 1×1): two to "
              "three times the channels for the same parameters",
    ),
    "separable-b": Architecture(
        widths={"C1": 32, "C2": 48, "c3": 32, "C3": 64, "C4": 64, "C5": 96, "c6": 48,
                "C7": 96, "C8": 96, "C9": 96},
        separable=frozenset({"C2", "C3", "C4", "C5", "C7", "C8", "C9"}),
        about="as separable, with a wider stem and C5, at the edge of the budget",
    ),
}
DEFAULT_ARCH = "separable-b"
