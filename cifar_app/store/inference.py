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
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from cifar_app.core.distill import Teacher
from cifar_app.core.engine import predict_probs
from cifar_app.core.model import CifarNet, build_model
from cifar_app.core.settings import TrainSettings
from cifar_app.store.run import Run

MAX_FILE_BYTES = 20 * 1024 * 1024   # 20 MiB
DRAFTS = ("JPEG", "MPO")            # formats PIL decodes at a reduced scale (MPO: a phone's JPEG
                                    # with more pictures after the first, e.g. a gain map)
MAX_PIXELS = 40_000_000             # width * height
CROP_MAX_ASPECT = 4 / 3
WORK_SIDE = 96                      # pixels kept before the final resample to 32 (3x, as reducing_gap)
PREVIEW_MAX_SIDE = 320              # the Classify page shows it at most ~300 px wide
# PIL holds 4 bytes a pixel while it decodes: 160 MB for a 40-megapixel PNG, which (unlike a JPEG,
# see ``_open``) decodes whole. One such decode at a time in the process, so that several
# visitors' uploads at once cost the server's memory one, not one each.
BIG_DECODE_PIXELS = 4_000_000       # pixels decoded above which a decode waits its turn
_BIG_DECODE = threading.Lock()


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
    """Load ``run``'s final model (weights only: no code is unpickled). ``FileNotFoundError`` before
    training ends; ``RunDamaged`` when model.pt is not a model this app wrote for these settings."""
    from cifar_app.store.formats import MODEL
    from cifar_app.store.run import RunDamaged

    rec = run.load_model_record(map_location=device)
    try:
        return model_from_record(rec, device)
    except (ValueError, RuntimeError, TypeError, KeyError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise RunDamaged(run.id, MODEL, f"does not match its settings ({first[:200]})") from None


def model_from_record(rec: dict, device: str = "cpu") -> LoadedModel:
    """The model a model record (``model.pt``'s contents) describes, in eval mode; ValueError,
    RuntimeError, TypeError or KeyError when the record does not hold one."""
    settings = TrainSettings.from_record(rec["settings"])
    model = build_model(settings.norm, settings.groups, settings.dropout, settings.arch)
    model.load_state_dict(rec["model"])
    mean, std = torch.as_tensor(rec["mean"]).float(), torch.as_tensor(rec["std"]).float()
    if mean.shape != (3,) or std.shape != (3,):
        raise ValueError("mean/std must have shape (3,)")
    classes = tuple(str(c) for c in rec["classes"])
    model.eval()
    return LoadedModel(model.to(device), mean, std, classes, settings)


def teacher_from_records(records: list[dict]) -> Teacher:
    """The ``distill.Teacher`` of model records (``model.pt`` contents, ``engine.model_record``)."""
    loaded = [model_from_record(r) for r in records]
    return Teacher([m.model for m in loaded], [m.mean for m in loaded], [m.std for m in loaded])


def _check_size(n_bytes: int) -> None:
    if n_bytes == 0:
        raise ImageError("the file is empty (0 bytes)")
    if n_bytes > MAX_FILE_BYTES:
        raise ImageError(f"the file is {n_bytes / 2**20:.1f} MiB; the limit is "
                         f"{MAX_FILE_BYTES // 2**20} MiB")


def _open(data: bytes, work_side: int = WORK_SIDE) -> Image.Image:
    """Open ``data`` (first frame), refusing empty, oversized and bomb files; only the header is
    read. A JPEG will be decoded at a reduced scale (``Image.draft``) when that still leaves
    ``work_side`` pixels where the output needs them, so decoding a phone photo costs a fraction of
    its full size. Decode it with ``_load``, inside ``_turn`` (the size it will decode at is known
    by then)."""
    _check_size(len(data))
    with _decoding():
        im = Image.open(io.BytesIO(data))
        if im.width * im.height > MAX_PIXELS:
            raise ImageError(f"the image is {im.width}x{im.height} pixels; the limit is "
                             f"{MAX_PIXELS // 1_000_000} megapixels")
        im.seek(0)  # first frame of an animation
        factor = _reduction(im.size, work_side)
        if factor >= 2 and im.format in DRAFTS:
            im.draft(im.mode, (-(-im.width // factor), -(-im.height // factor)))
    return im


def _turn(*ims: Image.Image):
    """The process's one slot for big decodes (``BIG_DECODE_PIXELS``) when one of ``ims`` (opened,
    drafted, not yet loaded) is one; otherwise no wait. Hold it until the full images are gone."""
    return _BIG_DECODE if max(im.width * im.height for im in ims) > BIG_DECODE_PIXELS else nullcontext()


@contextmanager
def _closing(*ims: Image.Image) -> Iterator[None]:
    """Free the images' pixels on the way out (inside ``_turn``: before the next big decode)."""
    try:
        yield
    finally:
        for im in ims:
            im.close()


def _load(im: Image.Image) -> Image.Image:
    with _decoding():
        im.load()
    return im


@contextmanager
def _decoding() -> Iterator[None]:
    """Turn what PIL raises on a bad file into an ``ImageError`` that says what is wrong."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            yield
    except ImageError:
        raise
    except UnidentifiedImageError:
        raise ImageError("this is not an image file PIL can read (PNG, JPEG, WebP, BMP, GIF, "
                         "TIFF, ...)") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise ImageError(f"the image is too large to decode safely ({e})") from None
    except (OSError, ValueError, SyntaxError, EOFError) as e:
        raise ImageError(f"the image is damaged or truncated ({e})") from None


def _reduction(size: tuple[int, int], work_side: int) -> int:
    """Integer factor by which an image of ``size`` can shrink before the final resample and still
    keep ``work_side`` pixels on the side that maps to the output: the short side for a centre
    crop, the long side for a padded panorama. 1 = no reduction."""
    w, h = size
    side = min(w, h) if max(w, h) <= CROP_MAX_ASPECT * min(w, h) else max(w, h)
    return max(1, side // work_side)


_TRANSPOSE = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180,
              4: Image.Transpose.FLIP_TOP_BOTTOM, 5: Image.Transpose.TRANSPOSE,
              6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
              8: Image.Transpose.ROTATE_90}


def _bounded(im: Image.Image, work_side: int, crop: bool = False) -> Image.Image:
    """EXIF-rotated, and reduced by an integer factor (``Image.reduce``, a box filter) so that all
    later work is bounded by the output size, whatever the input's size or aspect ratio. With
    ``crop`` only the centre square is kept (when reducing), as the final conversion would."""
    try:
        orientation = im.getexif().get(0x0112)
    except (OSError, ValueError, SyntaxError):
        orientation = None
    factor = _reduction(im.size, work_side)
    if factor >= 2:
        if im.mode in ("P", "PA"):
            im = im.convert("RGBA")
        elif im.mode == "1":
            im = im.convert("L")
        elif im.mode.startswith("I;16"):
            im = im.convert("I")
        box = None
        if crop:
            w, h = im.size
            side = min(w, h)
            left, top = (w - side) // 2, (h - side) // 2
            box = (left, top, left + side, top + side)
        im = im.reduce(factor, box=box)
    if orientation in _TRANSPOSE:
        im = im.transpose(_TRANSPOSE[orientation])
    return im


def _to_rgb(im: Image.Image) -> Image.Image:
    """Any PIL mode -> RGB; alpha is composited over white; 16/32-bit are rescaled to 8 bits."""
    if im.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        a = np.asarray(im, dtype=np.float32)
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
    """A decoded PIL image -> uint8 (32, 32, 3) RGB, as the model sees it (see module docstring).

    Work and memory are bounded by the output, not the input: a large image is first reduced by an
    integer factor to about ``WORK_SIDE`` pixels (an image that is already that small is converted
    exactly as before), so a 40000x2 strip costs as little as a thumbnail."""
    crop = max(im.size) <= CROP_MAX_ASPECT * min(im.size)  # decided on the full size: reduce rounds
    im = _to_rgb(_bounded(im, WORK_SIDE, crop))
    w, h = im.size
    if crop:
        im = ImageOps.fit(im, (min(w, h),) * 2, Image.Resampling.BICUBIC)  # centre square crop
    else:
        a = np.asarray(im)
        edge = np.concatenate([a[0], a[-1], a[:, 0], a[:, -1]]).mean(axis=0).astype(np.uint8)
        im = ImageOps.pad(im, (max(w, h),) * 2, color=tuple(int(c) for c in edge))
    im = im.resize((32, 32), Image.Resampling.LANCZOS, reducing_gap=3.0)
    return np.asarray(im, dtype=np.uint8)


def _read(source: bytes | str | Path) -> bytes:
    if isinstance(source, (str, Path)):
        path = Path(source)
        try:
            _check_size(path.stat().st_size)
            return path.read_bytes()
        except OSError as e:
            raise ImageError(f"cannot read {path}: {e.strerror or e}") from None
    return bytes(source)


def decode_image(source: bytes | str | Path) -> np.ndarray:
    """Bytes or a file path -> uint8 (32, 32, 3). Raises ``ImageError`` for anything unusable."""
    im = _open(_read(source))
    with _turn(im), _closing(im):
        return _model_input(_load(im))


def _model_input(im: Image.Image) -> np.ndarray:
    try:
        return to_cifar_image(im)
    except (OSError, ValueError) as e:
        raise ImageError(f"the image could not be converted ({e})") from None


def preview_image(source: bytes | str | Path, max_side: int = PREVIEW_MAX_SIDE,
                  min_side: int = 160) -> np.ndarray:
    """An image for display: uint8 (H, W, 3) RGB, EXIF-rotated, with its long side at most
    ``max_side`` pixels; a small one is upscaled pixel-crisp (nearest neighbour, integer factor)
    towards ``min_side`` without passing ``max_side``. Bounded like ``decode_image``."""
    im = _open(_read(source), work_side=max_side)
    with _turn(im), _closing(im):
        return _preview(_load(im), max_side, min_side)


def _preview(im: Image.Image, max_side: int, min_side: int = 160) -> np.ndarray:
    try:
        im = _to_rgb(_bounded(im, max_side))
        if max(im.size) > max_side:
            im.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    except (OSError, ValueError) as e:
        raise ImageError(f"the image could not be converted ({e})") from None
    arr = np.asarray(im, dtype=np.uint8)
    h, w = arr.shape[:2]
    factor = min(-(-min_side // max(1, min(h, w))), max_side // max(h, w))
    return np.repeat(np.repeat(arr, factor, axis=0), factor, axis=1) if factor > 1 else arr


def decode_upload(source: bytes | str | Path, max_side: int = PREVIEW_MAX_SIDE
                  ) -> tuple[np.ndarray, np.ndarray]:
    """(model input, preview) of one upload, exactly as ``decode_image`` and ``preview_image`` give
    them, decoding the file once when both would decode it at the same scale: always for PNG, WebP,
    ...; for a JPEG when both drafts pick the same reduced scale (a photo of 12 MP and more, for the
    default preview size). Otherwise the JPEG is decoded twice, each at its own reduced scale."""
    data = _read(source)
    shown = _open(data, work_side=max_side)
    own = _open(data)  # the scale decode_image decodes at (headers only so far)
    with _turn(shown, own), _closing(shown, own):
        _load(shown)
        return _model_input(shown if own.size == shown.size else _load(own)), _preview(shown, max_side)


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
