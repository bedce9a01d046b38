"""The claims' verdicts follow from the stored results: change them and the verdict changes."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from cifar_app.claims import CLAIMS, Verdict, evaluate
from cifar_app.experiments import PRESETS, ExperimentStore
from cifar_app.records import EpochStats
from cifar_app.runstore import RunStore
from cifar_app.settings import TrainSettings
from tests.conftest import ROOT


def verdicts(store: RunStore) -> dict[str, Verdict]:
    return {r["id"]: r["verdict"] for r in evaluate(store)}


def fake_preset(store: RunStore, preset: str, results: dict[tuple, float], grid: dict,
                curves: dict[tuple, list[float]] | None = None) -> str:
    """An experiment of ``preset`` whose points (keyed by their grid values) completed with the
    given final test accuracies (and, optionally, per-epoch accuracy curves)."""
    exps = ExperimentStore(store)
    exp = exps.create(preset, {"epochs": 3, "train_limit": 1000, "test_limit": 500}, grid, preset=preset)
    for i, point in enumerate(exp.points):
        key = tuple(point.settings[k] for k in grid)
        if key not in results:
            continue
        run = store.create(TrainSettings.from_dict(point.settings), tags={"experiment": exp.id, "point": i})
        accs = (curves or {}).get(key) or [results[key]]
        run.append_metrics(*[EpochStats(e, 1.0, a, 1.0, a, 10.0, 1000.0, 0.1) for e, a in enumerate(accs, 1)])
        run.update_status(state="completed")

        def change(stored, i=i, run_id=run.id):
            stored.points[i].run_id = run_id

        exps.update(exp.id, change)
    return exp.id


@pytest.fixture
def store(tmp_path):
    return RunStore(tmp_path / "runs")  # with the shipped reference runs, as on a fresh install


def test_a_fresh_install_has_eleven_rows_computed_where_it_can(store):
    rows = evaluate(store)
    assert [r["id"] for r in rows] == [c.id for c in CLAIMS] and len(rows) == 11
    v = {r["id"]: r["verdict"] for r in rows}
    assert v["ln-batch-invariant"] == Verdict.HOLDS  # the shipped LN run's batch dependence
    assert v["ln-params"] == Verdict.HOLDS and v["ln-rnn"] == Verdict.NOT_TESTABLE
    assert v["bn-higher-lr"] == Verdict.NOT_MEASURED
    assert "sweep --preset learning-rate" in next(r for r in rows if r["id"] == "bn-higher-lr")["note"]


def test_the_learning_rate_verdict_follows_the_stored_results(store):
    grid = {"norm": ["none", "batch"], "max_lr": PRESETS["learning-rate"].grid["max_lr"]}
    fake_preset(store, "learning-rate", {("none", 0.1): 0.50, ("none", 0.8): 0.10, ("batch", 0.1): 0.55,
                                         ("batch", 0.8): 0.62}, grid)
    assert verdicts(store)["bn-higher-lr"] == Verdict.HOLDS
    fake_preset(store, "learning-rate", {("none", 0.1): 0.50, ("none", 0.8): 0.64, ("batch", 0.1): 0.55,
                                         ("batch", 0.8): 0.62}, grid)  # newer: none copes at 0.8
    assert verdicts(store)["bn-higher-lr"] == Verdict.DOES_NOT_HOLD


def test_seed_noise_turns_a_small_difference_into_within_noise(store):
    seeds = {"seed": [0, 1, 2], "norm": ["batch", "group", "layer", "none"]}
    results = {(s, n): a for s in (0, 1, 2) for n, a in (("batch", 0.80 + s / 100), ("group", 0.79 + s / 100),
                                                       ("layer", 0.79), ("none", 0.70 + s / 50))}
    fake_preset(store, "seeds", results, seeds)
    grid = {"norm": ["batch", "group", "layer"], "batch_size": [2, 128]}
    fake_preset(store, "batch-size", {("batch", 2): 0.60, ("batch", 128): 0.61, ("group", 2): 0.60,
                                      ("group", 128): 0.60, ("layer", 2): 0.59, ("layer", 128): 0.60}, grid)
    v = verdicts(store)
    assert v["gn-small-batches"] == Verdict.WITHIN_NOISE  # BN loses 1 point, GN 0: inside 2 SE
    assert v["no-norm-struggles"] == Verdict.HOLDS        # 80-82% against 70-74%
    fake_preset(store, "batch-size", {("batch", 2): 0.30, ("batch", 128): 0.61, ("group", 2): 0.60,
                                      ("group", 128): 0.60, ("layer", 2): 0.59, ("layer", 128): 0.60}, grid)
    v = verdicts(store)
    assert v["gn-small-batches"] == Verdict.HOLDS and v["ln-stable"] == Verdict.HOLDS


def test_training_speed_counts_epochs_to_70_percent(store):
    seeds = {"seed": [0, 1], "norm": ["batch", "none"]}
    curve = {(s, "batch"): [0.5, 0.72, 0.8] for s in (0, 1)}
    curve |= {(s, "none"): [0.3, 0.5, 0.71] for s in (0, 1)}
    fake_preset(store, "seeds", {k: v[-1] for k, v in curve.items()}, seeds, curve)
    row = next(r for r in evaluate(store) if r["id"] == "bn-speed")
    assert row["verdict"] == Verdict.HOLDS and "epoch 2.0" in row["figure"]
    curve = {(s, "batch"): [0.5, 0.6, 0.8] for s in (0, 1)}
    curve |= {(s, "none"): [0.71, 0.72, 0.73] for s in (0, 1)}
    fake_preset(store, "seeds", {k: v[-1] for k, v in curve.items()}, seeds, curve)
    assert verdicts(store)["bn-speed"] == Verdict.DOES_NOT_HOLD


def test_a_batch_dependent_layernorm_run_would_not_hold(tmp_path):
    store = RunStore(tmp_path / "runs", reference_root=None)
    assert verdicts(store)["ln-batch-invariant"] == Verdict.NOT_MEASURED
    run = store.create(TrainSettings(norm="layer", epochs=1))
    run.update_status(state="completed")
    run.save_result("batchdep", {"n_test": 100, "eval_acc": 0.5, "batch_stats": {"1": 0.5, "128": 0.48},
                                 "differ_from_eval": {"1": 0, "128": 3}, "precise_bn_acc": None,
                                 "precise_bn_images": 0})
    assert verdicts(store)["ln-batch-invariant"] == Verdict.DOES_NOT_HOLD


def test_claims_json_on_the_cli(tmp_path):
    out = subprocess.run([sys.executable, "-m", "cifar_app", "claims", "--json", "--runs-dir", str(tmp_path)],
                         capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    rows = json.loads(out.stdout)["claims"]
    assert len(rows) == 11
    assert {"id", "claim", "verdict", "rule", "figure", "evidence", "experiment"} <= set(rows[0])


def test_the_claims_page_renders_rows_plots_and_a_run_button(pages, tmp_path):
    pages.use(tmp_path / "runs")
    pages.monkeypatch.delenv("CIFAR_APP_REFERENCE_RUNS")  # the shipped runs fill two rows' plots
    at = pages.open("claims")
    assert len(at.get("plotly_chart")) >= 2
    assert any(b.label == "Run the learning-rate preset" for b in at.button)
