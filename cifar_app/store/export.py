"""Take a run elsewhere: one-file bundles (export and import), numbers as CSV (the model as ONNX:
``onnx.py``).

bundle: a .zip of the run's portable files (settings, metrics, model, predictions, checkpoint,
    inside statistics, cached analyses) plus its status and a ``bundle.json`` manifest. Importing
    is an attack surface, so every entry is checked in memory before anything is written: a flat
    name from the known set (no folders, ``..``, absolute paths or symlinks), at most 1,000 entries
    and 200 MB unpacked; then each file by the run store's own parser for it
    (``formats.validate_file``, the one that reads it from a stored run): torch files loadable
    with ``weights_only`` (no pickled code), settings that validate, every metrics and probe line a
    record, a model whose tensors fit its settings, predictions whose arrays are checked against a
    size cap before they are unpacked. Only then does the run store add the run, whole, under its
    old id when free, else a new one.
csv: the epoch metrics, and the test predictions (index, true, predicted, confidence, file).
"""

from __future__ import annotations

import csv
import io
import json
import stat
import time
import zipfile
import zlib
from pathlib import Path

from cifar_app.core.records import EpochStats
from cifar_app.store.formats import (
    MODEL,
    PORTABLE,
    PREDICTIONS,
    SETTINGS,
    STATUS,
    FileInvalid,
    check_label,
    parse_object,
    parse_settings,
    validate_file,
)
from cifar_app.store.run import Run, RunDamaged
from cifar_app.store.runstore import RunStore
from cifar_app.store.states import ACTIVE, IMPORTABLE, RunState

FORMAT = "cifar-app-run-bundle"
VERSION = 1
MAX_ENTRIES = 1000
MAX_UNPACKED = 200 * 1024 * 1024
MANIFEST = "bundle.json"
KEPT_STATUS = ("state", "label", "created", "started", "finished", "params", "data_source", "tags")


class BundleError(ValueError):
    """A bundle that will not be imported; the message says why in plain words."""


# ---------------------------------------------------------------------------- bundle export


def export_bundle(run: Run, out: Path | str) -> Path:
    """Write ``run`` as one .zip at ``out`` (a folder gets ``<run id>.zip`` in it)."""
    out = Path(out)
    if out.is_dir():
        out = out / f"{run.id}.zip"
    out.write_bytes(bundle_bytes(run))
    return out


def bundle_bytes(run: Run) -> bytes:
    """The bundle of ``run`` as bytes (for a download button)."""
    files = run.portable_files()
    status = {k: v for k, v in run.raw_status().items() if k in KEPT_STATUS}
    if status.get("state") in ACTIVE:
        status["state"] = RunState.STOPPED
    manifest = {"format": FORMAT, "version": VERSION, "run_id": run.id, "exported": time.time(),
                "files": sorted(files)}
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr(MANIFEST, json.dumps(manifest, indent=1))
        z.writestr(STATUS, json.dumps(status, indent=1))
        for name, data in files.items():
            z.writestr(name, data)
    return buf.getvalue()


# ---------------------------------------------------------------------------- bundle import


def import_bundle(store: RunStore, source: Path | str | bytes, origin: str | None = None) -> Run:
    """Add the run in a bundle to ``store`` (see the module docstring for what is checked).
    ``BundleError`` says why a bundle is refused; nothing is written then."""
    data = source if isinstance(source, bytes) else _read_file(Path(source))
    files, status, manifest = _read_zip(data)
    try:
        settings = parse_settings(files[SETTINGS])
    except FileInvalid as e:
        raise BundleError(f"{SETTINGS}: {e}") from None
    for name, content in files.items():  # the run store's own parser for each file
        try:
            validate_file(name, content, settings)
        except FileInvalid as e:
            raise BundleError(f"{name}: {e}") from None
    old_id = str(manifest.get("run_id") or "")
    label = str(status.get("label") or old_id or "imported run")[:60]
    where = origin or "a bundle"
    status = {k: v for k, v in status.items() if k in KEPT_STATUS}
    state = status.get("state")
    try:
        label = check_label(f"{label} (imported from {where})")
    except ValueError as e:
        raise BundleError(f"the run's label or the file's name: {e}") from None
    status.update(state=state if state in IMPORTABLE else RunState.STOPPED,
                  label=label, pid=None, heartbeat=time.time(),
                  imported_from=old_id or None, imported=time.time())
    if status["state"] == RunState.COMPLETED and MODEL not in files:
        status["state"] = RunState.STOPPED
    if not isinstance(status.get("params"), int):
        status["params"] = settings.param_count()
    if not isinstance(status.get("tags"), dict):
        status["tags"] = {}
    return store.add_run(files, status, preferred_id=old_id)


def _read_file(path: Path) -> bytes:
    try:
        if path.stat().st_size > MAX_UNPACKED:
            raise BundleError(f"{path} is larger than {MAX_UNPACKED // 2**20} MB")
        return path.read_bytes()
    except OSError as e:
        raise BundleError(f"cannot read {path}: {e.strerror or e}") from None


