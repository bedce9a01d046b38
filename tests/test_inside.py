"""Inside the network: probe records during training, kept through kills, drawn on the Inside page."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
import torch

from cifar_app.core.engine import Hooks, train
from cifar_app.core.model import ARCHITECTURES, DEFAULT_ARCH
from cifar_app.core.settings import TrainSettings
from cifar_app.store.jobs import execute_run
from cifar_app.store.runstore import RunStore
from cifar_app.web.charts import bn_running_vs_batch, inside_bands, inside_norms
from tests.conftest import synthetic_data

ROOT = Path(__file__).resolve().parent.parent
QUICK = dict(epochs=2, batch_size=50, max_lr=0.05, device="cpu")
LAYERS = ["C1", "C2", "C3", "C4", "C5", "C7", "C8", "C9"]


@pytest.mark.parametrize("norm", ["batch", "group", "none"])
def test_every_epoch_and_the_init_get_a_probe_record_for_every_block(tmp_path, norm):
    store = RunStore(tmp_path / "runs", reference_root=None)
    run = store.create(TrainSettings(norm=norm, **QUICK))
    execute_run(store, run.id, data=synthetic_data(200, 300))
    records = run.inside()
    assert [r["epoch"] for r in records] == [0, 1, 2]
    for r in records:
        assert list(r["layers"]) == LAYERS and r["seconds"] > 0
        for layer in r["layers"].values():
            for where in ("pre", "post"):
                s = layer[where]
                assert s["p1"] <= s["p20"] <= s["p50"] <= s["p80"] <= s["p99"] and s["std"] >= 0
            assert layer["weight_norm"] > 0 and layer["grad_norm"] >= 0
            assert ("bn" in layer) == (norm == "batch")
    if norm == "batch":
        bn = records[-1]["layers"]["C1"]["bn"]
        assert len(bn["running_mean"]) == len(bn["batch_mean"]) == ARCHITECTURES[DEFAULT_ARCH].widths["C1"]
    if norm == "group":  # GroupNorm output is standardized per group: mean ~0 before the affine
        assert abs(records[0]["layers"]["C3"]["post"]["mean"]) < 0.05


def test_probing_does_not_change_training():
    data = synthetic_data(200, 300)
    settings = TrainSettings(norm="batch", **QUICK)
    probed = train(settings, data, Hooks(on_probe=lambda r: None))
    plain = train(settings, data)
    for a, b in zip(probed.model.state_dict().values(), plain.model.state_dict().values()):
        torch.testing.assert_close(a.float(), b.float(), atol=0, rtol=0)
    assert len(probed.inside) == 3 and plain.inside == []


def test_resume_keeps_the_probe_records_of_the_checkpoint(tmp_path):
    store = RunStore(tmp_path / "runs", reference_root=None)
    run = store.create(TrainSettings(norm="layer", **{**QUICK, "epochs": 3}))
    data = synthetic_data(200, 100)
    seen = []
    train(TrainSettings(norm="layer", **{**QUICK, "epochs": 3}), data,
          Hooks(checkpoint=run, on_epoch=seen.append, on_probe=run.append_inside),
          should_stop=lambda: len(seen) >= 2)
    run.append_inside({"epoch": 9, "layers": {}})  # a record from after the checkpoint
    run.update_status(state="stopped")
    execute_run(store, run.id, data=data, resume=True)
    assert [r["epoch"] for r in run.inside()] == [0, 1, 2, 3]


def test_inside_charts_draw_a_panel_per_run():
    records = [{"epoch": e, "layers": {"C1": {
        "pre": {"p1": 0, "p20": 0, "p50": 0.1, "p80": 0.5, "p99": 2, "mean": 0.3, "std": 0.5},
        "post": {"p1": -2, "p20": -0.8, "p50": 0, "p80": 0.8, "p99": 2, "mean": 0, "std": 1},
        "grad_norm": 0.1 * (e + 1), "weight_norm": 3.0,
        "bn": {"running_mean": [0.1, 0.2], "running_var": [1, 2], "batch_mean": [0.1, 0.3],
               "batch_var": [1, 2.5]}}}} for e in range(3)]
    series = [{"label": "a", "norm": "batch", "records": records},
              {"label": "b", "norm": "group", "records": records}]
    fig = inside_bands(series, "C1", "post")
    assert len(fig.data) == 2 * 5 and list(fig.data[4].y) == [0, 0, 0]  # 2 bands (2 traces) + median
    assert len(inside_norms(series, "grad_norm", "g").data) == 2
    assert len(bn_running_vs_batch(records[-1], "C1").data) == 4
    for fig in (inside_bands(series, "C1", "pre"), inside_norms(series, "weight_norm", "w")):
        epoch_axes = [a for a in fig.select_xaxes() if "epoch" in (a.title.text or "")]
        assert epoch_axes and all(a.dtick == 1 for a in epoch_axes)  # "0, 1, 2", never "0.5"
    many = [{**series[0], "label": f"run {k}"} for k in range(40)]  # plotly refused 18 side by side
    assert len(inside_bands(many, "C1", "post").data) == 40 * 5


def test_the_inside_page_shows_a_run(tmp_path, pages):
    pages.use(tmp_path / "runs")
    store = RunStore(tmp_path / "runs", reference_root=None)
    run = store.create(TrainSettings(norm="batch", **QUICK))
    execute_run(store, run.id, data=synthetic_data(200, 300))
    at = pages.open("inside")
    assert len(at.get("plotly_chart")) == 4  # bands, gradient norms, weight norms, BN statistics
    at.radio(key="inside_layer").set_value("C9").run()
    at.radio(key="inside_where").set_value("pre").run()
    assert not at.exception and len(at.get("plotly_chart")) == 4
    assert not at.get("bidi_component")  # a finished run: nothing live
    # while it trains, its live progress line stands in for polling (it re-runs the charts' fragment
    # when an epoch and its probe record arrive)
    run.update_status(state="running", pid=os.getpid(), heartbeat=time.time())
    at.run()
    views = [json.loads(e.proto.json) for e in at.get("bidi_component")]
    assert [(v["view"], v["run"], v["probes"]) for v in views] == [("progress", run.id, 3)]
    assert not at.exception and len(at.get("plotly_chart")) == 4


# ------------------------------------------------------------------ batch dependence at inference


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory):
    store = RunStore(tmp_path_factory.mktemp("bd") / "runs", reference_root=None)
    data = synthetic_data(300, 400)
    runs = {}
    for norm in ("batch", "group", "layer", "none"):
        run = store.create(TrainSettings(norm=norm, epochs=2, batch_size=50, max_lr=0.05, device="cpu"))
        execute_run(store, run.id, data=data)
        runs[norm] = run
    return store, runs, data


@pytest.mark.parametrize("norm", ["group", "layer", "none"])
def test_per_image_norms_give_the_same_answer_at_every_test_batch_size(tiny_models, norm):
    from cifar_app.lab.batchdep import TEST_BATCH_SIZES, batch_dependence
    from cifar_app.store.inference import load_model

    _, runs, data = tiny_models
    r = batch_dependence(load_model(runs[norm]), data)
    assert set(r.batch_stats) == set(TEST_BATCH_SIZES) and r.n_test == 400
    assert all(n <= 2 for n in r.differ_from_eval.values()), r.differ_from_eval  # float rounding only
    assert all(abs(a - r.eval_acc) <= 2 / 400 for a in r.batch_stats.values())
    assert r.precise_bn_acc is None


def test_batchnorm_depends_on_the_test_batch_and_precise_bn_is_measured(tiny_models):
    from cifar_app.lab.batchdep import BatchDependence, batch_dependence
    from cifar_app.store.inference import load_model

    _, runs, data = tiny_models
    loaded = load_model(runs["batch"])
    before = {k: v.clone() for k, v in loaded.model.state_dict().items()}
    r = batch_dependence(loaded, data)  # one thread (conftest): with two, the suite saw it pass 300 s
    assert r.differ_from_eval[1] > r.differ_from_eval[128] and r.differ_from_eval[1] > 10
    assert r.precise_bn_acc is not None and r.precise_bn_images == 300
    for k, v in loaded.model.state_dict().items():  # nothing stored was changed
        torch.testing.assert_close(v, before[k], atol=0, rtol=0)
    assert BatchDependence.from_dict(r.to_dict()) == r


def test_the_registry_says_which_norms_use_batch_statistics(tiny_models, monkeypatch):
    """Batch dependence and the probe's BatchNorm statistics follow ``Norm.batch_statistics`` (the
    registry), not the layer's class: the same BN model, its entry saying it keeps no batch
    statistics, is measured as a per-image norm."""
    import dataclasses

    from cifar_app.core import norms
    from cifar_app.core.inside import probe_record
    from cifar_app.lab.batchdep import batch_dependence
    from cifar_app.store.inference import load_model

    _, runs, data = tiny_models
    loaded = load_model(runs["batch"])
    x, y = data.test_x[:16].float() / 255, data.test_y[:16]
    assert "bn" in probe_record(loaded.model, x, y, 0)["layers"]["C1"]
    monkeypatch.setitem(norms.REGISTRY, "batch",
                        dataclasses.replace(norms.REGISTRY["batch"], batch_statistics=False))
    r = batch_dependence(loaded, data, batch_sizes=(1, 8))
    assert r.precise_bn_acc is None and r.differ_from_eval == {1: 0, 8: 0}
    assert "bn" not in probe_record(loaded.model, x, y, 0)["layers"]["C1"]


def test_cli_batchdep_caches_the_result_with_the_run(tiny_models, tmp_path):
    import json
    import subprocess
    import sys

    from tests.conftest import write_image_tree

    store, runs, _ = tiny_models
    data_dir = write_image_tree(tmp_path / "data", per_class_train=3, per_class_test=3)
    out = subprocess.run([sys.executable, "-m", "cifar_app", "batchdep", runs["batch"].id, "--runs-dir",
                          str(store.root), "--data", str(data_dir), "--json"], capture_output=True,
                         text=True, timeout=240)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["n_test"] == 30
    assert runs["batch"].load_result("batchdep")["n_test"] == 30


def test_an_image_alone_and_in_a_batch_differs_only_for_batchnorm(tiny_models):
    import numpy as np

    from cifar_app.lab.batchdep import alone_and_in_batch
    from cifar_app.store.inference import load_model

    _, runs, data = tiny_models
    image = data.test_x[0].permute(1, 2, 0).numpy()
    for norm in ("batch", "group", "layer"):
        ways = alone_and_in_batch(load_model(runs[norm]), image, data.test_x[1:64])
        probs = [p.numpy() for p in ways.values()]
        assert list(ways)[2] == "in a batch of 64" and all(abs(p.sum() - 1) < 1e-5 for p in probs)
        if norm == "batch":
            assert not np.allclose(probs[1], probs[2], atol=1e-3)  # alone vs in a batch
        else:
            assert np.allclose(probs[0], probs[1], atol=1e-5) and np.allclose(probs[1], probs[2], atol=1e-5)


def test_classify_shows_alone_and_in_batch_scores(monkeypatch, tmp_path, tiny_models, pages):
    import io

    from PIL import Image

    from tests.conftest import write_image_tree

    store, runs, _ = tiny_models
    pages.use(store.root, write_image_tree(tmp_path / "data", 2, 13))
    at = pages.open("classify", timeout=60, check=False)
    at.toggle(key="cls_batch").set_value(True).run()
    buf = io.BytesIO()
    Image.new("RGB", (40, 40), (200, 30, 30)).save(buf, "PNG")
    at.file_uploader(key="cls_files").set_value(("red.png", buf.getvalue(), "image/png")).run()
    assert not at.exception, [e.value for e in at.exception]
    captions = [c.value for c in at.caption if "own statistics" in c.value]
    assert len(captions) == 4 and all("in a batch of 128" in c for c in captions)


def test_the_disagreement_tab_counts_patterns_and_shows_their_images(tmp_path, tiny_models, pages):
    from tests.conftest import write_image_tree

    store, runs, _ = tiny_models
    pages.use(store.root, write_image_tree(tmp_path / "data", 2, 5))
    at = pages.open("misclassified", timeout=60, check=False)
    assert not at.exception, [e.value for e in at.exception]
    assert len(at.multiselect(key="dis_runs").value) == 4
    table = pattern_table(at)
    assert table["images"].sum() == 50  # every test image falls in exactly one pattern
    assert all(p in ("all right", "all wrong") or ("right; " in p and p.endswith("wrong"))
               for p in table["pattern"])
    at.multiselect(key="dis_runs").set_value([runs["batch"].id, runs["group"].id]).run()
    assert not at.exception and pattern_table(at)["images"].sum() == 50


def test_the_model_pickers_offer_the_newest_runs_and_those_chosen_beyond_them(tmp_path, tiny_models, pages,
                                                                           monkeypatch):
    """Classify's and the disagreement tab's pickers offered every completed run (10,000 names
    sent on every rerun); they offer the newest ``MAX_OPTIONS`` and those chosen, like Compare's."""
    from cifar_app.web import ui

    store, runs, _ = tiny_models
    pages.use(store.root)
    monkeypatch.setattr(ui, "MAX_OPTIONS", 2)
    newest = [s.id for s in store.summaries()]
    at = pages.open("classify", check=False)
    assert not at.exception and at.selectbox(key="cls_run").options[1:] == [
        ui.run_labels(store.summaries()[:2])[i] for i in newest[:2]]
    at = pages.open("misclassified", check=False)
    offered = at.multiselect(key="dis_runs").options
    assert not at.exception and len(at.multiselect(key="dis_runs").value) == 4 and len(offered) == 4
    assert "offers the 2 newest of 4 runs" in str([c.value for c in at.caption])
    at.multiselect(key="dis_runs").set_value(newest[:2]).run()  # none chosen beyond the newest now
    assert not at.exception and len(at.multiselect(key="dis_runs").options) == 2


