"""The rules about batches and groups: loss from batch 32 to 2 (GN, and LN two-sided), GN's groups
against LN and IN, LN's batch invariance (by construction, shown as a check) and its parameters."""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable

from cifar_app.core.settings import recipe_values
from cifar_app.core.stats import (
    Comparison,
    Paper,
    Verdict,
    adjusted,
    decide,
    holm,
    welch,
)
from cifar_app.lab.claims.evidence import (
    GROUPS_DECIDING,
    Evidence,
    Finding,
    _compute_needed,
    _judged,
    _mean_seconds,
    _missing,
    _ms,
    _notes,
    _runs,
    _say,
    _secondary,
    _short,
    _values,
    counted_accuracy,
)
from cifar_app.store.results import ExperimentResults
from cifar_app.store.run import RunDamaged, RunNotFound

# ---------------------------------------------------------------------------- batch size


def batch_drops(res: ExperimentResults) -> tuple[dict[str, list[float]], int, int]:
    """Per norm, per seed: the accuracy at the largest batch size minus at the smallest (a linear
    contrast: unbiased, unlike a range of noisy points); a failed point counts at chance, a seed
    missing either end is left out. Returns (drops, largest, smallest)."""
    sizes = sorted({p.settings["batch_size"] for p in res.points})
    table: dict[tuple[str, int], dict[int, float]] = {}
    for p in res.points:
        if (a := counted_accuracy(p)) is not None:
            table.setdefault((p.settings["norm"], p.settings["seed"]), {})[p.settings["batch_size"]] = a
    out: dict[str, list[float]] = {}
    if len(sizes) < 2:
        return out, 0, 0
    big, small = sizes[-1], sizes[0]
    for (norm, _seed), accs in sorted(table.items()):
        if big in accs and small in accs:
            out.setdefault(norm, []).append(accs[big] - accs[small])
    return out, big, small


def judge_less_batch_dependent(norm: str) -> Callable[[Evidence, Paper | None], Finding]:
    """The batch-size claims, on the change of accuracy from the largest batch size to the smallest
    (Wu & He's 32 → 2), per seed. GN, "effective for small batch sizes": BN loses more than GN. LN,
    "stable" (two-sided): BN's loss exceeds LN's change in either direction, i.e. both BN − LN and
    BN + LN above 0 (intersection-union: each at α); a jump up counts as much as a fall."""
    short = _short(norm)

    def judge(ev: Evidence, paper: Paper | None) -> Finding:
        res = ev.experiments.get("batch-size")
        if res is None:
            return _missing("batch-size")
        drops, big, small = batch_drops(res)
        if "batch" not in drops or norm not in drops:
            return _missing("batch-size", f"no seed has both ends of the batch sizes for BN and {short}")
        cmp = welch(drops["batch"], drops[norm])
        secondary = []
        if norm == "group":
            verdict, why = _judged(cmp, paper, 100, "points")
        else:  # two-sided: also against LN's change mirrored
            mirrored = welch(drops["batch"], [-d for d in drops[norm]])
            secondary.append(
                _secondary(f"BN's loss − LN's change mirrored (BN − (−{short}))", mirrored, 100, "points")
            )
            if cmp is None or mirrored is None:
                verdict, why = decide(None)
            else:
                lo_p = holm([cmp.p, mirrored.p])
                if (cmp.high < 0 and lo_p[0] < 0.05) or (mirrored.high < 0 and lo_p[1] < 0.05):
                    verdict = Verdict.DOES_NOT_HOLD
                    why = f"{short} changes more than BN over the batch sizes (Holm over the two sides)"
                elif cmp.low > 0 and mirrored.low > 0:
                    verdict, why = Verdict.HOLDS, "both sides' 95% intervals above 0"
                else:
                    binding = min((cmp, mirrored), key=lambda c: c.low)
                    verdict, why = decide(binding, "points", paper, 100)
                    verdict = Verdict.INCONCLUSIVE
                    cmp = binding
        extra = ()
        if (
            verdict == Verdict.INCONCLUSIVE
            and cmp is not None
            and paper
            and paper.effect
            and cmp.mde * 100 > paper.effect
        ):
            extra = (_compute_needed(paper, [drops["batch"], drops[norm]], _mean_seconds(res)),)
        acc = _values(res, lambda s: (s["norm"], s["batch_size"]))
        sizes = sorted({b for _, b in acc})
        per = "; ".join(
            f"{_short(n)} "
            + ", ".join(f"{b}: {100 * statistics.fmean(acc[(n, b)]):.1f}%" for b in sizes if (n, b) in acc)
            for n in dict.fromkeys(k[0] for k in acc)
        )
        figure = (
            f"accuracy lost from batch {big} to {small} (per seed): BN {_ms(drops['batch'])}, {short} "
            f"{_ms(drops[norm])} points; means by batch size: {per}"
        )
        return Finding(
            verdict,
            figure,
            {"drop": drops, "accuracy": {f"{n}@{b}": v for (n, b), v in acc.items()}},
            res.experiment,
            _runs(res),
            note=_notes(why, *extra, ev.source("batch-size")),
            comparison=cmp,
            decided_by=(
                f"BN − {short}, accuracy lost from batch {big} to {small}, per seed"
                + ("" if norm == "group" else f"; and BN + {short} (two-sided)")
            ),
            arms={_short(n): [100 * r for r in v] for n, v in drops.items()},
            axis=f"accuracy lost, batch {big} → {small} (points)",
            secondary=secondary,
        )

    return judge


