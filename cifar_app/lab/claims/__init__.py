"""The seed's claims about BN, GN and LN, each with a verdict as strong as its evidence.

Every claim is one ``Claim``: the seed's words, the preset that tests it, the comparison that decides
it (stated in advance, in ``rule``), the effect the paper behind it reports (``Paper``), whether the
evidence is direct or indirect, and the function that applies the rule (``Evidence``: the newest
experiment of each preset with completed points in the store, else the results shipped with the
app; the runs' cached batch dependence; the model registry). Nothing is typed in: change the
stored results and the verdict changes.

The statistics are ``stats.py``'s: each arm is the per-seed values of one configuration, measured
in the comparison's own configuration (no noise is borrowed from another preset); Welch's t gives
the effect's 95% interval and the minimum detectable effect (MDE) of the design. A row *holds* or
*does not hold* only when the interval excludes zero; otherwise it is *inconclusive* and says what
the design could detect. A point that failed (diverged) counts as chance accuracy, never as
missing. A damaged results file marks only the claims it feeds (*evidence damaged*).
"""

from __future__ import annotations

import math
from pathlib import Path

from cifar_app.core.settings import DEFAULT_RECIPE
from cifar_app.core.stats import Paper, Verdict, mean_interval
from cifar_app.lab.claims.batch import (
    judge_groups,
    judge_less_batch_dependent,
    judge_ln_invariant,
    judge_ln_params,
)
from cifar_app.lab.claims.evidence import (
    Claim,
    Evidence,
    Finding,
    _notes,
)
from cifar_app.lab.claims.optimization import (
    judge_higher_lr,
    judge_ics,
    judge_regularizes,
    judge_speed,
    judge_struggles_without,
)
from cifar_app.lab.presets import PRESETS
from cifar_app.store.runstore import RunStore

__all__ = ["CLAIMS", "Verdict", "evaluate", "recipe_note", "other_recipes"]


# ---------------------------------------------------------------------------- the claims

