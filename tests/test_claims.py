"""The claims' verdicts follow from the stored results, as strong as their evidence and no stronger:
each rule is tested against the flaw of the rule before it (a one-sided swing, a failed point
dropped, selection without correction, no noise estimate), and damaged evidence marks only the
claims it feeds."""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys

import pytest

from cifar_app.core.records import EpochStats
from cifar_app.core.settings import TrainSettings
from cifar_app.core.stats import Verdict
from cifar_app.lab.claims import CLAIMS, MEASURED, evaluate
from cifar_app.lab.claims.optimization import largest_lr, matched_fit_gap, reach
from cifar_app.lab.experiments import ExperimentStore
from cifar_app.lab.presets import PRESETS
from cifar_app.store.results import REFERENCE_EXPERIMENTS as SHIPPED_DIR
from cifar_app.store.results import ExperimentResults, load_shipped_results
from cifar_app.store.runstore import RunStore
from tests.conftest import ROOT


def verdicts(store: RunStore, **kw) -> dict[str, Verdict]:
    return {r["id"]: r["verdict"] for r in evaluate(store, **kw)}


def row_of(store: RunStore, cid: str, **kw) -> dict:
    return next(r for r in evaluate(store, **kw) if r["id"] == cid)


def fake_preset(
    store: RunStore,
    preset: str,
    results: dict[tuple, float],
    grid: dict,
    curves: dict[tuple, list[float]] | None = None,
    train: dict[tuple, float] | None = None,
    landscape: dict[tuple, list[dict]] | None = None,
    failed: set[tuple] = frozenset(),
    train_curves: dict[tuple, list[float]] | None = None,
    base: dict | None = None,
) -> str:
    """An experiment of ``preset`` whose points (keyed by their grid values) completed with the
    given final test accuracies (optionally per-epoch test and train curves, a final train
    accuracy, landscape records); points in ``failed`` failed (diverged)."""
    exps = ExperimentStore(store)
    exp = exps.create(
        preset, base or {"epochs": 3, "train_limit": 1000, "test_limit": 500}, grid, preset=preset
    )
    for i, point in enumerate(exp.points):
        key = tuple(point.settings[k] for k in grid)
        if key not in results and key not in failed:
            continue
        run = store.create(TrainSettings.from_dict(point.settings), tags={"experiment": exp.id, "point": i})
        if key in failed:  # the epochs it finished before it diverged, when ``curves`` has them
            run.append_metrics(*[EpochStats(e, 1.0, a, 1.0, a, 10.0, 1000.0, 0.1)
                                 for e, a in enumerate((curves or {}).get(key, []), 1)])
            run.update_status(state="failed", error="diverged")
        else:
            accs = (curves or {}).get(key) or [results[key]]
            trains = (train_curves or {}).get(key)
            train_acc = (train or {}).get(key)
            run.append_metrics(
                *[
                    EpochStats(
                        e,
                        1.0,
                        trains[e - 1] if trains else (train_acc if train_acc is not None else a),
                        1.0,
                        a,
                        10.0,
                        1000.0,
                        0.1,
                    )
                    for e, a in enumerate(accs, 1)
                ]
            )
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


SEEDS3 = (0, 1, 2)


# ---------------------------------------------------------------------------- a fresh install


def test_a_fresh_install_gives_every_measured_row_an_effect_interval_n_and_mde(store):
    rows = evaluate(store)
    assert [r["id"] for r in rows] == [c.id for c in CLAIMS] and len(rows) == 11
    v = {r["id"]: r["verdict"] for r in rows}
    assert v["ln-batch-invariant"] == Verdict.BY_CONSTRUCTION and v["ln-rnn"] == Verdict.NOT_TESTABLE
    assert v["ln-params"] == Verdict.HOLDS
    assert not [k for k, x in v.items() if x in (Verdict.NOT_MEASURED, Verdict.DAMAGED)]
    for r in rows:
        if r["verdict"] in MEASURED and "not interpretable" in r["figure"]:  # an arm with diverged seeds
            assert r["effect"] is None and r["verdict"] == Verdict.INCONCLUSIVE, r["id"]
            assert any("Fisher's exact" in x["text"] and "exploratory" in x["text"] for x in r["secondary"])
        elif r["verdict"] in MEASURED:
            assert r["effect"] is not None and r["n"] and r["mde"] is not None, r["id"]
            assert r["ci95"] is not None and len(r["ci95"]) == 2, r["id"]
            assert min(r["n"]) >= (1 if r["id"] == "ln-params" else 3), r["id"]
        if r["verdict"] in (Verdict.HOLDS, Verdict.DOES_NOT_HOLD):
            low, high = r["ci95"]
            assert (low is not None and low > 0) or (high is not None and high < 0), r["id"]
    for cid in ("gn-small-batches", "gn-channels", "bn-higher-lr"):  # the paper states an effect
        row = next(r for r in rows if r["id"] == cid)
        assert row["paper"]["effect"] is not None and row["paper"]["source"]
    json.dumps(rows, allow_nan=False)  # strict JSON


