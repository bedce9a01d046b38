"""Classify any image a user may bring with a trained run.

Decoding is defensive: a size cap on the bytes, a pixel cap against decompression bombs, EXIF
orientation applied, the first frame of animations, every mode (RGBA, LA, P, 16-bit, CMYK, ...)
converted to RGB (transparent areas over white). Then the image becomes 32x32 the way that keeps
most of the object: when its aspect ratio is within 4:3 it is centre-cropped to a square (the object
fills the frame, as in CIFAR-10); a longer panorama is padded to a square with its own edge colour
instead, so nothing of the object is cut off. Downscaling uses Lanczos with antialiasing.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from .engine import predict_probs
from .model import CifarNet, build_model
from .runstore import Run
from .settings import TrainSettings

MAX_FILE_BYTES = 20 * 1024 * 1024   # 20 MiB
MAX_PIXELS = 40_000_000             # width * height
CROP_MAX_ASPECT = 4 / 3


class ImageError(ValueError):
    """The input is not a usable image; the message says why in plain words."""


@dataclass
class LoadedModel:
    """A trained network ready for inference, with what it needs to preprocess inputs."""

    model: CifarNet
    mean: torch.Tensor  # (3,)
    std: torch.Tensor   # (3,)
    classes: tuple[str, ...]
    settings: TrainSettings


@dataclass
class Prediction:
    """Top-k classes for one image. ``probs``: float32 (10,); ``image32``: uint8 (32, 32, 3)."""

    top_k: list[tuple[str, float]]
    probs: np.ndarray
    image32: np.ndarray


def load_model(run: Run, device: str = "cpu") -> LoadedModel:
    """Load ``run``'s final model (``model.pt``, weights only: no code is unpickled)."""
    if not run.model_path.exists():
        raise FileNotFoundError(f"run {run.id} has no trained model yet (state: "
                                f"{run.status().get('state', 'unknown')})")
    rec = torch.load(run.model_path, map_location=device, weights_only=True)
    settings = TrainSettings.from_dict(rec["settings"])
    model = build_model(settings.norm, settings.groups, settings.dropout, settings.arch)
    model.load_state_dict(rec["model"])
    model.eval()
    return LoadedModel(model.to(device), rec["mean"], rec["std"], tuple(rec["classes"]), settings)


def _open(data: bytes) -> Image.Image:
    if len(data) == 0:
        raise ImageError("the file is empty (0 bytes)")
    if len(data) > MAX_FILE_BYTES:
        raise ImageError(f"the file is {len(data) / 2**20:.1f} MiB; the limit is "
                         f"{MAX_FILE_BYTES // 2**20} MiB")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            im = Image.open(io.BytesIO(data))
            if im.width * im.height > MAX_PIXELS:
                raise ImageError(f"the image is {im.width}x{im.height} pixels; the limit is "
                                 f"{MAX_PIXELS // 1_000_000} megapixels")
            im.seek(0)  # first frame of an animation
            im.load()
    except ImageError:
        raise
    except UnidentifiedImageError:
        raise ImageError("this is not an image file PIL can read (PNG, JPEG, WebP, BMP, GIF, "
                         "TIFF, ...)") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise ImageError(f"the image is too large to decode safely ({e})") from None
    except (OSError, ValueError, SyntaxError, EOFError) as e:
        raise ImageError(f"the image is damaged or truncated ({e})") from None
    return im


def _to_rgb(im: Image.Image) -> Image.Image:
    """Any PIL mode -> RGB; alpha is composited over white; 16/32-bit are rescaled to 8 bits."""
    if im.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        a = np.asarray(im, dtype=np.float64)
        lo, hi = float(a.min()), float(a.max())
        a = (a - lo) / (hi - lo) * 255 if hi > lo else np.zeros_like(a)
        im = Image.fromarray(a.astype(np.uint8), "L")
    if im.mode == "P":
        im = im.convert("RGBA")
    if im.mode in ("RGBA", "LA", "PA", "La", "RGBa"):
        im = im.convert("RGBA")
        background = Image.new("RGBA", im.size, (255, 255, 255, 255))
        im = Image.alpha_composite(background, im)
    return im.convert("RGB")


