"""Export and import: bundles round-trip, ONNX matches PyTorch, CSV rows match, bad bundles refused."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from cifar_app.core.settings import TrainSettings
from cifar_app.store.export import (
    BundleError,
    bundle_bytes,
    export_bundle,
    export_csv,
    import_bundle,
)
from cifar_app.store.onnx import export_onnx
from cifar_app.store.runstore import RunStore
from tests.conftest import REAL_DATA, write_image_tree

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def src(trained_store):
    return trained_store.list()[0]


@pytest.fixture
def dest(tmp_path):
    return RunStore(tmp_path / "dest", reference_root=None)


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cifar_app", *args], capture_output=True, text=True,
                          timeout=240)


def test_a_bundle_round_trips_and_evaluates_the_same(src, dest, tmp_path):
    path = export_bundle(src, tmp_path)
    run = import_bundle(dest, path, origin=path.name)
    assert run.id == src.id  # the id was free
    assert run.summary().status == "completed" and f"imported from {path.name}" in run.label
    assert [e.test_acc for e in run.metrics().epochs] == [e.test_acc for e in src.metrics().epochs]
    assert np.array_equal(run.load_predictions()["preds"], src.load_predictions()["preds"])
    assert run.inside() == src.inside()
    from cifar_app.lab.analysis import evaluate_model
    from cifar_app.store.inference import load_model
    from tests.conftest import synthetic_data

    data = synthetic_data(300, 100)
    assert evaluate_model(load_model(run), data).accuracy == evaluate_model(load_model(src), data).accuracy
    again = import_bundle(dest, path)  # the id is taken now: a fresh one
    assert again.id != run.id and len(dest.list()) == 2


def test_cli_export_and_import(src, trained_store, tmp_path):
    out = cli("export", src.id, "--format", "bundle", "--out", str(tmp_path / "b.zip"),
              "--runs-dir", str(trained_store.root))
    assert out.returncode == 0, out.stderr
    imp = cli("import", str(tmp_path / "b.zip"), "--runs-dir", str(tmp_path / "other"))
    assert imp.returncode == 0 and "imported as" in imp.stdout
    bad = tmp_path / "x.zip"
    bad.write_text("hello")
    refused = cli("import", str(bad), "--runs-dir", str(tmp_path / "other"))
    assert refused.returncode == 2 and "not a zip" in refused.stderr and "Traceback" not in refused.stderr


def test_onnx_logits_match_pytorch(src, tmp_path):
    import onnxruntime as ort

    from cifar_app.store.inference import load_model
    from cifar_app.store.onnx import WithInputNormalization

    path = export_onnx(src, tmp_path)
    loaded = load_model(src)
    torch.manual_seed(0)
    x = torch.rand(256, 3, 32, 32)
    if REAL_DATA:
        from cifar_app.core.data import load_cifar10

        x = load_cifar10(REAL_DATA).test_x[:256].float() / 255
    want = WithInputNormalization(loaded.model.eval(), loaded.mean, loaded.std)(x).detach().numpy()
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(None, {"image": x.numpy()})[0]
    assert got.shape == (256, 10) and np.abs(got - want).max() <= 1e-4
    assert session.run(None, {"image": x[:3].numpy()})[0].shape == (3, 10)  # dynamic batch


@pytest.mark.parametrize("norm", ["instance", "ws-group", "batch-renorm", "layer-chw"])
def test_every_new_norm_exports_to_onnx_that_onnxruntime_matches(norm, tmp_path, tiny_data):
    """The wider family trains (a few steps, so running statistics and weights move) and exports."""
    import onnxruntime as ort

    from cifar_app.core.engine import train
    from cifar_app.core.settings import TrainSettings
    from cifar_app.store.onnx import WithInputNormalization, model_to_onnx

    result = train(TrainSettings(norm=norm, epochs=1, batch_size=50, max_lr=0.05, device="cpu"), tiny_data)
    path = model_to_onnx(result.model, result.mean, result.std, tmp_path / f"{norm}.onnx")
    x = torch.rand(16, 3, 32, 32)
    want = WithInputNormalization(result.model.eval(), result.mean, result.std)(x).detach().numpy()
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(None, {"image": x.numpy()})[0]
    assert np.abs(got - want).max() <= 1e-4


def test_csv_rows_match_the_run(src, tmp_path):
    import csv

    paths = export_csv(src, tmp_path, test_names=tuple(f"f{i}.png" for i in range(100)))
    metrics = list(csv.DictReader(paths[0].open()))
    preds = list(csv.DictReader(paths[1].open()))
    assert len(metrics) == len(src.metrics().epochs) and "test_acc" in metrics[0]
    stored = src.load_predictions()
    assert len(preds) == len(stored["labels"]) and preds[5]["file"] == "f5.png"
    assert [int(p["index"]) for p in preds[:3]] == [0, 1, 2]
    correct = sum(p["true"] == p["predicted"] for p in preds)
    assert correct == int((stored["preds"] == stored["labels"]).sum())


# ------------------------------------------------------------------ refused bundles


def rebuild(data: bytes, change: dict[str, bytes | None], extra: list[zipfile.ZipInfo] = ()) -> bytes:
    """A copy of bundle ``data`` with entries replaced (None removes one) or added."""
    buf = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as old, zipfile.ZipFile(buf, "w") as new:
        for info in old.infolist():
            if info.filename in change:
                continue
            new.writestr(info, old.read(info))
        for name, content in change.items():
            if content is not None:
                new.writestr(name, content)
        for info, content in extra:
            new.writestr(info, content)
    return buf.getvalue()


class Payload:
    def __reduce__(self):
        return (os.system, ("touch /tmp/cifar-app-pwned",))


def pickled(obj) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def symlink_entry(name: str) -> tuple[zipfile.ZipInfo, bytes]:
    info = zipfile.ZipInfo(name)
    info.external_attr = (0o120777 << 16)
    return info, b"/etc/passwd"


BAD = {
    "an entry escaping with ../": lambda b: rebuild(b, {"../evil.json": b"{}"}),
    "an absolute path": lambda b: rebuild(b, {"/etc/evil.json": b"{}"}),
    "a symlink": lambda b: rebuild(b, {}, [symlink_entry("batchdep.json")]),
    "a pickle payload in the model": lambda b: rebuild(b, {"model.pt": pickled({"model": Payload()})}),
    "a pickle payload in the checkpoint": lambda b: rebuild(b, {"checkpoint.pt": pickled(
        {"model": Payload(), "optimizer": {}, "epoch": 1, "history": []})}),
    "unknown settings keys": lambda b: rebuild(b, {"settings.json": b'{"norm": "batch", "colour": 1}'}),
    "a non-object metrics line": lambda b: rebuild(b, {"metrics.jsonl": b'{"type": "epoch"}\n[1]\n'}),
    "a model whose shapes don't match": lambda b: rebuild(b, {"settings.json": json.dumps(
        {**json.loads(zipfile.ZipFile(io.BytesIO(b)).read("settings.json")), "arch": "separable"}).encode()}),
    "not a zip": lambda b: b"PK\x03\x04 this is no zip",
    "an entry in a folder": lambda b: rebuild(b, {"sub/settings.json": b"{}"}),
    "no manifest": lambda b: rebuild(b, {"bundle.json": None}),
    # what the run store would read as damaged is refused at import (issue 17: it was imported)
    "a probe line without layers": lambda b: rebuild(b, {"inside.jsonl": b'{"epoch": 1}\n'}),
    "predictions that are not a zip": lambda b: rebuild(b, {"predictions.npz": b"not a zip"}),
}


@pytest.mark.parametrize("case", list(BAD))
def test_a_bad_bundle_is_refused_and_nothing_is_written(src, dest, case, tmp_path):
    data = BAD[case](bundle_bytes(src))
    Path("/tmp/cifar-app-pwned").unlink(missing_ok=True)
    with pytest.raises(BundleError):
        import_bundle(dest, data)
    assert not Path("/tmp/cifar-app-pwned").exists()
    assert not dest.root.exists() or not any(dest.root.iterdir())  # no partial run, no temp folder


def npz_bomb(rows: int = 60_000_000) -> bytes:
    """A small predictions.npz whose ``probs`` array (rows x 10 float16) unpacks to rows x 20 bytes:
    1.2 GB by default, about 1.2 MB compressed. Written in chunks, never held whole."""
    buf = io.BytesIO()
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f2", "fortran_order": False,
                                                  "shape": (rows, 10)})
    chunk = bytes(2**24)
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as z:
        with z.open("probs.npy", "w", force_zip64=True) as f:
            f.write(header.getvalue())
            left = rows * 20
            while left:
                f.write(chunk[:min(left, len(chunk))])
                left -= min(left, len(chunk))
        for name, arr in (("labels", np.zeros(rows // 10**6, np.int64)), ("preds", np.zeros(1, np.uint8))):
            with z.open(f"{name}.npy", "w") as f:
                np.lib.format.write_array(f, arr)
    return buf.getvalue()


def test_a_predictions_bomb_is_refused_without_unpacking_it(src, dest):
    """predictions.npz inside a bundle passes the outer 200 MB check (it is ~1 MB), but its probs
    unpack to 1.2 GB: refused from the headers, with a clear message, using almost no memory."""
    import tracemalloc

    bomb = npz_bomb()
    assert len(bomb) < 5 * 2**20
    data = rebuild(bundle_bytes(src), {"predictions.npz": bomb})
    tracemalloc.start()
    try:
        with pytest.raises(BundleError, match=r"predictions.npz: unpacks to 1,144 MB; .* at most 64 MB"):
            import_bundle(dest, data)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 50 * 2**20, f"{peak / 2**20:.0f} MB allocated"
    assert not dest.root.exists() or not any(dest.root.iterdir())


def test_a_stored_predictions_bomb_is_not_read(tmp_path):
    """The same parser guards a stored run: a bomb in a run folder is ignored (predictions are a
    cache the model can recompute), not unpacked."""
    import tracemalloc

    run = RunStore(tmp_path, reference_root=None).create(TrainSettings(epochs=1))
    (run.path / "predictions.npz").write_bytes(npz_bomb(20_000_000))
    tracemalloc.start()
    try:
        assert run.load_predictions() is None
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 50 * 2**20, f"{peak / 2**20:.0f} MB allocated"


def test_too_many_entries_or_too_large_is_refused(src, dest, monkeypatch):
    from cifar_app.store import export

    data = bundle_bytes(src)
    monkeypatch.setattr(export, "MAX_ENTRIES", 3)
    with pytest.raises(BundleError, match="entries"):
        import_bundle(dest, data)
    monkeypatch.setattr(export, "MAX_ENTRIES", 1000)
    monkeypatch.setattr(export, "MAX_UNPACKED", 1000)
    with pytest.raises(BundleError, match="MB"):
        import_bundle(dest, data)
    assert not dest.root.exists() or not any(dest.root.iterdir())


def test_a_zip_bomb_over_200_mb_is_refused_from_its_headers(dest):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("bundle.json", json.dumps({"format": "cifar-app-run-bundle", "version": 1}))
        z.writestr("metrics.jsonl", b"\n" * (201 * 2**20))  # compresses to ~200 KB
    with pytest.raises(BundleError, match="200 MB"):
        import_bundle(dest, buf.getvalue())


# ------------------------------------------------------------------ the Runs page


def test_the_runs_page_exports_and_imports(monkeypatch, tmp_path, src, pages):
    pages.use(tmp_path / "runs", write_image_tree(tmp_path / "data", 2, 10))
    at = pages.open("home")
    assert "No runs yet" in "\n".join(i.value for i in at.info)
    at.session_state["runs_port"] = True  # the user opens "Export or import a run"
    at.run()
    at.file_uploader(key="import_bundle").set_value(("run.zip", bundle_bytes(src), "application/zip")).run()
    at.button(key="import").click().run()
    assert not at.exception and any("Imported as" in s.value for s in at.success)
    [run] = RunStore(tmp_path / "runs", reference_root=None).list()
    assert run.id == src.id
    at.run()
    downloads = at.get("download_button")
    assert {d.proto.label for d in downloads} == {"Bundle (.zip)", "Metrics (.csv)", "Predictions (.csv)",
                                                  "Model (.onnx)"}
    # built when clicked, not on every re-run of the page (a 600 KB bundle, an ONNX export)
    assert all(d.proto.deferred_file_id and not d.proto.url for d in downloads)
    from cifar_app.store import export, onnx

    built = []
    for module, name in ((export, "bundle_bytes"), (export, "metrics_csv"), (export, "predictions_csv"),
                         (onnx, "onnx_bytes")):
        monkeypatch.setattr(module, name, lambda *a, name=name, **k: built.append(name) or b"")
    at.run()
    assert not at.exception and len(at.get("download_button")) == 4 and built == []
    at.file_uploader(key="import_bundle").set_value(("x.zip", b"nope", "application/zip")).run()
    at.button(key="import").click().run()
    assert any("Not imported" in e.value and "not a zip" in e.value for e in at.error)


def _damaged_zips() -> dict[str, bytes]:
    """Bundles whose zip structure lies: a declared size smaller than the data, a flipped byte in
    a compressed entry (bad CRC or a broken deflate stream), a truncated file."""
    import struct

    from cifar_app.store import export

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr(export.MANIFEST, json.dumps({"format": export.FORMAT, "version": export.VERSION}))
        z.writestr(export.SETTINGS, json.dumps({"norm": "batch"}) + " " * 4000)
    good = buf.getvalue()
    out = {}
    # central directory: the uncompressed size of the second entry made smaller than its data
    cd = good.rfind(b"PK\x01\x02")
    smaller = bytearray(good)
    struct.pack_into("<I", smaller, cd + 24, 10)
    local = good.find(b"PK\x03\x04", 4)
    struct.pack_into("<I", smaller, local + 22, 10)
    out["declared size smaller than the data"] = bytes(smaller)
    flipped = bytearray(good)
    flipped[local + 60] ^= 0xFF
    out["a flipped byte in a compressed entry"] = bytes(flipped)
    cut = bytearray(good)
    cut[local + 40: local + 80] = b"\0" * 40  # the compressed data of an entry zeroed
    out["zeroed data"] = bytes(cut)
    return out


@pytest.mark.parametrize("case", list(_damaged_zips()))
def test_every_damaged_zip_is_one_bundle_error(dest, case):
    with pytest.raises(BundleError) as e:
        import_bundle(dest, _damaged_zips()[case])
    assert "\n" not in str(e.value) and dest.list() == []