def test_shipped_results_record_their_arithmetic(store):
    """Every shipped claim preset measured with today's design records, per point, the precision it
    ran in (fp32), the CPU and the torch version, and has three seeds or more."""
    shipped = load_shipped_results()
    assert not shipped.damaged
    current = [
        name
        for name in ("batch-size", "learning-rate", "groups", "landscape", "seed-layernorm", "regularization")
        if not PRESETS[name].foreign_points(shipped.results[name])
    ]
    assert set(current) == {"batch-size", "learning-rate", "groups", "landscape", "seed-layernorm",
                            "regularization"}
    for preset in current:
        res = shipped.results[preset]
        assert res.points and all(
            p.env and p.env["precision"] == "fp32" and p.env["cpu"] and p.env["torch"]
            for p in res.points
            if p.state == "completed"
        ), preset
        assert len({p.settings["seed"] for p in res.points}) >= 3, preset
    seeds = shipped.results["seeds"]  # bf16, as its points ask; a diverged point records it too
    assert not PRESETS["seeds"].foreign_points(seeds)
    assert {p.state for p in seeds.points} <= {"completed", "failed"}
    assert all(p.env and p.env["precision"] == "bf16" and p.env["cpu_capability"] for p in seeds.points)


def test_with_nothing_stored_a_row_names_its_preset(bare):
    rows = evaluate(bare)
    v = {r["id"]: r["verdict"] for r in rows}
    assert "sweep --preset learning-rate" in next(r for r in rows if r["id"] == "bn-higher-lr")["note"]
    assert {k for k, x in v.items() if x == Verdict.NOT_MEASURED} == {c.id for c in CLAIMS} - {
        "ln-params",
        "ln-rnn",
        "ln-batch-invariant",
    }
    assert v["ln-batch-invariant"] == Verdict.BY_CONSTRUCTION


def test_shipped_results_are_read_as_the_store_writes_them(tmp_path, bare):
    seeds = {"seed": [0, 1, 2], "norm": ["batch", "none"]}
    curve = {(s, "batch"): [0.5, 0.72 + s / 100] for s in SEEDS3} | {
        (s, "none"): [0.3, 0.4 + s / 50] for s in SEEDS3
    }
    exp_id = fake_preset(bare, "seeds", {k: v[-1] for k, v in curve.items()}, seeds, curve)
    exps = ExperimentStore(bare)
    res = exps.results(exps.get(exp_id))
    back = ExperimentResults.from_dict(json.loads(json.dumps(res.to_dict())), shipped=True)
    assert back.points == res.points and back.shipped
    folder = tmp_path / "shipped"
    folder.mkdir()
    (folder / "preset_seeds.json").write_text(json.dumps(res.to_dict()))
    fresh = RunStore(tmp_path / "fresh", reference_root=tmp_path / "no-refs")
    a = {r["id"]: r for r in evaluate(bare, shipped=None)}
    b = {r["id"]: r for r in evaluate(fresh, shipped=folder)}
    for cid in ("bn-speed", "no-norm-struggles"):
        assert a[cid]["verdict"] == b[cid]["verdict"] and a[cid]["figure"] == b[cid]["figure"]
        assert "shipped results" in b[cid]["note"] and not a[cid]["note"].count("shipped")


# ---------------------------------------------------------------------------- no noise, no verdict


def test_without_a_noise_estimate_a_difference_is_inconclusive(bare):
    """The old rule gave holds from one seed's point estimates; now one seed is no verdict."""
    grid = {"seed": [0], "norm": ["batch", "group", "layer"], "batch_size": [2, 32]}
    fake_preset(
        bare,
        "batch-size",
        {
            (0, "batch", 2): 0.30,
            (0, "batch", 32): 0.61,
            (0, "group", 2): 0.60,
            (0, "group", 32): 0.60,
            (0, "layer", 2): 0.59,
            (0, "layer", 32): 0.60,
        },
        grid,
    )
    row = row_of(bare, "gn-small-batches")
    assert row["verdict"] == Verdict.INCONCLUSIVE and "no noise estimate" in row["note"]


def test_ties_across_arms_get_an_exact_permutation_p_not_the_tie_free_table():
    from cifar_app.core.stats import divergence_rows

    rows = divergence_rows(2, 3, 3, 3, [0.1, 0.1, 0.85], [0.1, 0.1, 0.1], ("BN", "none"), 100, "points")
    assert "Fisher's exact p = 1" in rows[0]
    assert "p = 0.5 " in rows[1]  # 10 of the 20 splits give a U as large; the tie-free table says 0.35


def test_an_arm_with_diverged_seeds_shows_rates_and_a_rank_test_not_a_t_interval(bare):
    """No-norm diverging in 2 of 3 seeds: the pre-registered t-test still decides (inconclusive),
    but its effect and interval on a bimodal arm are not shown; the divergence rates with exact
    intervals and an exact rank test are, labelled exploratory."""
    grid = {"seed": [0, 1, 2], "norm": ["batch", "none", "group", "layer"]}
    res = {(s, "batch"): 0.84 + 0.001 * s for s in SEEDS3} | {(2, "none"): 0.808}
    fake_preset(bare, "seeds", res, grid, failed={(0, "none"), (1, "none")})
    row = row_of(bare, "no-norm-struggles")
    assert row["verdict"] == Verdict.INCONCLUSIVE and row["effect"] is None and row["ci95"] is None
    assert "not interpretable" in row["figure"] and "2 of 3 seeds without a norm diverged" in row["figure"]
    texts = " ".join(x["text"] for x in row["secondary"])
    assert "BN 0 of 3 (0–71%), none 2 of 3 (9–99%)" in texts and "Fisher's exact p = 0.4" in texts
    assert "Mann-Whitney" in texts and "p = 0.05" in texts and "exploratory" in texts