def test_a_link_reaches_the_runs_a_picker_does_not_offer(tmp_path, tiny_models, pages, monkeypatch):
    """Past the newest ``MAX_OPTIONS`` runs, Inside, Classify and the disagreement tab could not
    reach a run (Compare and Train had ``?runs=`` and ``?run=``). The Runs page's buttons open
    them with the runs selected there; a link picks once, and the user's choice after it stays."""
    import shutil

    from cifar_app.web import ui

    source, _, _ = tiny_models
    for k, s in enumerate(source.summaries() * 2):  # 8 runs with models and probes
        shutil.copytree(source.root / s.id, tmp_path / "runs" / f"20300101-000000-copy-{k:06d}",
                        copy_function=os.link)
    store = RunStore(tmp_path / "runs", reference_root=None)
    pages.use(store.root)
    monkeypatch.setattr(ui, "MAX_OPTIONS", 1)
    newest = [s.id for s in store.summaries()]
    old, older = newest[-1], newest[-2]  # neither offered
    at = pages.open("classify", {"run": old})
    assert at.selectbox(key="cls_run").value == old
    at.selectbox(key="cls_run").set_value(newest[0]).run()
    assert not at.exception and at.selectbox(key="cls_run").value == newest[0]  # the user's, not the link's
    assert at.query_params["run"] == newest[0]  # the address names the model shown
    at.selectbox(key="cls_run").set_value("all normalizations side by side").run()
    assert "run" not in at.query_params
    at = pages.open("misclassified", {"runs": f"{old},nope,{older},{old}"}, check=False)
    assert not at.exception and at.multiselect(key="dis_runs").value == [old, older]
    assert _tab_container(at).default_tab_index == 1  # the "Where runs disagree" tab
    at = pages.open("misclassified", {"runs": ",".join(newest[::-1] + newest)}, check=False)
    assert at.multiselect(key="dis_runs").value == newest[::-1][:4]  # the tab compares four at most
    assert len(newest) == 8
    assert _tab_container(pages.open("misclassified", check=False)).default_tab_index == 0
    junk = pages.open("misclassified", {"runs": ",,nope,"}, check=False)
    assert _tab_container(junk).default_tab_index == 0
    at = pages.open("inside", {"runs": ",".join(newest[::-1])})  # 8 runs linked, as many as it shows
    assert at.multiselect(key="inside_runs").value == newest[::-1]
    at = pages.open("inside", {"runs": f"{older},{old}"})
    assert at.multiselect(key="inside_runs").value == [older, old]
    at.multiselect(key="inside_runs").set_value([old]).run()
    assert not at.exception and at.multiselect(key="inside_runs").value == [old]