WU_HE = "Wu & He 2018, Group Normalization (ECCV)"
CLAIMS: tuple[Claim, ...] = (
    Claim(
        "bn-speed",
        "BN: improved training speed … faster convergence",
        "seeds",
        "holds when BN reaches 70% test accuracy in fewer epochs than no normalization (Welch's t over "
        "seeds, 95% interval of none − BN above 0; the seeds preset, both at the default LR), and the "
        "second row, each norm at its own best LR of the learning-rate preset (epochs to 35%), does not "
        "show the opposite; a seed that never gets there counts at the run's length + 1",
        judge_speed,
        Paper(
            None,
            "BN-x5 reaches Inception's accuracy in 14× fewer steps",
            "Ioffe & Szegedy 2015, §4.2.2 (ImageNet); a ratio of steps, not comparable in epochs to 70%",
        ),
        "direct",
        ("seeds", "learning-rate"),
    ),
    Claim(
        "bn-ics",
        "BN: reducing the internal covariate shift problem",
        "landscape",
        "holds when BN's internal covariate shift per unit step (Santurkar et al.'s Definition 2.1, "
        "‖G − G′‖/‖G‖ divided by the step η‖g‖, median over probes after step 0 with η ≥ 0.1 of the "
        "peak) is below none's, the 95% interval of none − BN above 0; does not hold when below 0",
        judge_ics,
        Paper(
            None,
            "no reduction: with BN the ICS is as large or larger",
            "Santurkar et al. 2018, How Does Batch Normalization Help Optimization?, Fig. 5",
        ),
        "indirect",
        ("landscape",),
    ),
    Claim(
        "bn-regularizes",
        "BN: regularization effect … reducing overfitting",
        "regularization",
        "holds when BN's train − test gap is smaller than none's at matched fit (the gap when each run "
        "first reaches the highest train accuracy every BN and none run reaches; 5,000 images, no "
        "augmentation, one LR for all), the 95% interval of none − BN above 0",
        judge_regularizes,
        Paper(None, "BN reduces the need for Dropout; no effect size is given", "Ioffe & Szegedy 2015, §3.4"),
        "direct",
        ("regularization",),
    ),
    Claim(
        "bn-higher-lr",
        "BN: allows for higher learning rates … without causing the gradients to explode",
        "learning-rate",
        "holds when BN's largest LR that trains (no divergence, within 5 points of its own best) is "
        "above none's, per seed in log2: the exact permutation test at p < 0.05 and the 95% interval, "
        "widened by the grid's resolution, above 0",
        judge_higher_lr,
        Paper(
            math.log2(30),
            "BN-x30 trains at 30× Inception's learning rate (log2 30 ≈ 4.9 doublings)",
            "Ioffe & Szegedy 2015, §4.2.1-4.2.2",
        ),
        "direct",
        ("learning-rate",),
    ),
    Claim(
        "no-norm-struggles",
        "without Batch Normalization the model was struggling",
        "seeds",
        "holds when BN's final test accuracy is above none's, the 95% interval of BN − none above 0 "
        "(a seed without a norm that collapses counts at chance)",
        judge_struggles_without,
        None,
        "direct",
        ("seeds",),
    ),
    Claim(
        "gn-small-batches",
        "GN: reduced batch size dependency … effective for small batch sizes",
        "batch-size",
        "holds when BN loses more accuracy than GN from batch 32 to batch 2 (equal steps; per seed, a "
        "failed point at chance), the 95% interval of BN's loss − GN's above 0",
        judge_less_batch_dependent("group"),
        Paper(
            10.9,
            "BN's error rises 23.6 → 34.7% from 32 to 2 images per GPU, GN's stays at 24.0-24.2% "
            "(ranges 11.1 and 0.2 points)",
            WU_HE + ", Table 2 / Fig. 1 (ResNet-50, ImageNet)",
        ),
        "direct",
        ("batch-size",),
    ),
    Claim(
        "gn-channels",
        "GN: captures inter-channel correlations",
        "groups",
        "holds when G = 4 (fixed in advance) beats both G = 1 (LN) and G = C (IN) in final accuracy, "
        "both 95% intervals above 0; does not hold when LN or IN beats it; other G are shown "
        "Holm-corrected",
        judge_groups,
        Paper(
            1.2,
            "GN (G = 32) 24.1% error, LN 25.3% (+1.2), IN 28.4% (+4.3)",
            WU_HE + ", Table 1 (ResNet-50, ImageNet, batch 32)",
        ),
        "indirect",
        ("groups",),
    ),
    Claim(
        "ln-batch-invariant",
        "LN: invariant to batch size",
        "batch dependence at inference",
        "by construction; shown as a check: a LayerNorm run gives the same predictions in eval mode "
        "and at every test batch size",
        judge_ln_invariant,
        Paper(
            None,
            "each example normalized over its own hidden units",
            "Ba, Kiros & Hinton 2016, Layer Normalization, §3",
        ),
        "by construction",
        (),
    ),
    Claim(
        "ln-stable",
        "LN: stable performance across different batch sizes and training scenarios",
        "batch-size",
        "holds when LN's accuracy changes less than BN's, in either direction, from batch 32 to batch 2 "
        "(per seed): the 95% intervals of BN's loss − LN's change and of BN's loss + LN's change both "
        "above 0; does not hold when LN changes more (Holm over the two sides)",
        judge_less_batch_dependent("layer"),
        Paper(None, "no CNN batch-size effect is reported for LN", "Ba, Kiros & Hinton 2016"),
        "direct",
        ("batch-size",),
    ),
    Claim(
        "ln-params",
        "LN: the number of parameters gone extremely high … made elementwise_affine=False",
        "seed-layernorm",
        "holds when the seed's nn.LayerNorm([C, H, W]) with its affine puts the "
        "network over the 50,000-parameter budget (a count from the model registry); the accuracy of "
        "the variant that fits is shown beside it",
        judge_ln_params,
        None,
        "count",
        ("seed-layernorm",),
    ),
    Claim(
        "ln-rnn",
        "LN: suitable for RNNs and LLMs",
        "none",
        "not testable with this CNN: the lab has no recurrent or language model",
        lambda ev, paper: Finding(Verdict.NOT_TESTABLE, "", note="the lab trains one CNN on images"),
        None,
        "—",
    ),
)
CLAIM_BY_ID = {c.id: c for c in CLAIMS}
MEASURED = frozenset({Verdict.HOLDS, Verdict.DOES_NOT_HOLD, Verdict.INCONCLUSIVE})


