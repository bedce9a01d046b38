"""bf16 training on CPUs that have it: what ``precision`` resolves to, what a run records, and the
accuracy verdict that ``auto`` waits for."""

from __future__ import annotations

import json

import pytest
import torch

from cifar_app.core import precision
from cifar_app.core.engine import train
from cifar_app.core.settings import SettingsError, TrainSettings
from cifar_app.store import results
from cifar_app.store.jobs import execute_run
from cifar_app.store.runstore import RunStore
from tests.conftest import synthetic_data

CPU = torch.device("cpu")


@pytest.fixture
def bf16_cpu(monkeypatch):
    monkeypatch.setattr(precision, "cpu_flags", lambda: frozenset({"avx512f", "avx512_bf16"}))


@pytest.fixture
def plain_cpu(monkeypatch):
    monkeypatch.setattr(precision, "cpu_flags", lambda: frozenset({"avx2"}))


def seeds_file(path, accs: dict[str, list[float]], **recipe) -> None:
    points = [{"id": None, "settings": TrainSettings(norm=n, seed=i, **recipe).to_dict(),
               "status": "completed",
               "final_test_acc": a, "best_test_acc": a, "seconds": 1.0}
              for n, xs in accs.items() for i, a in enumerate(xs)]
    path.write_text(json.dumps({"experiment": "exp-x", "preset": "seeds", "points": points}))


def test_fp32_and_gpus_resolve_without_measuring(plain_cpu, monkeypatch):
    monkeypatch.setattr(precision, "speedup", lambda *a, **k: pytest.fail("measured"))
    assert precision.resolve("fp32", CPU, "batch")[0] == "fp32"
    assert precision.resolve("auto", torch.device("cuda"), "batch")[0] == "bf16"
    assert precision.resolve("fp32", torch.device("cuda"), "batch")[0] == "fp32"
    assert precision.resolve("auto", torch.device("mps"), "batch")[0] == "fp32"
    assert precision.resolve("auto", CPU, "batch") == ("fp32", "auto: this CPU has no bf16 instructions")
    with pytest.raises(RuntimeError, match="no bf16 instructions"):
        precision.resolve("bf16", CPU, "batch")
    with pytest.raises(SettingsError):
        TrainSettings(precision="fp16").validate()


def test_auto_takes_bf16_only_when_accurate_and_faster(bf16_cpu, monkeypatch, tmp_path):
    fp32, bf16 = tmp_path / "fp32.json", tmp_path / "bf16.json"
    seeds_file(fp32, {"batch": [0.81, 0.812, 0.818], "group": [0.814, 0.809, 0.813]})
    monkeypatch.setenv("CIFAR_APP_BF16_RESULTS", str(bf16))
    monkeypatch.setattr(results, "FP32_SEEDS", fp32)
    monkeypatch.setattr(precision, "speedup", lambda norm, *a, **k: {"batch": 1.7, "group": 1.01}[norm])
    assert results.resolve_precision("auto", CPU, "batch")[0] == "fp32"  # no bf16 accuracy yet
    seeds_file(bf16, {"batch": [0.812, 0.809, 0.815], "group": [0.811, 0.81, 0.812]})
    assert results.resolve_precision("auto", CPU, "batch") == ("bf16",
                                                               "auto: bf16 is 1.70x faster for batch here")
    assert results.resolve_precision("auto", CPU, "group")[0] == "fp32"  # not faster for GN
    seeds_file(bf16, {"batch": [0.79, 0.795, 0.791], "group": [0.811, 0.81, 0.812]})  # 2 points lost
    assert results.bf16_verdict(bf16, fp32)["norms"]["batch"]["within_noise"] is False
    assert results.resolve_precision("auto", CPU, "batch")[0] == "fp32"


def test_bf16_is_judged_only_against_fp32_seeds_of_the_same_recipe(tmp_path):
    """A bf16-seeds preset run on today's default recipe says nothing against fp32 seeds of the
    seed-plain recipe: the recipes differ by more than the arithmetic."""
    fp32, bf16 = tmp_path / "fp32.json", tmp_path / "bf16.json"
    seeds_file(fp32, {"batch": [0.81, 0.812, 0.818], "group": [0.814, 0.809, 0.813]}, arch="plain")
    seeds_file(bf16, {"batch": [0.84, 0.845, 0.843], "group": [0.79, 0.80, 0.795]})  # the default
    assert results.bf16_verdict(bf16, fp32) is None
    seeds_file(bf16, {"batch": [0.812, 0.809, 0.815], "group": [0.79, 0.80, 0.795]}, arch="plain")
    assert results.bf16_verdict(bf16, fp32)["within_noise"] is False  # same recipe: GN judged
    seeds_file(bf16, {"batch": [0.812, 0.809, 0.815]}, arch="plain")
    with bf16.open("r+") as f:  # GN's points on another recipe (dropout): BN alone is compared
        d = json.load(f)
        d["points"] += [{**d["points"][0], "settings": TrainSettings(norm="group", seed=i, arch="plain",
                                                                     dropout=0.1).to_dict()}
                        for i in range(3)]
        f.seek(0), f.truncate(), json.dump(d, f)
    assert set(results.bf16_verdict(bf16, fp32)["norms"]) == {"batch"}