def _tab_container(at):
    [tabs] = at.get("tab_container")
    return tabs.proto.tab_container


def pattern_table(at):
    [table] = [d.value for d in at.dataframe if "pattern" in d.value.columns]
    return table


# ------------------------------------------------------------------ attribution


def test_gradcam_and_integrated_gradients_are_heatmaps_for_the_asked_class(tiny_models):
    import numpy as np

    from cifar_app.lab.attribution import gradcam, integrated_gradients, layer_resolution, overlay
    from cifar_app.store.inference import load_model

    _, runs, data = tiny_models
    loaded = load_model(runs["group"])
    image = data.test_x[0].permute(1, 2, 0).numpy()
    maps = [gradcam(loaded, image, c, "C7") for c in range(10)]
    assert all(m.shape == (32, 32) and m.min() >= 0 and m.max() <= 1 for m in maps)
    assert any(not np.allclose(maps[0], m) for m in maps[1:])  # the class changes the map
    assert layer_resolution(loaded, "C9") == 8 and layer_resolution(loaded, "C1") == 32
    ig = integrated_gradients(loaded, image, int(data.test_y[0]), steps=8)
    assert ig.shape == (32, 32) and ig.max() == 1.0
    assert overlay(image, ig).shape == (160, 160, 3)
    assert not loaded.model.training  # eval mode