def to_cifar_image(im: Image.Image) -> np.ndarray:
    """A decoded PIL image -> uint8 (32, 32, 3) RGB, as the model sees it (see module docstring)."""
    im = _to_rgb(ImageOps.exif_transpose(im) or im)
    w, h = im.size
    if max(w, h) <= CROP_MAX_ASPECT * min(w, h):
        im = ImageOps.fit(im, (min(w, h),) * 2, Image.Resampling.BICUBIC)  # centre square crop
    else:
        a = np.asarray(im)
        edge = np.concatenate([a[0], a[-1], a[:, 0], a[:, -1]]).mean(axis=0).astype(np.uint8)
        im = ImageOps.pad(im, (max(w, h),) * 2, color=tuple(int(c) for c in edge))
    im = im.resize((32, 32), Image.Resampling.LANCZOS, reducing_gap=3.0)
    return np.asarray(im, dtype=np.uint8)


def decode_image(source: bytes | str | Path) -> np.ndarray:
    """Bytes or a file path -> uint8 (32, 32, 3). Raises ``ImageError`` for anything unusable."""
    if isinstance(source, (str, Path)):
        path = Path(source)
        try:
            size = path.stat().st_size
        except OSError as e:
            raise ImageError(f"cannot read {path}: {e.strerror or e}") from None
        if size > MAX_FILE_BYTES:
            raise ImageError(f"the file is {size / 2**20:.1f} MiB; the limit is "
                             f"{MAX_FILE_BYTES // 2**20} MiB")
        try:
            source = path.read_bytes()
        except OSError as e:
            raise ImageError(f"cannot read {path}: {e.strerror or e}") from None
    im = _open(bytes(source))
    try:
        return to_cifar_image(im)
    except (OSError, ValueError) as e:
        raise ImageError(f"the image could not be converted ({e})") from None


ImageSource = bytes | str | Path | np.ndarray


def _as_loaded(model: LoadedModel | Run) -> LoadedModel:
    return model if isinstance(model, LoadedModel) else load_model(model)


def classify(images: list[ImageSource], model: LoadedModel | Run, top_k: int = 5) -> list[Prediction]:
    """Top-k classes for each image: file bytes, a path, or an already decoded uint8 (32, 32, 3).

    Raises ``ImageError`` (naming the item) if any image is unusable; see ``classify_each`` to get
    a result or an error per image instead.
    """
    arrays = []
    for i, src in enumerate(images):
        try:
            arrays.append(src if isinstance(src, np.ndarray) else decode_image(src))
        except ImageError as e:
            raise ImageError(f"image {i + 1}: {e}") from None
    if not arrays:
        return []
    loaded = _as_loaded(model)
    x = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()
    device = next(loaded.model.parameters()).device
    probs = predict_probs(loaded.model, x, loaded.mean, loaded.std, device).numpy()
    k = max(1, min(top_k, probs.shape[1]))
    out = []
    for img, p in zip(arrays, probs):
        order = np.argsort(-p)[:k]
        out.append(Prediction([(loaded.classes[i], float(p[i])) for i in order], p, img))
    return out


def classify_each(images: list[ImageSource], model: LoadedModel | Run,
                  top_k: int = 5) -> list[Prediction | ImageError]:
    """Like ``classify``, but a bad image yields its ``ImageError`` and the others still get results."""
    decoded: list[np.ndarray | ImageError] = []
    for src in images:
        try:
            decoded.append(src if isinstance(src, np.ndarray) else decode_image(src))
        except ImageError as e:
            decoded.append(e)
    good = [d for d in decoded if isinstance(d, np.ndarray)]
    results = iter(classify(good, model, top_k) if good else [])
    return [next(results) if isinstance(d, np.ndarray) else d for d in decoded]