def test_a_fixed_cutoff_no_longer_decides_with_three_seeds(bare):
    """Means 2.2 SE apart with n = 3 (the old 2-SE rule: holds) are not significant by Welch's t."""
    grid = {"seed": [0, 1, 2], "norm": ["batch", "none", "group", "layer"]}
    bn = [0.800, 0.810, 0.820]
    none = [0.777, 0.787, 0.797]  # difference 0.023, SE 0.00816: 2.8 SE, Welch p ~ 0.048
    none_close = [0.785, 0.795, 0.805]  # difference 0.015: 1.8 SE
    res = {(s, "batch"): bn[s] for s in SEEDS3} | {(s, "none"): none_close[s] for s in SEEDS3}
    fake_preset(bare, "seeds", res, grid)
    row = row_of(bare, "no-norm-struggles")
    assert row["verdict"] == Verdict.INCONCLUSIVE and row["ci95"][0] < 0 < row["ci95"][1]
    assert row["n"] == [3, 3] and row["mde"] > 1.5  # points
    res = {(s, "batch"): bn[s] for s in SEEDS3} | {(s, "none"): none[s] - 0.01 for s in SEEDS3}
    fake_preset(bare, "seeds", res, grid)
    assert verdicts(bare)["no-norm-struggles"] == Verdict.HOLDS


# ---------------------------------------------------------------------------- batch size

BS_GRID = {"seed": [0, 1, 2], "norm": ["batch", "group", "layer"], "batch_size": [2, 8, 32]}


def batch_results(accs: dict[tuple[str, int], float], jitter: float = 0.01) -> dict:
    return {
        (s, n, b): a + jitter * math.sin(3.1 * s + b + len(n)) for (n, b), a in accs.items() for s in SEEDS3
    }


def test_gn_holds_when_bn_varies_more_over_batch_sizes(bare):
    accs = {
        ("batch", 2): 0.30,
        ("batch", 8): 0.55,
        ("batch", 32): 0.60,
        ("group", 2): 0.58,
        ("group", 8): 0.59,
        ("group", 32): 0.60,
        ("layer", 2): 0.57,
        ("layer", 8): 0.58,
        ("layer", 32): 0.59,
    }
    fake_preset(bare, "batch-size", batch_results(accs), BS_GRID)
    v = verdicts(bare)
    assert v["gn-small-batches"] == Verdict.HOLDS and v["ln-stable"] == Verdict.HOLDS
    row = row_of(bare, "gn-small-batches")
    assert row["paper"]["effect"] == pytest.approx(10.9) and row["effect"] > 20


def test_a_one_sided_swing_up_is_not_stability(bare):
    """LN jumping +40 points at batch 2 read as "holds" under the old drop rule (BN's drop > LN's
    negative drop); the range counts a jump as much as a fall."""
    accs = {
        ("batch", 2): 0.55,
        ("batch", 8): 0.57,
        ("batch", 32): 0.58,
        ("group", 2): 0.58,
        ("group", 8): 0.59,
        ("group", 32): 0.60,
        ("layer", 2): 0.90,
        ("layer", 8): 0.55,
        ("layer", 32): 0.50,
    }
    fake_preset(bare, "batch-size", batch_results(accs), BS_GRID)
    assert verdicts(bare)["ln-stable"] == Verdict.DOES_NOT_HOLD


def test_a_failed_point_counts_as_a_failure_not_as_missing(bare):
    """GN diverging at batch 2 in every seed: the old rule dropped the points and kept GN's flat
    rest; counted at chance, GN varies more than BN."""
    accs = {
        ("batch", 2): 0.50,
        ("batch", 8): 0.55,
        ("batch", 32): 0.58,
        ("group", 8): 0.59,
        ("group", 32): 0.60,
        ("layer", 2): 0.57,
        ("layer", 8): 0.58,
        ("layer", 32): 0.59,
    }
    fake_preset(bare, "batch-size", batch_results(accs), BS_GRID, failed={(s, "group", 2) for s in SEEDS3})
    row = row_of(bare, "gn-small-batches")
    assert row["verdict"] == Verdict.DOES_NOT_HOLD and row["arms"]["GN"] == pytest.approx([50.0] * 3, abs=1.5)


