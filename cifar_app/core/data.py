"""CIFAR-10 as in-memory uint8 tensors.

Sources, tried in this order under the data directory ``root``:

1. torchvision's CIFAR-10 folder ``root/cifar-10-batches-py``;
2. an image-folder tree ``root/train/<class>/*`` and ``root/test/<class>/*`` (PNG, JPEG, ...; any size
   or mode is converted to 32x32 RGB). It may also sit one folder down (``root/<name>/train``).
   Decoded trees are cached in one ``.npz`` (next to the tree when writable, else in the user cache)
   keyed by the file names, sizes and modification times, so a second load takes about a second;
3. when ``download=True``: torchvision downloads CIFAR-10 into ``root``.

Image-folder trees are stored in a fixed pseudo-random order (seed 0), so the first N images of either
split are a representative sample of all classes, as in the official batches.

``train=False`` loads the test split alone (the training split is then empty): what the dashboard's
server shows and evaluates on, without the training split's 150 MB (the processes that train or
measure load their own).

``root`` defaults to ``$CIFAR_APP_DATA``, else ``./data``.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # numpy and torch are imported where used: the CLI lists runs without them
    import numpy as np
    import torch

CLASSES: tuple[str, ...] = (
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
)
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".gif", ".tif", ".tiff")
CACHE_NAME = ".cifar_app_cache.npz"
CACHE_VERSION = 1


class DataError(RuntimeError):
    """CIFAR-10 could not be loaded; the message says what was looked for and how to fix it."""


@dataclass
class CifarData:
    """The two splits as tensors.

    train_x: uint8 (N, 3, 32, 32); train_y: int64 (N,); test_x / test_y likewise. N is 0 for the
    training split when it was not loaded (``load_cifar10(train=False)``).
    """

    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    classes: tuple[str, ...]
    source: str  # human-readable: what was loaded from where
    test_names: tuple[str, ...] | None = None  # file of each test image ("cat/0001.jpg"), folders only

    def limit(self, train_limit: int | None = None, test_limit: int | None = None) -> CifarData:
        """The first ``train_limit`` / ``test_limit`` images of each split (None keeps all)."""
        return CifarData(self.train_x[:train_limit], self.train_y[:train_limit],
                         self.test_x[:test_limit], self.test_y[:test_limit],
                         self.classes, self.source,
                         None if self.test_names is None else self.test_names[:test_limit])

    @property
    def test_fingerprint(self) -> str:
        """Short hash of the test split (labels and pixels), to match stored predictions to data."""
        h = hashlib.sha1(self.test_y.numpy().tobytes())
        h.update(self.test_x[:, :, ::4, ::4].numpy().tobytes())
        return h.hexdigest()[:16]


def default_data_dir() -> Path:
    """``$CIFAR_APP_DATA`` if set, else ``./data``."""
    return Path(os.environ.get("CIFAR_APP_DATA") or "data")


def _fix_hint(root: Path) -> str:
    return (f"To fix: unpack CIFAR-10 into {root} (torchvision's 'cifar-10-batches-py' folder, or "
            "image folders train/<class>/ and test/<class>/), point CIFAR_APP_DATA or --data at "
            "such a folder, or go online and allow the download (--download, or the dashboard's "
            "'Download CIFAR-10' button).")


# ---------------------------------------------------------------- torchvision's pickled batches


def _load_torchvision(root: Path, train_split: bool = True) -> CifarData:
    from torchvision.datasets import CIFAR10

    try:
        train = CIFAR10(str(root), train=True, download=False) if train_split else None
        test = CIFAR10(str(root), train=False, download=False)
    except (RuntimeError, OSError, pickle.UnpicklingError, EOFError, ValueError) as e:
        raise DataError(f"{root / 'cifar-10-batches-py'} exists but could not be read ({e}). "
                        "Delete it and download again. " + _fix_hint(root)) from e

    def as_tensors(ds: CIFAR10 | None) -> tuple[torch.Tensor, torch.Tensor]:
        if ds is None:
            return _no_images()
        import numpy as np
        import torch

        x = torch.from_numpy(np.ascontiguousarray(ds.data.transpose(0, 3, 1, 2)))
        return x, torch.tensor(ds.targets, dtype=torch.int64)

    return CifarData(*as_tensors(train), *as_tensors(test), CLASSES,
                     f"torchvision CIFAR-10 batches in {root / 'cifar-10-batches-py'}"
                     + ("" if train_split else " (test split only)"))


def _no_images() -> tuple[torch.Tensor, torch.Tensor]:
    """An empty split: (0, 3, 32, 32) uint8 images, (0,) int64 labels."""
    import torch

    return torch.empty((0, 3, 32, 32), dtype=torch.uint8), torch.empty(0, dtype=torch.int64)


def download_cifar10(root: Path | str | None = None) -> Path:
    """Download CIFAR-10 with torchvision into ``root`` (shows a progress bar); returns ``root``."""
    from torchvision.datasets import CIFAR10

    root = Path(root) if root is not None else default_data_dir()
    try:
        root.mkdir(parents=True, exist_ok=True)
        CIFAR10(str(root), train=True, download=True)
        CIFAR10(str(root), train=False, download=True)
    except Exception as e:  # noqa: BLE001 - any network or disk failure becomes one clear error
        raise DataError(f"Downloading CIFAR-10 into {root} failed: {type(e).__name__}: {e}. "
                        "This machine may be offline. " + _fix_hint(root)) from e
    return root


# ---------------------------------------------------------------- image-folder trees


def _find_tree(root: Path) -> Path | None:
    """``root`` or its single child that holds ``train/`` and ``test/``."""
    if (root / "train").is_dir() and (root / "test").is_dir():
        return root
    if root.is_dir():
        for child in sorted(p for p in root.iterdir() if p.is_dir()):
            if (child / "train").is_dir() and (child / "test").is_dir():
                return child
    return None


def _list_split(split_dir: Path) -> list[tuple[str, int, int, int]]:
    """(relative path, label, size, mtime_ns) for every image, classes in CIFAR-10 order."""
    found = sorted(p.name for p in split_dir.iterdir() if p.is_dir())
    if sorted(CLASSES) != found:
        raise DataError(f"{split_dir} must hold exactly the 10 CIFAR-10 class folders "
                        f"({', '.join(CLASSES)}); found: {', '.join(found) or 'none'}.")
    files = []
    for label, name in enumerate(CLASSES):
        with os.scandir(split_dir / name) as it:
            entries = sorted((e for e in it if e.name.lower().endswith(IMAGE_EXTENSIONS)),
                             key=lambda e: e.name)
        if not entries:
            raise DataError(f"{split_dir / name} holds no images ({', '.join(IMAGE_EXTENSIONS)}).")
        for e in entries:
            st = e.stat()
            files.append((f"{name}/{e.name}", label, st.st_size, st.st_mtime_ns))
    return files


def _decode(path: Path) -> np.ndarray:
    """One image file -> uint8 (32, 32, 3)."""
    import numpy as np
    from PIL import Image

    try:
        with Image.open(path) as im:
            im = im.convert("RGB")
            if im.size != (32, 32):
                im = im.resize((32, 32), Image.Resampling.BICUBIC, reducing_gap=3.0)
            return np.asarray(im, dtype=np.uint8)
    except (OSError, ValueError, Image.DecompressionBombError) as e:
        raise DataError(f"Cannot decode {path}: {e}. Replace or remove the file.") from e


def _cache_paths(tree: Path, key: str) -> list[Path]:
    user_cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "cifar_app"
    return [tree / CACHE_NAME, user_cache / f"{key}.npz"]


Progress = Callable[[int, int], None]  # (images done, images in all)
def _test_names(files: list[tuple[str, int, int, int]]) -> tuple[str, ...]:
    """The test images' files in the order they are stored (see the module docstring)."""
    import numpy as np

    return tuple(files[i][0] for i in np.random.default_rng(0).permutation(len(files)))


