"""The README's preset tables (benchmarks/preset_tables.py) are computed from the results files:
change a stored accuracy and the table changes; a failed point says so; a README block is rewritten
in place and nothing outside it moves."""

import importlib.util
import json
import re
from pathlib import Path

import pytest

from cifar_app.core.settings import TrainSettings
from cifar_app.store.results import ExperimentResults, PointResult

spec = importlib.util.spec_from_file_location(
    "preset_tables", Path(__file__).resolve().parents[1] / "benchmarks" / "preset_tables.py")
preset_tables = importlib.util.module_from_spec(spec)
spec.loader.exec_module(preset_tables)


def point(acc: float | None, state: str = "completed", train: float = 0.9, **settings) -> PointResult:
    return PointResult(settings=TrainSettings(**settings).to_dict(), state=state, final_test_acc=acc,
                       best_test_acc=acc, seconds=1.0,
                       epochs=[{"epoch": 1, "train_acc": train, "test_acc": acc or 0.0, "seconds": 1.0}])


def test_a_grid_table_holds_each_points_accuracy_and_bolds_each_rows_best():
    res = ExperimentResults("exp", "batch-size", {}, [
        point(0.4275, norm="batch", batch_size=2), point(0.568, norm="batch", batch_size=16),
        point(0.507, norm="group", batch_size=2), point(None, "failed", norm="group", batch_size=16)])
    text = preset_tables.table("batch-size", res)
    lines = text.splitlines()
    assert lines[0] == "| final test accuracy | 2 | 16 |"
    assert lines[2] == "| BatchNorm | 42.75% | **56.80%** |"
    assert lines[3] == "| GroupNorm | **50.70%** | failed |"


def test_seeds_give_each_seed_and_the_mean():
    res = ExperimentResults("exp", "seed-layernorm", {}, [
        point(0.444, norm="layer", seed=0), point(0.4564, norm="layer", seed=1)])
    assert "| LayerNorm | 44.40% | 45.64% | **45.02 ± 0.88** |" in preset_tables.table("seed-layernorm", res)


def test_the_regularization_gap_leaves_out_a_collapsed_run_and_counts_it():
    res = ExperimentResults("exp", "regularization", {}, [
        point(0.50, train=0.95, norm="batch", seed=0), point(0.52, train=0.93, norm="batch", seed=1),
        point(0.10, train=0.10, norm="none", seed=0), point(0.48, train=0.53, norm="none", seed=1)])
    text = preset_tables.table("regularization", res)
    assert "| gap at the end, points | **43.0 ± 2.8** | **5.0** |" in text
    assert "| runs collapsed to chance (left out) | 0 | 1 |" in text


def test_fill_rewrites_only_the_named_blocks(tmp_path):
    res = ExperimentResults("exp", "seed-layernorm", {}, [point(0.5, norm="layer", seed=0),
                                                          point(0.6, norm="layer", seed=1)])
    (tmp_path / "preset_seed-layernorm.json").write_text(json.dumps(res.to_dict()))
    block = "<!-- preset-table seed-layernorm -->\nold table\n<!-- /preset-table seed-layernorm -->"
    readme = f"before\n{block}\nafter\n"
    out = preset_tables.fill(readme, tmp_path)
    assert out.startswith("before\n<!-- preset-table seed-layernorm -->\n| final test accuracy |")
    assert "old table" not in out and "| LayerNorm | 50.00% | 60.00% | **55.00 ± 7.07** |" in out
    assert out.endswith("<!-- /preset-table seed-layernorm -->\nafter\n")


rt_spec = importlib.util.spec_from_file_location(
    "recipe_tables", Path(__file__).resolve().parents[1] / "benchmarks" / "recipe_tables.py")
recipe_tables = importlib.util.module_from_spec(rt_spec)
rt_spec.loader.exec_module(recipe_tables)