def _entries(z: zipfile.ZipFile) -> dict[str, bytes]:
    """The bundle's entries, checked one by one (names, links, folders, sizes) as they are read."""
    with z:
        infos = z.infolist()
        if len(infos) > MAX_ENTRIES:
            raise BundleError(f"the bundle has {len(infos):,} entries; the limit is {MAX_ENTRIES:,}")
        if sum(i.file_size for i in infos) > MAX_UNPACKED:
            raise BundleError(f"the bundle unpacks to more than {MAX_UNPACKED // 2**20} MB")
        allowed = {MANIFEST, STATUS, *PORTABLE}
        files: dict[str, bytes] = {}
        total = 0
        for info in infos:
            name = info.filename
            if name.startswith(("/", "\\")) or ".." in name.split("/") or "\\" in name or ":" in name:
                raise BundleError(f"entry {name!r} points outside the bundle; refused")
            if stat.S_ISLNK(info.external_attr >> 16):
                raise BundleError(f"entry {name!r} is a symbolic link; refused")
            if info.is_dir() or "/" in name:
                raise BundleError(f"entry {name!r} is in a folder; a bundle is flat")
            if name not in allowed:
                raise BundleError(f"entry {name!r} is not part of a run bundle")
            if name in files:
                raise BundleError(f"entry {name!r} appears twice")
            with z.open(info) as f:  # read at most what the header claims (+1 to catch a liar)
                content = f.read(info.file_size + 1)
            if len(content) > info.file_size:
                raise BundleError(f"entry {name!r} is larger than its header says")
            total += len(content)
            if total > MAX_UNPACKED:
                raise BundleError(f"the bundle unpacks to more than {MAX_UNPACKED // 2**20} MB")
            files[name] = content
    return files


def _read_zip(data: bytes) -> tuple[dict[str, bytes], dict, dict]:
    if not zipfile.is_zipfile(io.BytesIO(data)):
        raise BundleError("this is not a zip file, so not a run bundle")
    try:
        z = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, OSError) as e:
        raise BundleError(f"the zip file is damaged ({e})") from None
    try:
        files = _entries(z)
    except BundleError:
        raise
    except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, RuntimeError, ValueError,
            OSError) as e:
        raise BundleError(f"the zip file is damaged ({type(e).__name__}: {str(e)[:120]})") from None
    if MANIFEST not in files:
        raise BundleError(f"no {MANIFEST}: not a bundle exported by this app")
    manifest = _object(files.pop(MANIFEST), MANIFEST)
    if manifest.get("format") != FORMAT or manifest.get("version") != VERSION:
        raise BundleError(f"{MANIFEST} does not describe a version-{VERSION} run bundle")
    status = _object(files.pop(STATUS), STATUS) if STATUS in files else {}
    if SETTINGS not in files:
        raise BundleError(f"the bundle has no {SETTINGS}")
    return files, status, manifest


def _object(data: bytes, name: str) -> dict:
    try:
        return parse_object(data)
    except FileInvalid as e:
        raise BundleError(f"{name}: {e}") from None


# ---------------------------------------------------------------------------- CSV


def metrics_csv(run: Run) -> str:
    """One row per epoch: every ``EpochStats`` field (accuracies as fractions 0..1)."""
    epochs = run.metrics().epochs
    buf = io.StringIO()
    fields = list(EpochStats.__dataclass_fields__)
    w = csv.DictWriter(buf, fieldnames=fields)
    w.writeheader()
    for e in epochs:
        w.writerow({f: getattr(e, f) for f in fields})
    return buf.getvalue()


def predictions_csv(run: Run, test_names: tuple[str, ...] | None = None,
                    classes: tuple[str, ...] | None = None) -> str:
    """One row per test image: index, true class, predicted class, confidence (the predicted
    class's probability) and, when the test set came from image folders, its file name."""
    stored = run.load_predictions()
    if stored is None:
        raise RunDamaged(run.id, PREDICTIONS, "missing or unreadable: the run has no test predictions")
    if classes is None:
        classes = tuple(run.load_model_record()["classes"]) if run.has_model() else tuple(map(str, range(10)))
    names = test_names if test_names is not None and len(test_names) >= len(stored["labels"]) else None
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["index", "true", "predicted", "confidence"] + (["file"] if names else []))
    for i, (t, p, probs) in enumerate(zip(stored["labels"], stored["preds"], stored["probs"])):
        w.writerow([i, classes[int(t)], classes[int(p)], f"{float(probs[int(p)]):.4f}"]
                   + ([names[i]] if names else []))
    return buf.getvalue()


def export_csv(run: Run, out: Path | str, test_names: tuple[str, ...] | None = None) -> list[Path]:
    """Write ``<run id>-metrics.csv`` and (when it has them) ``<run id>-predictions.csv`` into the
    folder ``out`` (created); return the paths."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / f"{run.id}-metrics.csv"]
    paths[0].write_text(metrics_csv(run))
    if run.load_predictions() is not None:
        paths.append(out / f"{run.id}-predictions.csv")
        paths[1].write_text(predictions_csv(run, test_names))
    return paths