def test_noisier_points_without_a_mean_change_are_no_batch_dependence(bare):
    """BN's points scatter 3 points around the same mean at every batch size, GN's hardly: a range
    rule reads the scatter as dependence (the expected range of 3 noisy points is 1.7 sigma); the
    change from batch 32 to 2 does not."""
    noisy = {2: [0.55, 0.61, 0.58], 8: [0.60, 0.55, 0.61], 32: [0.61, 0.555, 0.545]}
    res = {(s, "batch", b): noisy[b][s] for s in SEEDS3 for b in (2, 8, 32)}
    res |= {
        (s, n, b): 0.58 + 0.001 * s + 0.0005 * (b == 2)
        for s in SEEDS3
        for n in ("group", "layer")
        for b in (2, 8, 32)
    }
    fake_preset(bare, "batch-size", res, BS_GRID)
    v = verdicts(bare)
    assert v["gn-small-batches"] == Verdict.INCONCLUSIVE and v["ln-stable"] == Verdict.INCONCLUSIVE


# ---------------------------------------------------------------------------- groups

GROUPS_GRID = {"seed": [0, 1, 2], "norm": ["group", "instance"], "groups": [1, 2, 4, 8]}


def group_results(accs: dict) -> dict:
    return {(s, n, g): a + 0.004 * (s - 1) for (n, g), a in accs.items() for s in SEEDS3}


def test_the_groups_claim_is_decided_by_the_g_fixed_in_advance(bare):
    fake_preset(
        bare,
        "groups",
        group_results(
            {
                ("group", 1): 0.50,
                ("group", 2): 0.55,
                ("group", 4): 0.58,
                ("group", 8): 0.56,
                ("instance", 4): 0.45,
            }
        ),
        GROUPS_GRID,
    )
    row = row_of(bare, "gn-channels")
    assert row["verdict"] == Verdict.HOLDS and "G = C (IN)" in row["figure"]
    assert all("Holm" in s["label"] for s in row["secondary"]) and len(row["secondary"]) == 6
    fake_preset(
        bare,
        "groups",
        group_results(
            {
                ("group", 1): 0.60,
                ("group", 2): 0.55,
                ("group", 4): 0.58,
                ("group", 8): 0.56,
                ("instance", 4): 0.45,
            }
        ),
        GROUPS_GRID,
    )
    assert verdicts(bare)["gn-channels"] == Verdict.DOES_NOT_HOLD  # LN beats G = 4


def test_picking_the_best_g_after_the_fact_does_not_make_the_claim_hold(bare):
    """G = 2 beats LN and IN, but G = 4 (the G fixed in advance) does not: the old rule took the
    best G and said holds; selection is not evidence."""
    fake_preset(
        bare,
        "groups",
        group_results(
            {
                ("group", 1): 0.55,
                ("group", 2): 0.60,
                ("group", 4): 0.551,
                ("group", 8): 0.55,
                ("instance", 4): 0.45,
            }
        ),
        GROUPS_GRID,
    )
    row = row_of(bare, "gn-channels")
    assert row["verdict"] == Verdict.INCONCLUSIVE
    g2 = next(s for s in row["secondary"] if s["label"].startswith("G = 2 − LN"))
    assert g2["comparison"]["p_adjusted"] >= g2["comparison"]["p"]


# ---------------------------------------------------------------------------- speed


def test_reach_interpolates_between_epochs():
    epochs = [{"epoch": 1, "test_acc": 0.5, "seconds": 10}, {"epoch": 2, "test_acc": 0.8, "seconds": 10}]
    assert reach(epochs, 0.7) == pytest.approx(1 + 2 / 3)
    assert reach(epochs, 0.7, "seconds") == pytest.approx(10 + 20 / 3)
    assert reach(epochs, 0.9) is None and reach(epochs, 0.3) == pytest.approx(0.5)


def test_training_speed_at_one_epoch_resolution_needs_a_real_difference(bare):
    """BN reaching 70% at 7.7 epochs against none's 8.0 read as "holds" under the old rule."""
    seeds = {"seed": [0, 1, 2], "norm": ["batch", "none"]}

    def curve(at: float, s: int) -> list[float]:  # crosses 70% near ``at``, seeds 0.6 epochs apart
        return [min(0.9, 0.1 + 0.6 * e / (at + (0.0, 0.6, -0.6)[s])) for e in range(1, 11)]

    curves = {(s, "batch"): curve(7.7, s) for s in SEEDS3} | {(s, "none"): curve(8.0, s) for s in SEEDS3}
    fake_preset(bare, "seeds", {k: v[-1] for k, v in curves.items()}, seeds, curves)
    row = row_of(bare, "bn-speed")
    assert row["verdict"] == Verdict.INCONCLUSIVE and row["unit"] == "epochs"
    curves = {(s, "batch"): curve(4.0, s) for s in SEEDS3} | {(s, "none"): curve(8.0, s) for s in SEEDS3}
    fake_preset(bare, "seeds", {k: v[-1] for k, v in curves.items()}, seeds, curves)
    row = row_of(bare, "bn-speed")
    assert row["verdict"] == Verdict.HOLDS and row["effect"] == pytest.approx(4.0, abs=0.2)
    assert "own-best-LR row: not measured yet" in row["note"]


