"""Inside the network: probe records during training, kept through kills, drawn on the Inside page."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from cifar_app.charts import bn_running_vs_batch, inside_bands, inside_norms
from cifar_app.engine import train
from cifar_app.jobs import execute_run
from cifar_app.runstore import RunStore
from cifar_app.settings import TrainSettings
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
        assert len(bn["running_mean"]) == len(bn["batch_mean"]) == 16
    if norm == "group":  # GroupNorm output is standardized per group: mean ~0 before the affine
        assert abs(records[0]["layers"]["C3"]["post"]["mean"]) < 0.05


def test_probing_does_not_change_training():
    data = synthetic_data(200, 300)
    settings = TrainSettings(norm="batch", **QUICK)
    probed = train(settings, data, on_inside=lambda r: None)
    plain = train(settings, data)
    for a, b in zip(probed.model.state_dict().values(), plain.model.state_dict().values()):
        torch.testing.assert_close(a.float(), b.float(), atol=0, rtol=0)
    assert len(probed.inside) == 3 and plain.inside == []


def test_resume_keeps_the_probe_records_of_the_checkpoint(tmp_path):
    store = RunStore(tmp_path / "runs", reference_root=None)
    run = store.create(TrainSettings(norm="layer", **{**QUICK, "epochs": 3}))
    data = synthetic_data(200, 100)
    seen = []
    train(TrainSettings(norm="layer", **{**QUICK, "epochs": 3}), data, checkpoint=run,
          on_epoch=seen.append, should_stop=lambda: len(seen) >= 2, on_inside=run.append_inside)
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


def test_the_inside_page_shows_a_run(monkeypatch, tmp_path):
    from streamlit import config
    from streamlit.runtime.caching import cache_resource
    from streamlit.testing.v1 import AppTest

    config.set_option("server.address", "127.0.0.1")
    monkeypatch.setenv("CIFAR_APP_RUNS", str(tmp_path / "runs"))
    monkeypatch.setenv("CIFAR_APP_REFERENCE_RUNS", "")
    cache_resource.clear()
    store = RunStore(tmp_path / "runs", reference_root=None)
    run = store.create(TrainSettings(norm="batch", **QUICK))
    execute_run(store, run.id, data=synthetic_data(200, 300))
    at = AppTest.from_file(str(ROOT / "pages/inside.py"), default_timeout=60)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert len(at.get("plotly_chart")) == 4  # bands, gradient norms, weight norms, BN statistics
    at.radio(key="inside_layer").set_value("C9").run()
    at.radio(key="inside_where").set_value("pre").run()
    assert not at.exception and len(at.get("plotly_chart")) == 4