def test_misclassified_and_classify_show_attribution(monkeypatch, tmp_path, tiny_models, pages):
    import io

    from PIL import Image

    from tests.conftest import write_image_tree

    store, runs, _ = tiny_models
    pages.use(store.root, write_image_tree(tmp_path / "data", 2, 5))
    at = pages.open("misclassified", timeout=120, check=False)
    assert not at.exception, [e.value for e in at.exception]
    assert not any("Grad-CAM" in c for img in at.get("image") for c in img.captions)  # on demand
    at.toggle(key="mis_explain_on").set_value(True).run()
    assert not at.exception, [e.value for e in at.exception]
    captions = [c for img in at.get("image") for c in img.captions]
    assert sum(c.startswith("Grad-CAM: predicted") or c.startswith("Grad-CAM: true") for c in captions) == 2
    assert any(c.startswith("Integrated Gradients: predicted") for c in captions)
    at = pages.open("classify", timeout=120)
    at.toggle(key="cls_cam").set_value(True).run()
    buf = io.BytesIO()
    Image.new("RGB", (40, 40), (20, 30, 200)).save(buf, "PNG")
    at.file_uploader(key="cls_files").set_value(("blue.png", buf.getvalue(), "image/png")).run()
    assert not at.exception, [e.value for e in at.exception]
    captions = [c for img in at.get("image") for c in img.captions]
    assert sum(c.startswith("Grad-CAM (C9") for c in captions) == 4  # one per normalization


