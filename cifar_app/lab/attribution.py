"""Where the model looks: Grad-CAM and Integrated Gradients with captum, always in eval mode with
the model's own preprocessing.

Grad-CAM weights a layer's feature maps by their gradient. On the last stage (C7-C9) of a 32x32
input those maps are 8x8, so the heatmap is an 8x8 grid upsampled to 32x32 — coarse by
construction. Integrated Gradients attributes to each input pixel (32x32), summed over channels.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from cifar_app.core.engine import normalize
from cifar_app.core.model import CONV_BLOCKS
from cifar_app.store.inference import LoadedModel

GRADCAM_LAYERS = tuple(reversed(CONV_BLOCKS))  # the last block first: its map is what the head sees


def _input(loaded: LoadedModel, image32: np.ndarray) -> torch.Tensor:
    x = torch.as_tensor(np.ascontiguousarray(image32)).permute(2, 0, 1)[None]
    return normalize(x, loaded.mean, loaded.std)


def _unit(a: torch.Tensor) -> np.ndarray:
    a = a.detach().float()
    hi = float(a.max())
    return (a / hi).clamp(0, 1).numpy() if hi > 0 else np.zeros(a.shape, np.float32)


def gradcam(loaded: LoadedModel, image32: np.ndarray, target: int, layer: str = "C9") -> np.ndarray:
    """Grad-CAM of class ``target`` at C block ``layer``: float32 (32, 32) in [0, 1] (1 = most
    evidence for the class), upsampled bilinearly from the layer's own resolution."""
    from captum.attr import LayerAttribution, LayerGradCam

    model = loaded.model.eval()
    cam = LayerGradCam(model, model.layers[layer])
    attr = cam.attribute(_input(loaded, image32), target=int(target), relu_attributions=True)
    up = LayerAttribution.interpolate(attr, (32, 32), interpolate_mode="bilinear")
    return _unit(up[0, 0])


def layer_resolution(loaded: LoadedModel, layer: str) -> int:
    """Side of the feature maps of ``layer`` for a 32x32 input (32, 16 or 8)."""
    with torch.no_grad():
        x = torch.zeros(1, 3, 32, 32)
        for name, block in loaded.model.layers.items():
            x = block(x)
            if name == layer:
                return int(x.shape[-1])
    raise KeyError(layer)


def integrated_gradients(loaded: LoadedModel, image32: np.ndarray, target: int,
                         steps: int = 32) -> np.ndarray:
    """Integrated Gradients of class ``target`` from a black (all-zero pixels) baseline: the
    absolute attribution summed over channels, float32 (32, 32) in [0, 1]."""
    from captum.attr import IntegratedGradients

    model = loaded.model.eval()
    x = _input(loaded, image32)
    baseline = _input(loaded, np.zeros_like(image32))
    attr = IntegratedGradients(model).attribute(x, baselines=baseline, target=int(target), n_steps=steps)
    return _unit(attr[0].abs().sum(0))


def overlay(image32: np.ndarray, heat: np.ndarray, size: int = 160, alpha: float = 0.55) -> np.ndarray:
    """The image upscaled pixel-crisp to ``size`` with ``heat`` (32, 32) in [0, 1] on top as a
    transparent-to-red-to-yellow map: uint8 (size, size, 3)."""
    base = np.asarray(Image.fromarray(image32).resize((size, size), Image.Resampling.NEAREST), np.float32)
    h = np.asarray(Image.fromarray((heat * 255).astype(np.uint8)).resize((size, size),
                                                                          Image.Resampling.BILINEAR),
                   np.float32)[..., None] / 255
    color = np.concatenate([np.ones_like(h), h, np.zeros_like(h)], axis=2) * 255  # red -> yellow
    weight = alpha * h
    return (base * (1 - weight) + color * weight).clip(0, 255).astype(np.uint8)
