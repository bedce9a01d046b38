"""The claims' verdicts follow from the stored results: change them and the verdict changes."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

from cifar_app.claims import CLAIMS, Verdict, evaluate
from cifar_app.experiments import PRESETS, ExperimentResults, ExperimentStore, load_shipped_results
from cifar_app.records import EpochStats
from cifar_app.runstore import RunStore
from cifar_app.settings import TrainSettings
from tests.conftest import ROOT


def verdicts(store: RunStore) -> dict[str, Verdict]:
    return {r["id"]: r["verdict"] for r in evaluate(store)}


def fake_preset(store: RunStore, preset: str, results: dict[tuple, float], grid: dict,
                curves: dict[tuple, list[float]] | None = None, train: dict[tuple, float] | None = None,
                landscape: dict[tuple, list[dict]] | None = None) -> str:
    """An experiment of ``preset`` whose points (keyed by their grid values) completed with the
    given final test accuracies (and, optionally, per-epoch accuracy curves, a final train accuracy
    and landscape records)."""
    exps = ExperimentStore(store)
    exp = exps.create(preset, {"epochs": 3, "train_limit": 1000, "test_limit": 500}, grid, preset=preset)
    for i, point in enumerate(exp.points):
        key = tuple(point.settings[k] for k in grid)
        if key not in results:
            continue
        run = store.create(TrainSettings.from_dict(point.settings), tags={"experiment": exp.id, "point": i})
        accs = (curves or {}).get(key) or [results[key]]
        train_acc = (train or {}).get(key)
        run.append_metrics(*[EpochStats(e, 1.0, train_acc if train_acc is not None else a, 1.0, a, 10.0,
                                        1000.0, 0.1) for e, a in enumerate(accs, 1)])
        for rec in (landscape or {}).get(key, []):
            run.append_landscape(rec)
        run.update_status(state="completed")

        def change(stored, i=i, run_id=run.id):
            stored.points[i].run_id = run_id

        exps.update(exp.id, change)
    return exp.id


@pytest.fixture
def store(tmp_path):
    return RunStore(tmp_path / "runs")  # with the shipped reference runs and results: a fresh install


@pytest.fixture
def bare(tmp_path):
    return RunStore(tmp_path / "bare", reference_root=None)  # nothing shipped shows


def test_a_fresh_install_has_a_computed_verdict_for_every_claim(store):
    rows = evaluate(store)
    assert [r["id"] for r in rows] == [c.id for c in CLAIMS] and len(rows) == 11
    v = {r["id"]: r["verdict"] for r in rows}
    assert v["ln-batch-invariant"] == Verdict.HOLDS  # the shipped LN run's batch dependence
    assert v["ln-params"] == Verdict.HOLDS and v["ln-rnn"] == Verdict.NOT_TESTABLE
    assert [k for k, x in v.items() if x == Verdict.NOT_MEASURED] == []
    for r in rows:
        if r["id"] not in ("ln-params", "ln-rnn", "ln-batch-invariant", "bn-speed"):
            assert r["experiment"] and "shipped results of experiment" in r["note"], r["id"]


def test_with_nothing_stored_a_row_names_its_preset(bare):
    rows = evaluate(bare)
    v = {r["id"]: r["verdict"] for r in rows}
    assert v["bn-higher-lr"] == Verdict.NOT_MEASURED
    assert "sweep --preset learning-rate" in next(r for r in rows if r["id"] == "bn-higher-lr")["note"]
    assert {k for k, x in v.items() if x == Verdict.NOT_MEASURED} == {
        c.id for c in CLAIMS} - {"ln-params", "ln-rnn"}


def test_shipped_results_are_read_as_the_store_writes_them(tmp_path, bare):
    seeds = {"seed": [0, 1], "norm": ["batch", "none"]}
    curve = {(s, "batch"): [0.5, 0.72] for s in (0, 1)} | {(s, "none"): [0.3, 0.1] for s in (0, 1)}
    exp_id = fake_preset(bare, "seeds", {k: v[-1] for k, v in curve.items()}, seeds, curve)
    exps = ExperimentStore(bare)
    res = exps.results(exps.get(exp_id))
    back = ExperimentResults.from_dict(json.loads(json.dumps(res.to_dict())), shipped=True)
    assert back.points == res.points and back.shipped
    folder = tmp_path / "shipped"
    folder.mkdir()
    (folder / "preset_seeds.json").write_text(json.dumps(res.to_dict()))
    (folder / "preset_groups.json").write_text('{"points": [{"settings": ')  # torn: skipped
    assert set(load_shipped_results(folder)) == {"seeds"}
    fresh = RunStore(tmp_path / "fresh", reference_root=tmp_path / "no-refs")
    a = {r["id"]: r for r in evaluate(bare, shipped=None)}
    b = {r["id"]: r for r in evaluate(fresh, shipped=folder)}
    for cid in ("bn-speed", "no-norm-struggles"):
        assert a[cid]["verdict"] == b[cid]["verdict"] and a[cid]["figure"] == b[cid]["figure"]
        assert "shipped results" in b[cid]["note"] and not a[cid]["note"].count("shipped")


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


def test_the_seed_noise_names_its_recipe_when_the_judged_experiment_ran_another(bare):
    """The batch-size and learning-rate verdicts borrow the seeds preset's noise; when those seeds
    ran on another recipe (seed-plain) than the judged points (the default), the note says so."""
    grid = {"norm": ["batch", "group", "layer"], "batch_size": [2, 128]}
    fake_preset(bare, "batch-size", {("batch", 2): 0.30, ("batch", 128): 0.61, ("group", 2): 0.60,
                                     ("group", 128): 0.60, ("layer", 2): 0.59, ("layer", 128): 0.60}, grid)
    norms = ["batch", "group", "layer"]
    plain = {(s, n, "plain"): 0.80 + s / 100 for s in (0, 1) for n in norms}
    fake_preset(bare, "seeds", plain, {"seed": [0, 1], "norm": norms, "arch": ["plain"]})
    row = {r["id"]: r for r in evaluate(bare)}["gn-small-batches"]
    assert row["recipes"] == ["default"]
    assert "(seeds preset, on the seed-plain recipe)" in row["note"]
    default = {(s, n): 0.80 + s / 100 for s in (0, 1) for n in norms}
    fake_preset(bare, "seeds", default, {"seed": [0, 1], "norm": norms})  # newer
    assert "(seeds preset)" in {r["id"]: r for r in evaluate(bare)}["gn-small-batches"]["note"]


def test_training_speed_counts_epochs_to_70_percent(store):
    seeds = {"seed": [0, 1], "norm": ["batch", "none"]}
    curve = {(s, "batch"): [0.5, 0.72, 0.8] for s in (0, 1)}
    curve |= {(s, "none"): [0.3, 0.5, 0.71] for s in (0, 1)}
    fake_preset(store, "seeds", {k: v[-1] for k, v in curve.items()}, seeds, curve)
    row = next(r for r in evaluate(store) if r["id"] == "bn-speed")
    assert row["verdict"] == Verdict.HOLDS and "BN 2.0 ± 0.0 / 2.0 ± 0.0, none 3.0" in row["figure"]
    assert row["evidence"]["speed"]["none"]["images_to_70"] == [3 * 50_000] * 2
    curve = {(s, "batch"): [0.5, 0.6, 0.8] for s in (0, 1)}
    curve |= {(s, "none"): [0.71, 0.72, 0.73] for s in (0, 1)}
    fake_preset(store, "seeds", {k: v[-1] for k, v in curve.items()}, seeds, curve)
    assert verdicts(store)["bn-speed"] == Verdict.DOES_NOT_HOLD


def test_a_batch_dependent_layernorm_run_would_not_hold(bare):
    store = bare
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
    at = pages.open("claims")  # nothing shipped shows (the fixture hides the reference runs)
    assert any(b.label == "Run the learning-rate preset" for b in at.button)
    pages.monkeypatch.delenv("CIFAR_APP_REFERENCE_RUNS")  # as on a fresh install
    pages.monkeypatch.setenv("CIFAR_APP_RUNS", str(tmp_path / "fresh"))  # (a store is kept per folder)
    at = pages.open("claims")
    assert len(at.get("plotly_chart")) >= 10 and not at.exception
    # every claim is measured, every shipped preset on today's default: no row asks to measure again
    # (a row whose results ran on another recipe does, with its button: tests/test_recipes.py)
    asked = set(re.findall(r"run the (\S+) preset to measure it on the default",
                           "\n".join(c.value for c in at.caption)))
    offered = {b.label.removeprefix("Run the ").removesuffix(" preset") for b in at.button
               if b.label.startswith("Run the")}
    assert offered == asked == set()


def landscape_records(ics: float, beta: float, loss_range: float = 0.1) -> list[dict]:
    return [{"step": step, "epoch": 1, "lr": 0.1, "loss": 2.0, "grad_norm": 1.0, "multipliers": [1.0],
             "losses": [2.0], "grad_change": [0.1], "loss_range": loss_range, "predictiveness": 0.1,
             "beta": beta, "seconds": 0.1,
             "blocks": {b: {"grad_norm": 1.0, "ics_l2": 0.1, "ics_cos": 1 - ics} for b in ("C1", "C2")}}
            for step in (0, 10, 20)]


def test_the_ics_verdict_follows_the_stored_probes(bare):
    grid = {"norm": ["none", "batch"], "seed": [0, 1]}
    keys = [(n, s) for n in ("none", "batch") for s in (0, 1)]
    fake_preset(bare, "landscape", {k: 0.5 for k in keys}, grid, landscape={
        ("none", 0): landscape_records(0.50, 30), ("none", 1): landscape_records(0.52, 31),
        ("batch", 0): landscape_records(0.20, 10), ("batch", 1): landscape_records(0.22, 11)})
    row = next(r for r in evaluate(bare) if r["id"] == "bn-ics")
    assert row["verdict"] == Verdict.HOLDS and "BN 0.210" in row["figure"]
    fake_preset(bare, "landscape", {k: 0.5 for k in keys}, grid, landscape={
        ("none", 0): landscape_records(0.20, 30), ("none", 1): landscape_records(0.22, 31),
        ("batch", 0): landscape_records(0.50, 10), ("batch", 1): landscape_records(0.52, 11)})
    assert verdicts(bare)["bn-ics"] == Verdict.DOES_NOT_HOLD  # Santurkar et al.'s finding
    fake_preset(bare, "landscape", {k: 0.5 for k in keys}, grid, landscape={
        ("none", 0): landscape_records(0.20, 30), ("none", 1): landscape_records(0.50, 31),
        ("batch", 0): landscape_records(0.30, 10), ("batch", 1): landscape_records(0.32, 11)})
    assert verdicts(bare)["bn-ics"] == Verdict.WITHIN_NOISE


def test_the_learning_rate_claim_needs_tame_gradients_once_they_are_measured(bare):
    grid = {"norm": ["none", "batch"], "max_lr": PRESETS["learning-rate"].grid["max_lr"]}
    fake_preset(bare, "learning-rate", {("none", 0.1): 0.30, ("batch", 0.8): 0.62}, grid)
    row = next(r for r in evaluate(bare) if r["id"] == "bn-higher-lr")
    assert row["verdict"] == Verdict.HOLDS and "gradients: not measured yet" in row["note"]
    lgrid = {"norm": ["none", "batch"], "seed": [0]}
    fake_preset(bare, "landscape", {("none", 0): 0.5, ("batch", 0): 0.5}, lgrid, landscape={
        ("none", 0): landscape_records(0.5, 5), ("batch", 0): landscape_records(0.5, 50)})
    assert verdicts(bare)["bn-higher-lr"] == Verdict.DOES_NOT_HOLD  # BN's landscape is rougher


def test_the_regularization_verdict_compares_train_test_gaps(bare):
    grid = {"norm": ["none", "batch", "group"], "seed": [0, 1, 2]}
    test = {(n, s): a for s in (0, 1, 2) for n, a in (("none", 0.50), ("batch", 0.60), ("group", 0.55))}
    train = {(n, s): a + s / 100 for s in (0, 1, 2) for n, a in (("none", 0.99), ("batch", 0.80),
                                                              ("group", 0.90))}
    fake_preset(bare, "regularization", test, grid, train=train)
    row = next(r for r in evaluate(bare) if r["id"] == "bn-regularizes")
    assert row["verdict"] == Verdict.HOLDS and "BN 21.0 ± 1.0" in row["figure"] and "GN" in row["figure"]
    train = {(n, s): a + s / 100 for s in (0, 1, 2) for n, a in (("none", 0.60), ("batch", 0.95),
                                                              ("group", 0.90))}
    fake_preset(bare, "regularization", test, grid, train=train)
    assert verdicts(bare)["bn-regularizes"] == Verdict.DOES_NOT_HOLD
    test[("none", 0)] = test[("none", 1)] = 0.10  # two of three runs without a norm collapse
    fake_preset(bare, "regularization", test, grid, train=train)
    row = next(r for r in evaluate(bare) if r["id"] == "bn-regularizes")
    assert row["verdict"] == Verdict.NOT_MEASURED and "2 collapsed" in row["note"]


def test_the_groups_verdict_asks_for_a_middle_g_beyond_noise(bare):
    grid = {"norm": ["group", "instance"], "groups": [1, 2, 4, 8], "seed": [0, 1]}

    def results(accs: dict) -> dict:
        out = {}
        for (norm, g), a in accs.items():
            for s in (0, 1):
                out[(norm, g, s)] = a + s / 200
        return out

    fake_preset(bare, "groups", results({("group", 1): 0.50, ("group", 2): 0.55, ("group", 4): 0.58,
                                         ("group", 8): 0.56, ("instance", 4): 0.45}), grid)
    row = next(r for r in evaluate(bare) if r["id"] == "gn-channels")
    assert row["verdict"] == Verdict.HOLDS and "G = C (IN)" in row["figure"] and "G = 4" in row["figure"]
    fake_preset(bare, "groups", results({("group", 1): 0.60, ("group", 2): 0.55, ("group", 4): 0.58,
                                         ("group", 8): 0.56, ("instance", 4): 0.45}), grid)
    assert verdicts(bare)["gn-channels"] == Verdict.DOES_NOT_HOLD  # LN is best
    fake_preset(bare, "groups", results({("group", 1): 0.579, ("group", 2): 0.55, ("group", 4): 0.58,
                                         ("group", 8): 0.56, ("instance", 4): 0.45}), grid)
    assert verdicts(bare)["gn-channels"] == Verdict.WITHIN_NOISE


def test_the_seed_layernorm_accuracy_joins_the_parameter_row(bare):
    grid = {"norm": ["layer", "layer-chw"], "seed": [0, 1]}
    fake_preset(bare, "seed-layernorm", {("layer", 0): 0.50, ("layer", 1): 0.52, ("layer-chw", 0): 0.40,
                                         ("layer-chw", 1): 0.42}, grid)
    row = next(r for r in evaluate(bare) if r["id"] == "ln-params")
    assert "without affine 41.00 ± 1.41%" in row["figure"] and row["experiment"]