def test_each_recipe_file_against_the_default_is_one_lever_row(tmp_path):
    """A new screen's results file is a new row of the README's lever table, with its figures."""
    row = {"n": 1, "test_mean": 0.85, "train_mean": 0.8765, "difference": 0.0123, "two_se": 0.0045,
           "verdict": "better"}
    rec = {"changes": {"whiten": "frozen", "precision": "bf16"}, "against": "default",
           "by_norm": {"batch": row}, "compute": {"point_seconds": 1800.0, "points": 1}, "points": []}
    (tmp_path / "recipe_whiten-frozen.json").write_text(json.dumps(rec))
    (tmp_path / "recipe_other-baseline.json").write_text(json.dumps({**rec, "against": "seed-plain"}))
    rows = [r for r in recipe_tables.lever_table(tmp_path).splitlines() if "vs default" in r]
    assert rows == ["| `whiten=frozen` vs default | 20 epochs, screen (seed 0) | +1.23 (0.45) | — | — "
                    "| BN 87.65% | 30 min per run | BN better |"]


def test_a_truncated_results_file_stops_with_one_line_naming_it(tmp_path):
    res = ExperimentResults("exp", "seed-layernorm", {}, [point(0.5, norm="layer", seed=0)])
    text = json.dumps(res.to_dict())
    (tmp_path / "preset_seed-layernorm.json").write_text(text[: len(text) // 2])
    block = "<!-- preset-table seed-layernorm -->\nold\n<!-- /preset-table seed-layernorm -->"
    with pytest.raises(SystemExit) as e:
        preset_tables.fill(block, tmp_path)
    assert str(e.value).startswith(f"error: {tmp_path / 'preset_seed-layernorm.json'}: not a readable")


def test_an_empty_block_is_filled_and_every_docs_block_has_a_table(tmp_path):
    empty = "<!-- preset-table seeds -->\n<!-- /preset-table seeds -->\n"
    assert "| BatchNorm |" in preset_tables.fill(empty, tmp_path)
    root = Path(__file__).resolve().parents[1]
    for doc in [root / "README.md", *sorted((root / "docs").glob("*.md"))]:
        for name, body in re.findall(r"<!-- preset-table (\S+) -->\n(.*?)<!-- /preset-table \1 -->",
                                     doc.read_text(encoding="utf-8"), flags=re.S):
            assert body.startswith("| "), f"{doc.name}: the {name} block is empty"


@pytest.mark.parametrize("block", ["table many-runs-round-s45", "compute-table", "batchdep-table",
                                   "claims-table", "lever-table", "distill-table"])
def test_an_empty_generated_block_of_every_kind_is_filled(block, monkeypatch):
    """A new block is written empty and filled by ``tables.py``; an empty block that no pattern
    matched stayed empty, and ``--check`` passed on it (fill left it as it was)."""
    bench = Path(__file__).resolve().parents[1] / "benchmarks"
    monkeypatch.syspath_prepend(str(bench))  # as ``python benchmarks/tables.py`` has it
    spec_t = importlib.util.spec_from_file_location("tables", bench / "tables.py")
    tables = importlib.util.module_from_spec(spec_t)
    spec_t.loader.exec_module(tables)
    closing = f"table {block.split()[1]}" if block.startswith("table ") else block
    filled = tables.fill(f"before\n<!-- {block} -->\n<!-- /{closing} -->\nafter\n")
    assert re.fullmatch(rf"before\n<!-- {block} -->\n\| .*\|\n<!-- /{closing} -->\nafter\n", filled, re.S)
    # an empty block, then prose, then a block of the same name: two blocks, the prose kept (a
    # greedy optional line took everything up to the second block's end as one block)
    empty = f"<!-- {block} -->\n<!-- /{closing} -->\n"
    stale = f"<!-- {block} -->\nSTALE\n<!-- /{closing} -->\n"
    twice = tables.fill(empty + "PROSE\n" + stale)
    assert twice.count(f"<!-- {block} -->") == 2 and "\nPROSE\n" in twice and "STALE" not in twice


def test_the_page_verdict_leaves_out_a_damaged_invocation_and_then_judges_nothing(tmp_path):
    """``many_runs_verdict.py``: a results file with a NaN, a string for a number or a missing key
    is named with its reason and counts as an invocation that did not run (it used to raise, or to
    take the NaN into a median); the other files stay as they were."""
    script = Path(__file__).resolve().parent.parent / "benchmarks" / "many_runs_verdict.py"
    spec_v = importlib.util.spec_from_file_location("many_runs_verdict", script)
    mv = importlib.util.module_from_spec(spec_v)
    spec_v.loader.exec_module(mv)

    def invocation(t: float) -> dict:
        samples = {k: [t] * 4 for k in (*mv.TARGETS, *mv.REPORTED) if k != "runs_json_s"}
        return {"rows": [{"runs": 10_000, "runs_json_s": 0.5, "samples": samples}],
                "floors": [{"runs": 10_000, "samples": samples}]}

    files = []
    for i, damage in enumerate([None, "nan", "string", "missing"]):
        record = invocation(0.9)
        if damage == "nan":
            record["rows"][0]["samples"]["runs_first_s"][0] = float("nan")
        elif damage == "string":
            record["floors"][0]["samples"]["compare_first_s"][1] = "x"
        elif damage == "missing":
            del record["rows"][0]["runs_json_s"]
        files.append(tmp_path / f"{i}.json")
        files[-1].write_text(json.dumps(record))
    out = mv.verdict(files, need=1, of=4)
    assert out["invocations"] == ["0.json"] and not out["judged"]
    assert set(out["rejected"]) == {"1.json", "2.json", "3.json"}
    assert "runs_json_s" in out["rejected"]["3.json"]
    assert not any(e["met"] for e in out["targets"].values() if "met" in e)
    assert out["targets"]["runs_first_s"]["per_invocation"] == [0.9]
    full = mv.verdict([files[0]] * 4, need=3, of=4)
    assert full["judged"] and all(e["met"] for e in full["targets"].values() if "met" in e)


def test_the_rounds_table_leaves_out_a_damaged_invocation_rather_than_failing(tmp_path, monkeypatch):
    """``result_tables.many_runs_round`` takes every figure from the verdict's one reading of the
    files: a damaged file is named with its reason and its tries are not paired with the floor's
    (the table used to parse each file again for the ratios, and a damaged one stopped it)."""
    import sys

    bench = Path(__file__).resolve().parent.parent / "benchmarks"
    monkeypatch.syspath_prepend(str(bench))
    for name in ("result_tables", "many_runs_verdict"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    import many_runs_verdict as mv
    import result_tables

    def invocation(lab: list[float], floor: float) -> dict:
        keys = [k for k in (*mv.TARGETS, *mv.REPORTED) if k != "runs_json_s"]
        return {"rows": [{"runs": 10_000, "runs_json_s": 0.5, "samples": {k: list(lab) for k in keys}}],
                "floors": [{"runs": 10_000, "samples": {k: [floor] * 4 for k in keys}}]}

    folder = tmp_path / "round"
    folder.mkdir()
    for i in range(3):
        (folder / f"{i}.json").write_text(json.dumps(invocation([1.0, 1.2, 0.8, 1.0], 2.0)))
    damaged = invocation([9.0] * 4, 1.0)
    damaged["rows"][0]["samples"]["runs_again_s"][2] = "slow"
    (folder / "3.json").write_text(json.dumps(damaged))
    monkeypatch.setattr(result_tables, "RESULTS", tmp_path)
    table = result_tables.many_runs_round("round")
    assert "3.json was left out" in table and "not judged (3 of 4 ran)" in table
    # the three intact files' 12 pairs: the geometric mean of 0.5, 0.6, 0.4, 0.5 (the damaged one's 9)
    assert "| ×0.49 (" in table and "| 12 |" in table and "×9" not in table
    # pairs whose ratios are all alike have no interval: the table says so rather than failing
    for i in range(3):
        (folder / f"{i}.json").write_text(json.dumps(invocation([1.0] * 4, 2.0)))
    assert "×0.50 (no interval)" in result_tables.many_runs_round("round")
    # a file with one lab try more than floor tries would pair every later try wrongly: left out
    uneven = invocation([1.0] * 4, 2.0)
    uneven["rows"][0]["samples"]["compare_first_s"].append(1.0)
    (folder / "2.json").write_text(json.dumps(uneven))
    table = result_tables.many_runs_round("round")
    assert "2.json was left out: ValueError: compare_first_s: 5 lab tries, 4 floor tries" in table