def test_a_diverged_seed_never_reaches_the_target_it_is_not_dropped(bare):
    """A BN seed that diverged counts as never reaching 70% (censored), so BN cannot be "faster" on
    the two that did; dropped, as before, the two fast seeds would decide."""
    seeds = {"seed": [0, 1, 2], "norm": ["batch", "none"]}

    def curve(at: float) -> list[float]:
        return [min(0.9, 0.1 + 0.6 * e / at) for e in range(1, 11)]

    curves = {(s, "batch"): curve(3.0 + 0.2 * s) for s in (0, 1)}
    curves |= {(s, "none"): curve(8.0 + 0.3 * s) for s in SEEDS3}
    results = {k: v[-1] for k, v in curves.items()}
    curves[(2, "batch")] = curve(2.0)[:4]  # past 70% at epoch 3, then NaN: it still never got there
    fake_preset(bare, "seeds", results, seeds, curves, failed={(2, "batch")})
    row = row_of(bare, "bn-speed")
    assert row["verdict"] == Verdict.INCONCLUSIVE
    assert "2 of 3 seeds got there; 1 diverged before" in row["figure"]
    assert "not interpretable" in row["figure"]
    assert row["effect"] is None  # set by the never-got-there placeholder: not shown
    assert any("BN 1 of 3" in x["text"] for x in row["secondary"])


# ---------------------------------------------------------------------------- higher learning rates

LR_GRID = {"seed": [0, 1, 2, 3], "norm": ["none", "batch"], "max_lr": PRESETS["learning-rate"].grid["max_lr"]}
SEEDS4 = (0, 1, 2, 3)


def test_higher_lr_is_the_largest_lr_that_trains_not_the_best_accuracy(bare):
    """BN capped at 40% at every LR while it still trains at 1.6, none diverging from 0.2: the
    old rule compared best accuracies and said "does not hold"."""
    lrs = LR_GRID["max_lr"]
    res = {(s, "batch", lr): 0.40 + 0.002 * s for s in SEEDS4 for lr in lrs}
    res |= {(s, "none", lr): 0.45 + 0.002 * s for s in SEEDS4 for lr in lrs if lr <= 0.1}
    fake_preset(
        bare,
        "learning-rate",
        res,
        LR_GRID,
        failed={(s, "none", lr) for s in SEEDS4 for lr in lrs if lr >= 0.2},
    )
    row = row_of(bare, "bn-higher-lr")
    assert row["verdict"] == Verdict.HOLDS, row["note"]
    assert row["effect"] == pytest.approx(math.log2(1.6 / 0.1)) and row["ci95"][0] > 0
    assert row["ci95"][1] is None  # BN's largest LR is the top of the grid: no upper bound
    assert row["evidence"]["diverged"]["none"] == 16 and row["p"] == pytest.approx(2 / 70)


def test_three_seeds_that_agree_are_no_verdict_on_a_grid(bare):
    """With every seed on the same grid value there is no spread to estimate noise from; the exact
    permutation test on 3 vs 3 cannot go below p = 0.10: inconclusive, however large the effect."""
    lrs = LR_GRID["max_lr"]
    grid = {**LR_GRID, "seed": [0, 1, 2]}
    res = {(s, "batch", lr): 0.40 for s in SEEDS3 for lr in lrs}
    res |= {(s, "none", lr): 0.45 for s in SEEDS3 for lr in lrs if lr <= 0.1}
    fake_preset(
        bare, "learning-rate", res, grid, failed={(s, "none", lr) for s in SEEDS3 for lr in lrs if lr >= 0.2}
    )
    row = row_of(bare, "bn-higher-lr")
    assert row["verdict"] == Verdict.INCONCLUSIVE and "cannot reach p < 0.05" in row["note"]


def test_largest_lr_that_trains():
    table = {0.1: [0.5, 0.5], 0.2: [0.52, 0.1], 0.4: [0.48, 0.3]}
    assert largest_lr(table) == [0.4, 0.1]  # the second seed collapses at 0.2, falls short at 0.4


# ---------------------------------------------------------------------------- regularization


def test_regularization_compares_gaps_at_matched_fit(bare):
    """A network without a norm that never fits (train 60%) has a small final gap only because it
    underfits; at the same train accuracy its gap is the larger one."""
    grid = {"seed": [0, 1, 2], "norm": ["none", "batch"]}
    tr_none = [0.3, 0.45, 0.55, 0.60]
    te_none = [0.25, 0.35, 0.40, 0.42]  # at train 0.60: gap 0.18
    tr_bn = [0.4, 0.6, 0.8, 0.95]
    te_bn = [0.38, 0.52, 0.58, 0.60]  # at train 0.60: gap 0.08; at the end 0.35
    train_curves, curves, res = {}, {}, {}
    for s in SEEDS3:
        for n, tr, te in (("none", tr_none, te_none), ("batch", tr_bn, te_bn)):
            train_curves[(s, n)] = [t + 0.002 * s for t in tr]
            curves[(s, n)] = [t + 0.003 * s for t in te]
            res[(s, n)] = curves[(s, n)][-1]
    fake_preset(bare, "regularization", res, grid, curves=curves, train_curves=train_curves)
    row = row_of(bare, "bn-regularizes")
    assert row["verdict"] == Verdict.HOLDS and "matched fit" in row["figure"]
    final = next(s for s in row["secondary"] if s["label"].startswith("final gap"))
    assert final["comparison"]["effect"] < 0  # the unmatched final gap says the opposite