def test_the_inside_page_survives_a_damaged_probe_log_and_twin_labels(tmp_path, pages):
    """Two BatchNorm runs with the same label each get their chart; a third run whose probe log is
    damaged is not chosen by default (though newest), and chosen, it says so while the page draws."""
    pages.use(tmp_path / "runs")
    store = RunStore(tmp_path / "runs", reference_root=None)
    for _ in range(3):
        run = store.create(TrainSettings(norm="batch", **QUICK), label="twin")
        execute_run(store, run.id, data=synthetic_data(200, 300))
    (run.path / "inside.jsonl").write_text('{"epoch": "x"}\n{"broken\n')
    at = pages.open("inside")
    assert not at.exception and len(at.get("plotly_chart")) >= 4
    assert at.multiselect(key="inside_runs").value and run.id not in at.multiselect(key="inside_runs").value
    at.multiselect(key="inside_runs").select(run.id).run()
    assert not at.exception and len(at.get("plotly_chart")) >= 4
    assert any("not a probe record" in e.value for e in at.error), [e.value for e in at.error]


def test_the_inside_page_reads_the_probe_records_of_the_chosen_runs_only(tmp_path, pages, monkeypatch):
    """At 10,000 runs the page read every run's probe log to find those that have one (54 s); then
    it stat'ed each run's at every rerun (0.34 s). Which runs have them is now in the run index;
    only the runs drawn are read, and the list offers the ``MAX_OPTIONS`` newest and those chosen,
    like Compare's."""
    import shutil

    from cifar_app.store.run import Run
    from cifar_app.web import ui

    pages.use(tmp_path / "runs")
    store = RunStore(tmp_path / "runs", reference_root=None)
    first = store.create(TrainSettings(norm="group", **QUICK), label="the first")
    execute_run(store, first.id, data=synthetic_data(200, 300))
    for i in range(29):
        shutil.copytree(first.path, tmp_path / "runs" / f"20300101-000000-copy-{i:06d}",
                        copy_function=os.link)
    plain = store.create(TrainSettings(norm="batch", **QUICK), label="no probes")  # none recorded
    monkeypatch.setattr(ui, "MAX_OPTIONS", 25)
    read: list[str] = []
    real = Run.inside
    monkeypatch.setattr(Run, "inside", lambda run: read.append(run.id) or real(run))
    at = pages.open("inside")
    chosen = at.multiselect(key="inside_runs").value
    assert chosen == ["20300101-000000-copy-000028"] and set(read) == set(chosen)  # the newest GN run
    options = at.multiselect(key="inside_runs").options
    assert len(options) == 25 and plain.id not in str(options) and "25 newest of 30 runs" in str(
        [c.value for c in at.caption])
    read.clear()
    at.multiselect(key="inside_runs").select(first.id).run()  # the oldest, beyond the 25 offered
    assert not at.exception and set(read) == {first.id, *chosen}
    assert len(at.multiselect(key="inside_runs").options) == 26
    looked: list[str] = []
    real_has = Run.has_inside
    monkeypatch.setattr(Run, "has_inside", lambda run: looked.append(run.id) or real_has(run))
    at.run()
    assert not at.exception and looked == []  # no run's probe log is looked at to list them
