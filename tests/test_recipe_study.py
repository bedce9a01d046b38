"""The recipe study's judgement (benchmarks/recipe_study.py): the verdict at 2 SE with seeds, and
the one-seed screen against the baseline's own spread."""

import importlib.util
from pathlib import Path

import pytest

from cifar_app.core.settings import TrainSettings
from cifar_app.store.results import ExperimentResults, PointResult

spec = importlib.util.spec_from_file_location(
    "recipe_study", Path(__file__).resolve().parents[1] / "benchmarks" / "recipe_study.py")
recipe_study = importlib.util.module_from_spec(spec)
spec.loader.exec_module(recipe_study)


def results(accs: dict[str, list[float]]) -> ExperimentResults:
    points = [PointResult(settings=TrainSettings(norm=norm, seed=i).to_dict(), state="completed",
                          final_test_acc=a, best_test_acc=a, seconds=1.0,
                          epochs=[{"train_acc": a + 0.01}])
              for norm, xs in accs.items() for i, a in enumerate(xs)]
    return ExperimentResults("exp", None, {}, points)


BASELINE = results({"batch": [0.810, 0.812, 0.814], "group": [0.810, 0.812, 0.814]})


def test_seeds_are_judged_at_two_standard_errors_of_the_difference():
    out = recipe_study.summarize(results({"batch": [0.830, 0.832, 0.834], "group": [0.811, 0.813, 0.815]}),
                                 BASELINE)
    assert out["batch"]["verdict"] == "better" and out["batch"]["screen"] is False
    assert out["batch"]["difference"] == pytest.approx(0.020)
    assert out["batch"]["two_se"] == pytest.approx(2 * (0.002 ** 2 / 3 * 2) ** 0.5)
    assert out["group"]["verdict"] == "within noise"
    assert out["batch"]["train_mean"] == pytest.approx(0.842)


def test_one_seed_is_a_screen_against_the_baselines_spread():
    out = recipe_study.summarize(results({"batch": [0.816], "group": [0.800]}), BASELINE)
    two_se = 2 * 0.002 * (1 + 1 / 3) ** 0.5  # 0.0046
    for norm, diff, verdict in (("batch", 0.004, "within noise"), ("group", -0.012, "worse")):
        row = out[norm]
        assert row["screen"] is True and row["n"] == 1 and row["test_std"] is None
        assert row["difference"] == pytest.approx(diff)
        assert row["two_se"] == pytest.approx(two_se)
        assert row["verdict"] == verdict


def test_a_norm_the_baseline_lacks_gets_no_verdict():
    out = recipe_study.summarize(results({"layer": [0.80]}), BASELINE)
    assert "verdict" not in out["layer"]