def _load_image_tree(tree: Path, progress: Progress | None = None, train_split: bool = True) -> CifarData:
    import numpy as np
    import torch

    listings = {split: _list_split(tree / split) for split in ("train", "test")}
    digest = hashlib.sha1(f"v{CACHE_VERSION}:{tree.resolve()}".encode())
    for split, files in listings.items():
        digest.update(split.encode())
        for rel, label, size, mtime in files:
            digest.update(f"{rel}|{label}|{size}|{mtime}\n".encode())
    key = digest.hexdigest()
    test_names = _test_names(listings["test"])

    for cache in _cache_paths(tree, key):
        try:
            with np.load(cache) as z:
                if str(z["key"]) != key:
                    continue
                wanted = ("train_x", "train_y", "test_x", "test_y") if train_split else ("test_x", "test_y")
                arrays = {k: torch.from_numpy(z[k]) for k in wanted}
            return _tree_data(arrays, f"image folders in {tree} (cached)", test_names)
        except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile):
            continue

    # No cache: decode. The test split alone decodes only it and writes no cache (a process that
    # trains writes it): the server that asks for it never holds the training split, even for a
    # moment.
    splits = {k: v for k, v in listings.items() if train_split or k == "test"}
    arrays = {}
    total, done = sum(len(f) for f in splits.values()), 0
    for split, files in splits.items():
        order = np.random.default_rng(0).permutation(len(files))
        x = np.empty((len(files), 3, 32, 32), np.uint8)  # the stored layout: no copy to make it
        for j, i in enumerate(order):
            x[j] = _decode(tree / split / files[i][0]).transpose(2, 0, 1)
            done += 1
            if progress is not None and (done % 500 == 0 or done == total):
                progress(done, total)
        arrays[f"{split}_x"] = x
        arrays[f"{split}_y"] = np.array([files[i][1] for i in order], dtype=np.int64)
    for cache in _cache_paths(tree, key) if train_split else ():
        try:
            cache.parent.mkdir(parents=True, exist_ok=True)
            tmp = cache.with_name(cache.name + f".{os.getpid()}.tmp.npz")
            np.savez(tmp, key=np.array(key), **arrays)
            os.replace(tmp, cache)
            break
        except OSError:
            continue
    return _tree_data({k: torch.from_numpy(v) for k, v in arrays.items()}, f"image folders in {tree}",
                      test_names)