def test_the_speed_measurement_is_cached_per_machine(bf16_cpu, monkeypatch):
    calls = []
    def step(norm, arch, batch, bf16, steps=6):
        calls.append(bf16)
        return 300.0 if bf16 else 200.0

    monkeypatch.setattr(precision, "step_images_per_s", step)
    assert precision.speedup("batch") == 1.5 and len(calls) == 4
    assert precision.speedup("batch") == 1.5 and len(calls) == 4  # from the cache
    assert precision.speedup("group", measure=False) is None


@pytest.mark.skipif(not precision.cpu_bf16(), reason="this CPU has no bf16 instructions")
def test_a_bf16_run_trains_records_its_precision_and_is_not_fp32(tmp_path):
    data = synthetic_data(256, 64)
    s = TrainSettings(norm="batch", epochs=1, batch_size=64, device="cpu")
    a = train(s.replace(precision="fp32"), data)
    b = train(s.replace(precision="bf16"), data)
    assert a.arithmetic == "fp32" and b.arithmetic == "bf16"
    assert not torch.equal(a.model.layers["C1"][0].weight, b.model.layers["C1"][0].weight)
    assert b.model.layers["C1"][0].weight.dtype == torch.float32  # fp32 master weights
    store = RunStore(tmp_path / "runs", reference_root=None)
    run = store.create(s.replace(precision="bf16"))
    execute_run(store, run.id, data=data)
    st = run.status()
    assert st["precision"] == "bf16" and st["reproducible_against_fp32"] is False
    assert "avx512_bf16" in st["cpu_flags"] or "amx_bf16" in st["cpu_flags"]


@pytest.mark.parametrize("norm,groups,device,arithmetic,layout", [
    ("group", 4, "cpu", "bf16", torch.contiguous_format),   # bf16 GroupNorm(G > 1) is slow channels_last
    ("ws-group", 2, "cpu", "bf16", torch.contiguous_format),
    ("group", 4, "cpu", "fp32", torch.channels_last),
    ("group", 1, "cpu", "bf16", torch.channels_last),       # one group: the fast kernel
    ("layer", 4, "cpu", "bf16", torch.channels_last),
    ("batch", 4, "cpu", "bf16", torch.channels_last),
    ("group", 4, "cuda", "bf16", torch.channels_last),
    ("batch", 4, "mps", "fp32", torch.contiguous_format),
])
def test_the_training_layout_follows_the_norm_layers_and_arithmetic(norm, groups, device, arithmetic, layout):
    from cifar_app.core.model import build_model

    model = build_model(norm, groups)
    assert precision.memory_format(model, torch.device(device), arithmetic) == layout


def test_the_engine_trains_in_that_layout(monkeypatch):
    from cifar_app.core import engine

    seen = []
    real = engine.memory_format
    monkeypatch.setattr(engine, "memory_format", lambda *a: seen.append(real(*a)) or seen[-1])
    monkeypatch.setattr(engine, "resolve", lambda *a: ("bf16", "test"))  # bf16 autocast runs anywhere
    settings = TrainSettings(norm="group", epochs=1, batch_size=50, device="cpu")
    result = train(settings, synthetic_data(100, 20))
    assert seen == [torch.contiguous_format]
    conv = result.model.blocks()["C1"].conv.weight  # a full 3x3 conv (a depthwise one has C = 1)
    assert conv.is_contiguous() and not conv.is_contiguous(memory_format=torch.channels_last)


def test_the_shipped_bf16_seeds_are_complete_bf16_runs_within_fp32s_noise():
    """What ``auto`` goes by on a user's machine: 3 seeds x BN/GN/LN trained in bf16 at the full
    recipe, against the shipped fp32 seeds (README: Training precision)."""
    from cifar_app.store.results import ExperimentResults

    res = ExperimentResults.from_dict(json.loads(results.BF16_ACCURACY.read_text()))
    fp32 = ExperimentResults.from_dict(json.loads(results.FP32_SEEDS.read_text()))
    assert res.recipes() == fp32.recipes() == ["seed-plain"]  # one recipe in two arithmetics
    assert len(res.completed()) == 9
    assert all(p.settings["precision"] == "bf16" and p.settings["epochs"] == 20 and
               p.settings["train_limit"] is None for p in res.completed())
    verdict = results.bf16_verdict(results.BF16_ACCURACY, results.FP32_SEEDS)
    assert set(verdict["norms"]) == {"batch", "group", "layer"} and verdict["within_noise"]