def test_matched_fit_gap_interpolates():
    epochs = [{"train_acc": 0.4, "test_acc": 0.3}, {"train_acc": 0.8, "test_acc": 0.5}]
    assert matched_fit_gap(epochs, 0.6) == pytest.approx(0.6 - 0.4)
    assert matched_fit_gap(epochs, 0.9) is None


# ---------------------------------------------------------------------------- ICS and landscape


def landscape_records(ics_l2: float, beta: float, lr: float = 0.05) -> list[dict]:
    return [
        {
            "step": step,
            "epoch": 1,
            "lr": lr,
            "loss": 2.0,
            "grad_norm": 1.0,
            "multipliers": [1.0, 2.0],
            "losses": [2.0, 2.1],
            "grad_change": [0.1, 0.2],
            "loss_range": 0.1,
            "predictiveness": 0.1,
            "beta": beta,
            "seconds": 0.1,
            "blocks": {b: {"grad_norm": 1.0, "ics_l2": ics_l2, "ics_cos": 0.9} for b in ("C1", "C2")},
        }
        for step in (0, 10, 20)
    ]


def test_the_ics_verdict_leaves_out_probes_at_the_end_of_the_schedule(bare):
    grid = {"seed": [0, 1, 2], "norm": ["none", "batch"]}
    keys = [(s, n) for s in SEEDS3 for n in ("none", "batch")]

    def records(n: str, s: int) -> list[dict]:
        main = landscape_records((0.02 if n == "none" else 0.01) + 0.001 * s, (30 if n == "none" else 10) + s)
        # probes at the end of OneCycle (lr ~ 1e-5): huge per-step figures that must not count
        tail = landscape_records(50.0 if n == "batch" else 0.0, 1e4, lr=1e-5)
        for r in tail:
            r["step"] += 100
        return main + tail

    fake_preset(
        bare,
        "landscape",
        {k: 0.5 for k in keys},
        grid,
        base={"epochs": 3, "max_lr": 0.05},
        landscape={k: records(k[1], k[0]) for k in keys},
    )
    row = row_of(bare, "bn-ics")
    assert row["verdict"] == Verdict.HOLDS, row["note"]
    assert "left out" in row["note"]
    beta = next(s for s in row["secondary"] if "β" in s["label"])
    assert beta["comparison"]["effect"] == pytest.approx(20)


# ---------------------------------------------------------------------------- LayerNorm


def test_ln_batch_invariance_is_by_construction_with_a_check(bare):
    assert verdicts(bare)["ln-batch-invariant"] == Verdict.BY_CONSTRUCTION
    run = bare.create(TrainSettings(norm="layer", epochs=1))
    run.update_status(state="completed")
    run.save_result(
        "batchdep",
        {
            "n_test": 100,
            "eval_acc": 0.5,
            "batch_stats": {"1": 0.5, "128": 0.48},
            "differ_from_eval": {"1": 0, "128": 3},
            "precise_bn_acc": None,
            "precise_bn_images": 0,
        },
    )
    assert verdicts(bare)["ln-batch-invariant"] == Verdict.DOES_NOT_HOLD  # the check caught a bug


def test_ln_params_wording_follows_the_numbers(bare, monkeypatch):
    row = row_of(bare, "ln-params")
    assert "154,666 over the 50,000 budget" in row["figure"] and row["verdict"] == Verdict.HOLDS
    from cifar_app.core import model

    monkeypatch.setattr(model, "PARAM_BUDGET", 300_000)
    row = row_of(bare, "ln-params")
    assert row["verdict"] == Verdict.DOES_NOT_HOLD and "over the" not in row["figure"]
    assert "95,334 under the 300,000 budget" in row["figure"]


def test_the_seed_layernorm_accuracy_joins_the_parameter_row(bare):
    grid = {"seed": [0, 1, 2], "norm": ["layer", "layer-chw"]}
    fake_preset(
        bare,
        "seed-layernorm",
        {(s, n): (0.50 if n == "layer" else 0.40) + s / 100 for s in SEEDS3 for n in ("layer", "layer-chw")},
        grid,
    )
    row = row_of(bare, "ln-params")
    assert "without affine 41.00 ± 1.00%" in row["figure"] and row["experiment"]
    assert row["secondary"][0]["comparison"]["effect"] == pytest.approx(-0.10)


# ---------------------------------------------------------------------------- damaged evidence


def _good_file(tmp_path, preset: str = "groups") -> dict:
    return json.loads((SHIPPED_DIR / f"preset_{preset}.json").read_text())