def _tree_data(arrays: dict[str, torch.Tensor], source: str, test_names: tuple[str, ...]) -> CifarData:
    """``arrays`` (the test split's, and the training split's unless left out) as ``CifarData``."""
    if "train_x" not in arrays:
        arrays["train_x"], arrays["train_y"] = _no_images()
        source += " (test split only)"
    return CifarData(**arrays, classes=CLASSES, source=source, test_names=test_names)


# ---------------------------------------------------------------- entry point


def load_cifar10(root: Path | str | None = None, download: bool = False,
                 progress: Progress | None = None, train: bool = True) -> CifarData:
    """Load CIFAR-10 from ``root`` (see the module docstring for the sources and their order).

    ``progress(done, total)`` is called while image folders are decoded (the first load of a tree
    takes ~20 s; later loads come from the cache in about a second and do not call it).

    ``train=False``: the test split alone (with no cache, an image tree's test split is decoded and
    no cache is written: a load of both splits writes it).

    Raises ``DataError`` with what was looked for and how to fix it when no source works.
    """
    root = Path(root) if root is not None else default_data_dir()
    if (root / "cifar-10-batches-py").is_dir():
        return _load_torchvision(root, train)
    tree = _find_tree(root)
    if tree is not None:
        return _load_image_tree(tree, progress, train)
    if download:
        download_cifar10(root)
        return _load_torchvision(root, train)
    where = f"{root.resolve()}" + ("" if root.exists() else " (which does not exist)")
    raise DataError(f"No CIFAR-10 found in {where}: looked for 'cifar-10-batches-py/' and for "
                    "'train/<class>/' + 'test/<class>/' image folders. " + _fix_hint(root))


def require_dataset(root: Path | str | None = None) -> None:
    """Raise the same ``DataError`` as ``load_cifar10`` when ``root`` holds no dataset (cheap check)."""
    if not dataset_status(root)["found"]:
        load_cifar10(root)


def dataset_status(root: Path | str | None = None) -> dict:
    """Cheap check for the UI: ``{"found": bool, "kind": ..., "path": ...}`` without decoding."""
    root = Path(root) if root is not None else default_data_dir()
    if (root / "cifar-10-batches-py").is_dir():
        return {"found": True, "kind": "torchvision", "path": str(root / "cifar-10-batches-py")}
    tree = _find_tree(root)
    if tree is not None:
        return {"found": True, "kind": "image folders", "path": str(tree)}
    return {"found": False, "kind": None, "path": str(root.resolve())}


@dataclass(frozen=True)
class DatasetInfo:
    """What a data folder holds, known without decoding it or importing torch (for pages that
    only count the images or name them)."""

    kind: str                # "torchvision" or "image folders"
    path: str
    train: int | None        # images; None where not known without decoding (torchvision's batches)
    test: int | None
    test_names: tuple[str, ...] | None  # as ``CifarData.test_names``


def dataset_info(root: Path | str | None = None) -> DatasetInfo:
    """The folder's images, listed (image folders) but not decoded; ``DataError`` as
    ``load_cifar10`` when there is no dataset or its folders are not CIFAR-10's."""
    root = Path(root) if root is not None else default_data_dir()
    status = dataset_status(root)
    if not status["found"]:
        load_cifar10(root)  # raises its DataError
    if status["kind"] == "torchvision":
        return DatasetInfo("torchvision", status["path"], None, None, None)
    tree = Path(status["path"])
    train, test = _list_split(tree / "train"), _list_split(tree / "test")
    return DatasetInfo("image folders", status["path"], len(train), len(test), _test_names(test))


def channel_stats(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and std of uint8 images (N, 3, H, W), in [0, 1] units, each shape (3,)."""
    import torch

    xf = x.to(torch.float32).div_(255)
    return xf.mean(dim=(0, 2, 3)), xf.std(dim=(0, 2, 3))
