"""The trained runs shipped inside the package."""

import shutil
from pathlib import Path

import numpy as np
import pytest

from cifar_app.core.data import load_cifar10
from cifar_app.core.model import PARAM_BUDGET, count_parameters
from cifar_app.lab.analysis import evaluate_model
from cifar_app.store.inference import load_model
from cifar_app.store.run import Run
from cifar_app.store.runstore import REFERENCE_ROOT, RunStore
from tests.conftest import REAL_DATA

REFS = sorted(p.name for p in REFERENCE_ROOT.iterdir() if (p / "settings.json").exists())


def test_every_normalization_has_a_shipped_run():
    assert REFS == ["ref-batch", "ref-group", "ref-layer", "ref-none"]


@pytest.mark.parametrize("ref", REFS)
def test_reference_run_loads_within_the_limits(ref):
    run = RunStore("unused", reference_root=REFERENCE_ROOT).get(ref)
    assert run.reference and run.status()["state"] == "completed"
    settings = run.settings()
    loaded = load_model(run)
    assert count_parameters(loaded.model) < PARAM_BUDGET and settings.epochs <= 20
    stored = run.load_predictions()
    accuracy = float((stored["preds"] == stored["labels"]).mean())
    assert len(stored["labels"]) == 10_000
    assert accuracy == pytest.approx(run.metrics().epochs[-1].test_acc, abs=1e-6)
    if settings.norm != "none":
        assert accuracy >= 0.80


@pytest.mark.realdata
@pytest.mark.skipif(not REAL_DATA, reason="set CIFAR_APP_DATA to an unpacked CIFAR-10 copy to run")
@pytest.mark.parametrize("ref", REFS)
def test_reference_model_reproduces_its_stored_predictions(ref):
    run = RunStore("unused", reference_root=REFERENCE_ROOT).get(ref)
    data = load_cifar10(REAL_DATA)
    ev = evaluate_model(load_model(run), data, test_limit=2000)
    stored = run.load_predictions()
    stored_acc = float((stored["preds"][:2000] == stored["labels"][:2000]).mean())
    assert np.array_equal(stored["labels"][:2000], ev.labels)
    assert ev.accuracy == pytest.approx(stored_acc, abs=0.001)


OLD_RUN = Path(__file__).parent / "fixtures" / "old-format-run"


def test_runs_written_before_this_version_still_load(tmp_path):
    """tests/fixtures/old-format-run is the LayerNorm reference run as shipped before typed records,
    train_ce, status tags and probe records existed: it loads, summarizes, predicts and exports."""
    import shutil

    from cifar_app.store.export import bundle_bytes, import_bundle

    shutil.copytree(OLD_RUN, tmp_path / "refs" / "ref-old")
    store = RunStore(tmp_path / "runs", reference_root=tmp_path / "refs")
    run = store.get("ref-old")
    m = run.metrics()
    assert len(m.epochs) == 20 and all(e.train_ce is None for e in m.epochs)
    assert m.batches and m.batches[0].t is None  # thinned logs carry no wall-clock times
    s = run.summary()
    assert s.status == "completed" and not s.damaged and s.has_model and s.tags == {}
    assert s.final_test_acc == pytest.approx(0.8111, abs=1e-4) and run.damage() is None
    assert run.inside() == [] and run.load_result("batchdep") is None
    stored = run.load_predictions()
    assert float((stored["preds"] == stored["labels"]).mean()) == pytest.approx(s.final_test_acc, abs=1e-6)
    assert count_parameters(load_model(run).model) < PARAM_BUDGET
    assert import_bundle(store, bundle_bytes(run)).summary().status == "completed"


@pytest.mark.parametrize("ref", REFS)
def test_reference_runs_carry_probe_records_and_their_batch_dependence(ref):
    from cifar_app.lab.batchdep import TEST_BATCH_SIZES, BatchDependence

    run = RunStore("unused", reference_root=REFERENCE_ROOT).get(ref)
    records = run.inside()
    assert [r["epoch"] for r in records] == list(range(21))
    overhead = sum(r["seconds"] for r in records) / sum(e.seconds for e in run.metrics().epochs)
    assert overhead < 0.02  # probing costs under 2% of training time
    bd = BatchDependence.from_dict(run.load_result("batchdep"))
    assert set(bd.batch_stats) == set(TEST_BATCH_SIZES) and bd.n_test == 10_000
    if ref == "ref-batch":
        assert bd.batch_stats[1] < 0.2 < 0.8 < bd.batch_stats[1000] and bd.precise_bn_acc > 0.8
    else:
        assert max(bd.differ_from_eval.values()) <= 2 and bd.precise_bn_acc is None


@pytest.mark.parametrize("ref", REFS)
def test_reference_runs_ship_no_empty_records(ref):
    """copy_run leaves out an optional record the run never wrote (the landscape log of a run
    without probes is created empty): a shipped file is one with something in it."""
    empty = [p.name for p in (REFERENCE_ROOT / ref).iterdir() if p.stat().st_size == 0]
    assert empty == []


def test_copy_run_leaves_out_an_empty_optional_log(tmp_path):
    from cifar_app.store.formats import LANDSCAPE
    from cifar_app.store.runstore import copy_run

    src = RunStore("unused", reference_root=REFERENCE_ROOT).get("ref-layer")
    work = tmp_path / "src"
    shutil.copytree(src.path, work)
    (work / LANDSCAPE).write_bytes(b"")
    copy = copy_run(Run(work), tmp_path / "copy", status=src.status())
    assert not (copy.path / LANDSCAPE).exists() and (copy.path / "inside.jsonl").stat().st_size > 0


def test_the_shipped_presets_that_compare_norms_ran_on_todays_default():
    """The Claims page on a fresh install judges these presets' shipped results: they were
    re-measured on the default recipe, the seeds preset's 12 full runs included."""
    from cifar_app.core.settings import DEFAULT_RECIPE
    from cifar_app.store.results import load_shipped_results

    shipped = load_shipped_results().results
    for preset in ("batch-size", "learning-rate", "landscape", "groups", "seed-layernorm", "regularization",
                   "seeds"):
        assert shipped[preset].recipes() == [DEFAULT_RECIPE], preset
        assert all(p.state == "completed" or p.state == "failed" for p in shipped[preset].points), preset