def _damages(d: dict) -> dict[str, object]:
    """Every kind of damage a results file may carry, by name: the file's text (or bytes)."""
    import copy

    def edit(f) -> str:
        x = copy.deepcopy(d)
        f(x)
        return json.dumps(x)

    text = json.dumps(d)
    return {
        "string accuracy": edit(lambda x: x["points"][0].update(final_test_acc="0.5")),
        "null accuracy": edit(lambda x: x["points"][0].update(status="completed", final_test_acc=None)),
        "NaN accuracy": text.replace(
            '"final_test_acc": ' + json.dumps(d["points"][0]["final_test_acc"]), '"final_test_acc": NaN', 1
        ),
        "accuracy 1e308": edit(lambda x: x["points"][0].update(final_test_acc=1e308)),
        "accuracy 1e400": text.replace(
            '"final_test_acc": ' + json.dumps(d["points"][0]["final_test_acc"]), '"final_test_acc": 1e400', 1
        ),
        "accuracy 5.0": edit(lambda x: x["points"][0].update(final_test_acc=5.0)),
        # a whole number past any float: float() raised OverflowError, which no reader caught
        "seconds a 401-digit whole number": edit(lambda x: x["points"][0].update(seconds=10**400)),
        "epoch without test_acc": edit(lambda x: x["points"][0]["epochs"][0].pop("test_acc")),
        "epoch accuracy a string": edit(lambda x: x["points"][0]["epochs"][0].update(train_acc="high")),
        "missing points": edit(lambda x: x.pop("points")),
        "points without settings": edit(lambda x: [p.pop("settings") for p in x["points"]]),
        "a duplicate point": edit(lambda x: x["points"].append(copy.deepcopy(x["points"][0]))),
        "truncated": text[: len(text) // 2],
        "empty": "",
        "a top-level list": json.dumps([d]),
        "settings of the wrong type": edit(lambda x: x["points"][0]["settings"].update(batch_size="big")),
        "not UTF-8": b"\xff\xfe\x00{",
    }


def _landscape_damages() -> dict[str, str]:
    import copy

    d = json.loads((SHIPPED_DIR / "preset_landscape.json").read_text())
    p = next(i for i, pt in enumerate(d["points"]) if pt.get("landscape"))

    def edit(f) -> str:
        x = copy.deepcopy(d)
        f(x["points"][p]["landscape"][1])
        return json.dumps(x)

    return {
        "landscape lr a string": edit(lambda r: r.update(lr="fast")),
        "landscape without blocks": edit(lambda r: r.pop("blocks")),
        "landscape cos null": edit(lambda r: next(iter(r["blocks"].values())).update(ics_cos=None)),
    }


@pytest.mark.parametrize("kind", list(_damages(_good_file(None))))
def test_a_damaged_results_file_marks_only_the_claims_it_feeds(tmp_path, kind):
    folder = tmp_path / "shipped"
    folder.mkdir()
    for f in (SHIPPED_DIR).glob("preset_*.json"):
        (folder / f.name).write_bytes(f.read_bytes())
    bad = _damages(_good_file(tmp_path))[kind]
    (folder / "preset_groups.json").write_bytes(bad if isinstance(bad, bytes) else bad.encode())
    store = RunStore(tmp_path / "runs")
    rows = {r["id"]: r for r in evaluate(store, shipped=folder)}
    assert rows["gn-channels"]["verdict"] == Verdict.DAMAGED
    assert rows["gn-channels"]["note"].startswith("evidence damaged: preset_groups.json: ")
    assert "Traceback" not in rows["gn-channels"]["note"]
    others = {k: r["verdict"] for k, r in rows.items() if k != "gn-channels"}
    assert Verdict.DAMAGED not in others.values() and Verdict.NOT_MEASURED not in others.values()
    json.dumps(list(rows.values()), allow_nan=False)


@pytest.mark.parametrize("kind", ["landscape lr a string", "landscape without blocks", "landscape cos null"])
def test_damaged_landscape_records_mark_the_ics_claim(tmp_path, kind):
    folder = tmp_path / "shipped"
    folder.mkdir()
    (folder / "preset_landscape.json").write_text(_landscape_damages()[kind])
    rows = {r["id"]: r for r in evaluate(RunStore(tmp_path / "runs"), shipped=folder)}
    assert rows["bn-ics"]["verdict"] == Verdict.DAMAGED and "point " in rows["bn-ics"]["note"]


@pytest.mark.parametrize(
    "bad",
    [
        '{"n_test": 100, "eval_acc": "x", "batch_stats": {"1": 0.5}, "differ_from_eval": {"1": 0}}',
        '{"n_test": 100, "eval_acc": NaN, "batch_stats": {"1": 0.5}, "differ_from_eval": {"1": 0}}',
        '{"n_test": 100, "eval_acc": 0.5, "batch_stats": {"1": null}, "differ_from_eval": {"1": 0}}',
        '{"n_test": 100, "eval_acc": 0.5, "batch_stats": {"1": 0.5}}',
        '{"n_test": 100, "eval_acc": 0.5, "batch_stats": {"one": 0.5}, "differ_from_eval": {"1": 0}}',
        '{"n_test": 100, "eval_acc": 0.5, "batch_stats": {"1": 0.5, "1": 0.6}, "differ_from_eval": {"1": 0}}',
        '{"n_test": 100, "eval_acc": 0.5, "batch_stats": {"1": 0.5}, "differ_from_eval": {"999": 0}}',
        '{"n_test": 100, "eval_acc": 0.5, "batch_stats": {"1": 0.5}, "differ_from_eval": {"1": 0}, "x": NaN}',
        "[1, 2]",
        '{"n_test": 1',
        "",
    ],
)
def test_a_damaged_batchdep_file_marks_only_its_claim(bare, bad):
    run = bare.create(TrainSettings(norm="layer", epochs=1))
    run.update_status(state="completed")
    (run.path / "batchdep.json").write_text(bad)
    rows = {r["id"]: r for r in evaluate(bare)}
    assert rows["ln-batch-invariant"]["verdict"] == Verdict.DAMAGED
    assert "batchdep.json" in rows["ln-batch-invariant"]["note"]
    assert rows["ln-params"]["verdict"] == Verdict.HOLDS


def test_a_damaged_file_marks_every_claim_it_feeds_and_no_other(tmp_path):
    """The seeds results feed the speed and the struggling claims; damaged, both say so (not "not
    measured yet"), and the LN parameter count, which reads no seeds, does not."""
    folder = tmp_path / "shipped"
    folder.mkdir()
    for f in (SHIPPED_DIR).glob("preset_*.json"):
        (folder / f.name).write_bytes(f.read_bytes())
    (folder / "preset_seeds.json").write_text('{"experiment": "e", "points": []}')
    rows = {r["id"]: r for r in evaluate(RunStore(tmp_path / "runs"), shipped=folder)}
    assert rows["bn-speed"]["verdict"] == rows["no-norm-struggles"]["verdict"] == Verdict.DAMAGED
    assert "preset_seeds.json" in rows["bn-speed"]["note"]
    assert rows["ln-params"]["verdict"] == Verdict.HOLDS and "damaged" not in rows["ln-params"]["note"]


def test_claims_json_on_the_cli_is_strict_and_survives_damage(tmp_path):
    folder = tmp_path / "shipped"
    folder.mkdir()
    for f in (SHIPPED_DIR).glob("preset_*.json"):
        (folder / f.name).write_bytes(f.read_bytes())
    (folder / "preset_batch-size.json").write_text(
        '{"experiment": "e", "points": [{"settings": {}, "status": "completed", "final_test_acc": 1e400}]}'
    )
    env = {**__import__("os").environ, "CIFAR_APP_REFERENCE_EXPERIMENTS": str(folder)}
    out = subprocess.run(
        [sys.executable, "-m", "cifar_app", "claims", "--json", "--runs-dir", str(tmp_path / "r")],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        env=env,
    )
    assert out.returncode == 0 and "Traceback" not in out.stderr, out.stderr
    rows = {r["id"]: r for r in json.loads(out.stdout, parse_constant=lambda c: pytest.fail(c))["claims"]}
    assert len(rows) == 11
    assert rows["gn-small-batches"]["verdict"] == rows["ln-stable"]["verdict"] == "evidence damaged"
    assert rows["no-norm-struggles"]["verdict"] in ("holds", "does not hold", "inconclusive")  # undamaged
    text = subprocess.run(
        [sys.executable, "-m", "cifar_app", "claims", "--runs-dir", str(tmp_path / "r")],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        env=env,
    )
    assert text.returncode == 0 and "evidence damaged: preset_batch-size.json" in text.stdout


def test_the_claims_page_renders_rows_plots_and_a_run_button(pages, tmp_path):
    pages.use(tmp_path / "runs")
    at = pages.open("claims")  # nothing shipped shows (the fixture hides the reference runs)
    assert any(b.label == "Run the learning-rate preset" for b in at.button)
    pages.monkeypatch.delenv("CIFAR_APP_REFERENCE_RUNS")  # as on a fresh install
    pages.monkeypatch.setenv("CIFAR_APP_RUNS", str(tmp_path / "fresh"))  # (a store is kept per folder)
    at = pages.open("claims")
    assert len(at.get("plotly_chart")) >= 9 and not at.exception
    text = "\n".join(m.value for m in at.markdown)
    shown = sum(1 for r in evaluate(RunStore(tmp_path / "fresh")) if r["ci95"] is not None)
    assert shown >= 7 and text.count("95% interval") >= shown and "detects ≥" in text
    asked = set(
        re.findall(
            r"run the (\S+) preset to measure it on the default", "\n".join(c.value for c in at.caption)
        )
    )
    offered = {
        b.label.removeprefix("Run the ").removesuffix(" preset")
        for b in at.button
        if b.label.startswith("Run the")
    }
    assert offered == asked == set()


def test_the_claims_page_survives_every_damaged_file(pages, tmp_path):
    folder = tmp_path / "shipped"
    folder.mkdir()
    damages = _damages(_good_file(tmp_path))
    for i, preset in enumerate(
        ("batch-size", "groups", "learning-rate", "regularization", "seeds", "seed-layernorm")
    ):
        bad = list(damages.values())[i * 2]
        (folder / f"preset_{preset}.json").write_bytes(bad if isinstance(bad, bytes) else bad.encode())
    (folder / "preset_landscape.json").write_text(_landscape_damages()["landscape lr a string"])
    pages.use(tmp_path / "runs")
    pages.monkeypatch.delenv("CIFAR_APP_REFERENCE_RUNS")
    pages.monkeypatch.setenv("CIFAR_APP_REFERENCE_EXPERIMENTS", str(folder))
    at = pages.open("claims")
    assert not at.exception
    badges = "\n".join(m.value for m in at.markdown)
    assert badges.count("evidence damaged") >= 8
    assert len([m for m in at.markdown if "“" in m.value]) == 11