# ---------------------------------------------------------------------------- groups


def judge_groups(ev: Evidence, paper: Paper | None) -> Finding:
    res = ev.experiments.get("groups")
    if res is None:
        return _missing("groups")

    def arm(s: dict) -> str | None:
        if s["norm"] == "group":
            return str(s["groups"])
        return "C" if s["norm"] == "instance" else None

    by = _values(res, arm)
    g = str(GROUPS_DECIDING)
    if g not in by or "1" not in by or "C" not in by:
        return _missing("groups", f"the preset's G = {g}, G = 1 and G = C arms are needed")
    vs_ln, vs_in = welch(by[g], by["1"]), welch(by[g], by["C"])
    # the claim: G beats both LN and IN (intersection-union: each at α, no correction needed)
    if vs_ln is None or vs_in is None:
        verdict, why, cmp = Verdict.INCONCLUSIVE, "no noise estimate for G = 4 against LN or IN", None
    else:
        cmp = min((vs_ln, vs_in), key=lambda c: c.low)  # the binding comparison
        other = "1" if cmp is vs_ln else "C"
        # the paper's effect for the binding side: GN − LN 1.2 points, GN − IN 4.3 (Wu & He, Table 1)
        side = Paper(1.2 if other == "1" else 4.3, paper.text, paper.source)
        beaten = holm([vs_ln.p, vs_in.p])  # "LN or IN beats G = 4" is a union: Holm over the two
        if (vs_ln.high < 0 and beaten[0] < 0.05) or (vs_in.high < 0 and beaten[1] < 0.05):
            verdict, why = Verdict.DOES_NOT_HOLD, "LN or IN beats G = 4 (Holm over the two)"
        elif vs_ln.low > 0 and vs_in.low > 0:
            verdict, why = Verdict.HOLDS, "G = 4 beats both LN and IN, each 95% interval above 0"
        else:
            _, why = decide(cmp, "points", side, 100)
            verdict = Verdict.INCONCLUSIVE
            why = f"the binding comparison, G = 4 − {'LN' if other == '1' else 'IN'}: " + why
            if cmp.mde * 100 > side.effect:
                why = _notes(why, _compute_needed(side, [by[g], by[other]], _mean_seconds(res)))
    # exploratory: the best G between, against LN and IN, Holm-corrected over every such comparison
    middle = [k for k in by if k not in ("1", "C")]
    pairs = [(k, o, welch(by[k], by[o])) for k in middle for o in ("1", "C")]
    tested = [(k, o, c) for k, o, c in pairs if c is not None]
    adj = holm([c.p for _, _, c in tested])
    secondary = [
        _secondary(
            f"G = {k} − {'LN' if o == '1' else 'IN'} (Holm-corrected over {len(tested)})",
            adjusted(c, a),
            100,
            "points",
        )
        for (k, o, c), a in zip(tested, adj)
    ]
    order = sorted(by, key=lambda k: (k == "C", int(k) if k != "C" else 0))
    figure = (
        ", ".join(
            f"G = {k}{' (LN)' if k == '1' else ' (IN)' if k == 'C' else ''}: {_ms(by[k])}%" for k in order
        )
        + f"; G = 4 − LN {_say(vs_ln, 100, 'points')}; G = 4 − IN {_say(vs_in, 100, 'points')}"
    )
    return Finding(
        verdict,
        figure,
        {"accuracy": {k: by[k] for k in order}},
        res.experiment,
        _runs(res),
        note=_notes(why, ev.source("groups")),
        comparison=cmp,
        decided_by="G = 4 (fixed in advance) − LN and − IN, final accuracy per seed; holds when both "
        "intervals are above 0",
        arms={f"G={k}": [100 * a for a in by[k]] for k in order},
        axis="final test accuracy (%)",
        secondary=secondary,
    )


# ---------------------------------------------------------------------------- LayerNorm


