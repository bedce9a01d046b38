"""Named recipes (settings.RECIPES): the default changed to separable-b, the old one is seed-plain.
A record written before the change still means the net it was trained as; the CLI, the Train and
Experiments pages and the claims name the recipe."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from cifar_app.core.model import DEFAULT_ARCH
from cifar_app.core.settings import RECIPES, SettingsError, TrainSettings, recipe_values
from cifar_app.web.app import page_path
from tests.conftest import ROOT

OLD_RUN = Path(__file__).parent / "fixtures" / "old-format-run"


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cifar_app", *args], capture_output=True, text=True,
                          timeout=240, cwd="/")


def test_the_default_is_separable_b_and_seed_plain_names_the_old_net():
    assert DEFAULT_ARCH == "separable-b" and TrainSettings().recipe() == "default"
    plain = TrainSettings(**recipe_values("seed-plain"))
    assert plain.arch == "plain" and plain.param_count() == 49_482 < TrainSettings().param_count() < 50_000
    assert TrainSettings().changes() == ""
    assert TrainSettings(arch="plain", ema=0.999).changes() == "recipe=seed-plain, ema=0.999"
    assert TrainSettings(arch="separable").changes() == "arch=separable"
    with pytest.raises(SettingsError, match="^recipe: must be one of default, seed-plain") as e:
        recipe_values("é" * 10_000)
    assert len(str(e.value)) < 200


def test_a_record_written_before_arch_existed_is_still_the_plain_net(tmp_path):
    """A run (settings.json and its model record) that never had an ``arch`` field was trained as
    the plain net: it must not turn into today's default and fail to load its weights."""
    from cifar_app.store.export import bundle_bytes, import_bundle
    from cifar_app.store.inference import load_model
    from cifar_app.store.runstore import RunStore

    run_dir = tmp_path / "refs" / "ref-old"
    shutil.copytree(OLD_RUN, run_dir)
    settings = json.loads((run_dir / "settings.json").read_text())
    del settings["arch"]
    (run_dir / "settings.json").write_text(json.dumps(settings))
    rec = torch.load(run_dir / "model.pt", map_location="cpu", weights_only=False)
    if isinstance(rec, dict) and isinstance(rec.get("settings"), dict):
        rec["settings"].pop("arch", None)
        torch.save(rec, run_dir / "model.pt")
    store = RunStore(tmp_path / "runs", reference_root=tmp_path / "refs")
    run = store.get("ref-old")
    assert run.settings().arch == "plain" and run.damage() is None
    assert run.summary().changes == "recipe=seed-plain"
    assert load_model(run).model.arch == "plain"
    assert import_bundle(store, bundle_bytes(run)).settings().arch == "plain"


def test_cli_train_and_sweep_start_from_a_recipe_and_explicit_settings_win(tmp_path):
    from tests.conftest import write_image_tree

    data = write_image_tree(tmp_path / "data", per_class_train=4, per_class_test=2)
    runs = tmp_path / "runs"
    common = ["--data", str(data), "--runs-dir", str(runs)]
    tiny = ["--epochs", "1", "--batch-size", "8", "--precision", "fp32"]
    out = cli("train", "--norm", "batch", "--recipe", "seed-plain", *tiny, *common)
    assert out.returncode == 0, out.stderr
    run_id = out.stdout.split("\t")[0]
    assert json.loads((runs / run_id / "settings.json").read_text())["arch"] == "plain"
    assert "49,482 parameters" in out.stderr
    out = cli("train", "--norm", "batch", "--recipe", "seed-plain", "--arch", "separable", *tiny, *common)
    assert json.loads((runs / out.stdout.split("\t")[0] / "settings.json").read_text())["arch"] == "separable"
    bad = cli("train", "--norm", "batch", "--recipe", "é" * 10_000, *tiny, *common)
    assert bad.returncode == 2 and "recipe: must be one of default, seed-plain" in bad.stderr
    assert len(bad.stderr.strip().splitlines()[-1]) < 300 and "Traceback" not in bad.stderr
    out = cli("sweep", "--grid", "norm=batch", "--recipe", "seed-plain", "--set", "epochs=1",
              "--set", "batch_size=8", "--set", "precision=fp32", "--json", *common)
    assert out.returncode == 0, out.stderr
    [point] = json.loads(out.stdout)["runs"]
    assert point["settings"]["arch"] == "plain"


def test_the_train_page_starts_from_the_chosen_recipe(pages, tmp_path):
    from streamlit.testing.v1 import AppTest

    from tests.conftest import write_image_tree

    pages.use(tmp_path / "runs", write_image_tree(tmp_path / "data", per_class_train=4, per_class_test=2))
    at = AppTest.from_file(page_path("train"), default_timeout=60)
    at.run()
    params = {m.label: m.value for m in at.metric}["Parameters"]
    assert params == f"{TrainSettings().param_count():,}" and at.radio(key="set_arch").value == DEFAULT_ARCH
    at.radio(key="recipe").set_value("seed-plain").run()
    assert not at.exception
    assert at.radio(key="set_arch@seed-plain").value == "plain"
    assert {m.label: m.value for m in at.metric}["Parameters"] == "49,482"
    assert any("recipe=seed-plain" in c.value for c in at.caption)
    at.selectbox(key="norm").set_value("group").run()
    at.select_slider(key="groups").set_value(16).run()  # 16 divides separable-b's widths, not 24
    assert any("groups: 16 must divide" in e.value for e in at.error) and at.button(key="start").disabled
    at.radio(key="recipe").set_value("default").run()
    assert not at.error and not at.button(key="start").disabled
    assert at.radio(key="set_arch").value == DEFAULT_ARCH


def test_claims_say_when_a_verdict_was_measured_on_another_recipe(tmp_path):
    """Shipped preset results measured on seed-plain (the batch-size preset's, kept in
    benchmarks/results): each claim judged on them says so; a claim judged on the reference runs
    (re-shipped on the default) does not."""
    from cifar_app.lab.claims import evaluate, recipe_note
    from cifar_app.store.runstore import RunStore

    shipped = tmp_path / "shipped"
    shipped.mkdir()
    shutil.copy(ROOT / "benchmarks" / "results" / "preset_batch-size_seed-plain.json",
                shipped / "preset_batch-size.json")
    rows = {r["id"]: r for r in evaluate(RunStore(tmp_path / "runs"), shipped)}
    assert rows["gn-small-batches"]["recipes"] == ["seed-plain"]
    assert "seed-plain recipe, not today's default: run the batch-size preset" in recipe_note(
        rows["gn-small-batches"])
    for claim in ("ln-batch-invariant",):  # its check reads the reference LN run
        assert rows[claim]["recipes"] == ["default"] and recipe_note(rows[claim]) == ""
    for r in rows.values():
        assert ("seed-plain" in recipe_note(r)) is ("seed-plain" in r["recipes"])
    assert set(RECIPES) == {"default", "seed-plain"}
