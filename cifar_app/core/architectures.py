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

# Trainable parameters of the network for each architecture and normalization, as
# ``model.count_parameters(model.build_model(norm, groups, 0.0, arch))`` counts them (the same for
# every valid ``groups``). Written out so that validating a stored run's settings, as listing runs
# does, needs no torch; ``tests/test_model.py`` rebuilds each with torch and prints the table to
# paste when an entry is missing or differs (a pair not here is counted with torch).
PARAMS: dict[tuple[str, str], int] = {
    ("plain", "batch"): 49482, ("plain", "group"): 49482, ("plain", "layer"): 49482,
    ("plain", "none"): 49250, ("plain", "instance"): 49482, ("plain", "ws-group"): 49482,
    ("plain", "batch-renorm"): 49482, ("plain", "layer-chw"): 49018,
    ("plain", "layer-chw-affine"): 204666,
    ("separable", "batch"): 47402, ("separable", "group"): 47402, ("separable", "layer"): 47402,
    ("separable", "none"): 46834, ("separable", "instance"): 47402, ("separable", "ws-group"): 47402,
    ("separable", "batch-renorm"): 47402, ("separable", "layer-chw"): 46266,
    ("separable", "layer-chw-affine"): 337082,
    ("separable-b", "batch"): 49914, ("separable-b", "group"): 49914, ("separable-b", "layer"): 49914,
    ("separable-b", "none"): 49322, ("separable-b", "instance"): 49914, ("separable-b", "ws-group"): 49914,
    ("separable-b", "batch-renorm"): 49914, ("separable-b", "layer-chw"): 48730,
    ("separable-b", "layer-chw-affine"): 364122,
}