def judge_ln_invariant(ev: Evidence, paper: Paper | None) -> Finding:
    from cifar_app.lab.batchdep_record import BatchDependence

    construction = (
        "LayerNorm normalizes each image over its own channels and pixels: no other image of "
        "the batch enters its output, in training or at test"
    )
    for summary in ev.store.summaries():  # the run index: only LayerNorm runs are opened
        if summary.norm != "layer":
            continue
        try:
            run = ev.store.get(summary.id)
            if (cached := run.load_result("batchdep")) is None:
                continue
            settings = run.settings()
        except RunNotFound:  # deleted since the listing
            continue
        except RunDamaged as e:
            if "batchdep" in str(e):
                return Finding(Verdict.DAMAGED, construction, note=f"evidence damaged: {run.id}/{e}")
            continue
        bd = BatchDependence.from_dict(cached)
        differ = sum(bd.differ_from_eval.values())
        spread = max(bd.batch_stats.values()) - min(bd.batch_stats.values())
        verdict = Verdict.BY_CONSTRUCTION if differ == 0 else Verdict.DOES_NOT_HOLD
        return Finding(
            verdict,
            f"{construction}. Check, {run.label}: {100 * bd.eval_acc:.2f}% in eval mode and "
            f"at every test batch size {min(bd.batch_stats)}…{max(bd.batch_stats)} (spread "
            f"{100 * spread:.2f} points, {differ} predictions differ)",
            {
                "batch_stats": {str(k): v for k, v in bd.batch_stats.items()},
                "differ": {str(k): v for k, v in bd.differ_from_eval.items()},
            },
            None,
            [run.id],
            recipes=[settings.recipe()],
            note="" if differ == 0 else "the check found predictions that depend on the batch: a bug",
        )
    return Finding(
        Verdict.BY_CONSTRUCTION,
        construction,
        note="check not run yet: measure a LayerNorm run's batch dependence (Inside page, or "
        "`python -m cifar_app batchdep RUN`)",
    )


def judge_ln_params(ev: Evidence, paper: Paper | None) -> Finding:
    from cifar_app.core.model import PARAM_BUDGET, norm_budget_rows

    rows = {r["normalization"]: r for r in norm_budget_rows(arch=recipe_values("seed-plain")["arch"])}
    seed, seed_off, ours = (
        rows["LayerNorm [C,H,W], affine (seed)"],
        rows["LayerNorm [C,H,W], no affine (seed)"],
        rows["LayerNorm"],
    )
    now = {r["normalization"]: r for r in norm_budget_rows()}["LayerNorm [C,H,W], affine (seed)"]
    over = seed["network"] - PARAM_BUDGET
    verdict = Verdict.HOLDS if over > 0 else Verdict.DOES_NOT_HOLD

    def where(n: int) -> str:
        return f"{n - PARAM_BUDGET:,} over" if n > PARAM_BUDGET else f"{PARAM_BUDGET - n:,} under"

    figure = (
        f"in the seed's network, nn.LayerNorm([C,H,W]) with its affine: {seed['network']:,} parameters "
        f"({seed['parameters in the norm layers']:,} in the norms), {where(seed['network'])} the "
        f"{PARAM_BUDGET:,} budget; without: {seed_off['network']:,} ({where(seed_off['network'])}); the "
        f"lab's GroupNorm(1, C): {ours['network']:,} ({where(ours['network'])}); in today's default "
        f"network with the affine: {now['network']:,} ({where(now['network'])})"
    )
    cmp = Comparison(
        float(over), float(over), float(over), math.nan, 1, 1, math.nan, 0.0, 0.0, test="a count: no noise"
    )
    evidence: dict = {
        "networks": {k: r["network"] for k, r in rows.items()},
        "default": now["network"],
        "budget": PARAM_BUDGET,
    }
    secondary, note, runs, exp = [], "accuracy: not measured yet (seed-layernorm preset)", [], None
    res = ev.experiments.get("seed-layernorm")
    if res is not None:
        accs = _values(res, lambda s: s["norm"])
        if "layer" in accs and "layer-chw" in accs:
            acc_cmp = welch(accs["layer-chw"], accs["layer"])
            secondary.append(
                _secondary(
                    "accuracy, the seed's LayerNorm without affine − the lab's (seed-layernorm preset)",
                    acc_cmp,
                    100,
                    "points",
                )
            )
            figure += (
                f"; accuracy (seed-layernorm preset): the seed's without affine {_ms(accs['layer-chw'])}%, "
                f"the lab's {_ms(accs['layer'])}%"
            )
            evidence["accuracy"] = accs
            note, runs, exp = ev.source("seed-layernorm"), _runs(res), res.experiment
    return Finding(
        verdict,
        figure,
        evidence,
        exp,
        runs,
        note=note,
        comparison=cmp,
        decided_by="parameters of the seed's network with nn.LayerNorm([C,H,W]) and its affine "
        "− the budget (a count)",
        scale=1,
        unit="parameters",
        arms={
            k.replace(" (seed)", ""): [float(v)] for k, v in evidence["networks"].items() if "LayerNorm" in k
        },
        axis="parameters",
        secondary=secondary,
    )