def evaluate(store: RunStore, shipped: Path | str | None = "app") -> list[dict]:
    """Every claim with its computed verdict, in the seed's order, as plain JSON-safe values:
    ``{"id", "claim", "tested_by", "verdict", "rule", "decided_by", "figure", "effect", "ci95",
    "n", "mde", "unit", "paper", "evidence_kind", "arms", "axis", "secondary", "evidence",
    "experiment", "runs", "note", "recipes"}``. A claim whose evidence is damaged says so; the
    others still get their verdicts. ``shipped``: the folder of shipped results ("app": the app's,
    ``store.results.shipped_folder``; None: only this store's)."""
    ev = Evidence.gather(store, shipped)
    rows = []
    for c in CLAIMS:
        damaged = [f"evidence damaged: {ev.damaged[p]}" for p in c.feeds if p in ev.damaged]
        f = c.judge(ev, c.paper)
        if damaged and f.verdict == Verdict.NOT_MEASURED:  # it lacks what the damaged file held
            f = Finding(Verdict.DAMAGED, "", note="; ".join(damaged))
        elif damaged:  # judged without it (a part it can do without): say so
            f.note = _notes(f.note, *damaged)
        f.note = _notes(f.note, *_older_design(ev, c))
        rows.append(_row(c, f, ev))
    return rows


def _older_design(ev: Evidence, c: Claim) -> list[str]:
    """A note for each shipped result a claim reads whose points are not its preset's today (a
    file measured with an earlier design of the preset)."""
    out = []
    for name in c.feeds:
        res = ev.experiments.get(name)
        if res is not None and res.shipped and name in PRESETS and PRESETS[name].foreign_points(res):
            out.append(f"the shipped {name} results were measured with an earlier design of the preset")
    return out


def _row(c: Claim, f: Finding, ev: Evidence) -> dict:
    cmp = f.comparison
    s = f.scale
    return {
        "id": c.id,
        "claim": c.claim,
        "tested_by": c.experiment,
        "verdict": f.verdict,
        "rule": c.rule,
        "decided_by": f.decided_by,
        "figure": f.figure,
        "effect": _num(cmp.effect * s) if cmp else None,
        "ci95": [_num(cmp.low * s), _num(cmp.high * s)] if cmp else None,
        "n": [cmp.n_a, cmp.n_b] if cmp else None,
        "mde": _num(cmp.mde * s) if cmp else None,
        "p": _num(cmp.p) if cmp else None,
        "test": cmp.test if cmp else None,
        "unit": f.unit,
        "paper": c.paper.to_dict() if c.paper else None,
        "evidence_kind": c.kind,
        "arms": {k: [_num(v) for v in vs] for k, vs in f.arms.items()},
        "axis": f.axis,
        "arm_intervals": {
            k: {m: _num(v) if isinstance(v, float) else v for m, v in mean_interval(vs).items()}
            for k, vs in f.arms.items()
        },
        "secondary": f.secondary,
        "evidence": _safe(f.evidence),
        "experiment": f.experiment,
        "runs": f.runs,
        "note": f.note,
        "recipes": _recipes(ev, f),
    }


def _num(v: float | None) -> float | None:
    """A JSON-safe number: ±inf (an unbounded interval) and NaN become None."""
    return None if v is None or not math.isfinite(v) else float(v)


def _safe(obj: object) -> object:
    """Evidence as strict JSON: non-finite floats as None, keys as text."""
    if isinstance(obj, float):
        return _num(obj)
    if isinstance(obj, dict):
        return {str(k): _safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_safe(v) for v in obj]
    return obj


def _recipes(ev: Evidence, f: Finding) -> list[str]:
    if f.verdict in (Verdict.NOT_MEASURED, Verdict.NOT_TESTABLE, Verdict.DAMAGED):
        return []
    if f.recipes is not None:
        return sorted(set(f.recipes))
    res = next((r for r in ev.experiments.values() if f.experiment and r.experiment == f.experiment), None)
    return res.recipes() if res is not None else []


def other_recipes(row: dict) -> list[str]:
    """The recipes other than today's default that a claim's verdict was measured on."""
    return [r for r in row["recipes"] if r != DEFAULT_RECIPE]


def recipe_note(row: dict) -> str:
    """'' when a claim was measured on today's default recipe; else what it was measured on."""
    others = other_recipes(row)
    if not others:
        return ""
    preset = row["tested_by"]
    again = f": run the {preset} preset to measure it on the default" if preset in PRESETS else ""
    return f"measured on the {', '.join(others)} recipe, not today's default{again}"
