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
import statistics
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from cifar_app.core import norms
from cifar_app.core.settings import DEFAULT_RECIPE, recipe_values
from cifar_app.core.stats import (
    Comparison,
    Paper,
    Verdict,
    adjusted,
    decide,
    holm,
    mean_interval,
    permutation,
    seeds_for,
    welch,
)
from cifar_app.lab.experiments import ExperimentStore
from cifar_app.lab.presets import PRESETS
from cifar_app.store.results import ExperimentResults, PointResult, load_shipped_results
from cifar_app.store.runstore import RunDamaged, RunStore
from cifar_app.store.states import RunState

__all__ = ["CLAIMS", "Verdict", "evaluate", "recipe_note", "other_recipes"]

CHANCE = 0.10  # what a failed (diverged) point counts as: a failure, never missing
COLLAPSED = 0.15  # a final test accuracy at or below this is chance level: the run failed to learn
SPEED_TARGETS = (0.60, 0.70)  # the seeds preset's (the full recipe)
PROXY_TARGET = 0.35  # the learning-rate preset's (3 epochs over 10,000 images)
LR_MARGIN = 0.05  # an LR "trains" when its accuracy is within 5 points of the norm's best
PROBE_MIN_LR = 0.1  # landscape probes below this fraction of the peak LR are left out
GROUPS_DECIDING = 4  # the G fixed in advance for the groups claim (the lab's default)


@dataclass
class Finding:
    """A claim's verdict: the deciding comparison (``stats.Comparison``; None without one), the key
    figure in words, each arm's per-seed values for the plot, and the evidence behind it."""

    verdict: Verdict
    figure: str
    evidence: dict = field(default_factory=dict)
    experiment: str | None = None
    runs: list[str] = field(default_factory=list)
    note: str = ""
    recipes: list[str] | None = None  # the named recipes it was computed from, when not an experiment's
    comparison: Comparison | None = None
    decided_by: str = ""  # the comparison, in words
    scale: float = 100.0  # comparison units -> shown units (100: accuracy in points)
    unit: str = "points"
    arms: dict[str, list[float]] = field(default_factory=dict)  # shown units, one value per seed
    axis: str = ""  # the plot's y axis
    secondary: list[dict] = field(default_factory=list)  # other comparisons shown, not deciding


@dataclass
class Evidence:
    """What the claims are judged on, gathered once: for each preset the newest experiment in the
    store with completed points, else the results shipped with the app (when the store shows the
    reference runs); the shipped files that are damaged (preset -> "FILE: why")."""

    store: RunStore
    experiments: dict[str, ExperimentResults]
    damaged: dict[str, str] = field(default_factory=dict)

    @classmethod
    def gather(cls, store: RunStore, shipped: Path | str | None = "app") -> Evidence:
        exps = ExperimentStore(store)
        found: dict[str, ExperimentResults] = {}
        for exp in exps.list():  # newest first
            if exp.preset and exp.preset not in found:
                res = exps.results(exp)
                if res.completed():
                    found[exp.preset] = res
        damaged: dict[str, str] = {}
        if store.reference_root is not None:
            files = load_shipped_results(shipped)
            for preset, res in files.results.items():
                found.setdefault(preset, res)
            damaged = {p: why for p, why in files.damaged.items() if p not in found}
        return cls(store, found, damaged)

    def source(self, preset: str) -> str:
        """'' for an experiment of this store; a note for shipped results."""
        res = self.experiments[preset]
        return (
            f"shipped results of experiment {res.experiment} (run it here to replace them)"
            if res.shipped
            else ""
        )


@dataclass(frozen=True)
class Claim:
    id: str
    claim: str  # the seed's words
    experiment: str  # what tests it (a preset name, or where the evidence comes from)
    rule: str  # the deciding comparison, in plain words, stated in advance
    judge: Callable[[Evidence], Finding]
    paper: Paper | None = None
    kind: str = "direct"  # direct | indirect (a proxy for what the claim names) | count | —
    feeds: tuple[str, ...] = ()  # the presets whose results it reads


# ---------------------------------------------------------------------------- helpers


def _short(norm: str) -> str:
    return norms.get(norm).short if norm in norms.REGISTRY else norm


def _runs(res: ExperimentResults) -> list[str]:
    return [] if res.shipped else [p.run_id for p in res.points if p.run_id]


def _missing(preset: str, why: str = "") -> Finding:
    return Finding(
        Verdict.NOT_MEASURED,
        "",
        note=_notes(
            why,
            f"run the {preset} preset: Experiments page, or `python -m cifar_app sweep --preset {preset}`",
        ),
    )


def _notes(*parts: str) -> str:
    return "; ".join(p for p in parts if p)


def _accuracy(p: PointResult) -> float | None:
    """A point's result as a verdict counts it: its final test accuracy, chance for a point that
    failed (diverged), None for one that has no result yet (pending, stopped, damaged)."""
    if p.state == RunState.COMPLETED and p.final_test_acc is not None:
        return p.final_test_acc
    if p.state == RunState.FAILED:
        return CHANCE
    return None


def _values(
    res: ExperimentResults,
    key: Callable[[dict], object],
    value: Callable[[PointResult], float | None] = _accuracy,
) -> dict:
    """``value`` of each point with a result, grouped by ``key(settings)`` (None: left out)."""
    out: dict = {}
    for p in res.points:
        k = key(p.settings)
        if k is not None and (v := value(p)) is not None:
            out.setdefault(k, []).append(v)
    return out


def _ms(xs: list[float], scale: float = 100, fmt: str = ".2f") -> str:
    if not xs:
        return "—"
    m = statistics.fmean(xs) * scale
    return f"{m:{fmt}} ± {statistics.stdev(xs) * scale:{fmt}}" if len(xs) > 1 else f"{m:{fmt}}"


def _say(cmp: Comparison | None, scale: float, unit: str) -> str:
    if cmp is None:
        return "no noise estimate"
    return (
        f"{cmp.effect * scale:+.3g} {unit}, 95% CI [{cmp.low * scale:+.3g}, {cmp.high * scale:+.3g}], "
        f"n = {cmp.n_a} vs {cmp.n_b}, MDE {cmp.mde * scale:.3g}"
    )


def _compute_needed(
    paper: Paper | None, arms: list[list[float]], seconds_per_run: float | None, scale: float = 100
) -> str:
    """For an underpowered design: the seeds per arm a Welch test needs to detect the paper's
    effect at the arms' pooled spread, and what that costs here."""
    if paper is None or paper.effect is None:
        return ""
    sds = [statistics.stdev(a) for a in arms if len(a) > 1]
    if not sds:
        return ""
    sd = math.sqrt(statistics.fmean(s * s for s in sds)) * scale
    n = seeds_for(abs(paper.effect), sd)
    if n is None:
        return f"detecting the paper's {paper.effect:g} would take over 1,000 seeds per arm"
    cost = f", about {n * len(arms) * seconds_per_run / 3600:.1f} core-hours here" if seconds_per_run else ""
    return f"detecting the paper's {paper.effect:g} needs about {n} seeds per arm{cost}"


def _mean_seconds(res: ExperimentResults) -> float | None:
    secs = [p.seconds for p in res.completed() if p.seconds]
    return statistics.fmean(secs) if secs else None


def _secondary(label: str, cmp: Comparison | None, scale: float, unit: str) -> dict:
    return {
        "label": label,
        "comparison": cmp.to_dict() if cmp else None,
        "scale": scale,
        "unit": unit,
        "text": f"{label}: {_say(cmp, scale, unit)}",
    }


def _judged(
    cmp: Comparison | None, paper: Paper | None, scale: float, unit: str, notes: tuple[str, ...] = ()
) -> tuple[Verdict, str]:
    verdict, why = decide(cmp, unit, paper, scale)
    return verdict, _notes(why, *notes)


# ---------------------------------------------------------------------------- speed


def reach(epochs: list[dict], target: float, field_: str = "epoch") -> float | None:
    """When the test accuracy first reaches ``target``, in epochs (or seconds, ``field_="seconds"``),
    interpolated linearly between epoch records (from chance accuracy at 0); None when it never does."""
    prev_t, prev_a, clock = 0.0, CHANCE, 0.0
    for e in epochs:
        clock += e["seconds"]
        t = float(e["epoch"]) if field_ == "epoch" else clock
        a = e["test_acc"]
        if a >= target:
            return prev_t + (t - prev_t) * ((target - prev_a) / (a - prev_a) if a > prev_a else 1.0)
        prev_t, prev_a = t, a
    return None


def _censored(xs: list[float | None], limit: float) -> tuple[list[float], int]:
    """Never-reached (None) counted at ``limit`` (a lower bound of the true time), and how many."""
    return [limit if x is None else x for x in xs], sum(x is None for x in xs)


def _speed_row(curves: dict[str, list[list[dict]]], target: float) -> tuple[Comparison | None, dict, int]:
    """BN against none: (none's epochs − BN's epochs to ``target``), the per-seed epochs, and how
    many BN seeds never reached it (a BN arm with a censored seed cannot show BN faster)."""
    limit = 1 + max((e["epoch"] for runs in curves.values() for ep in runs for e in ep), default=0)
    times = {n: [reach(ep, target) for ep in runs] for n, runs in curves.items()}
    bn, bn_never = _censored(times["batch"], limit)
    none, _ = _censored(times["none"], limit)
    return welch(none, bn), times, bn_never


def _speed(ev: Evidence) -> Finding:
    res = ev.experiments.get("seeds")
    curves: dict[str, list[list[dict]]] = {}
    for p in res.points if res else []:  # a failed (diverged) seed never gets there: an empty curve
        if p.state == RunState.FAILED or (p.state == RunState.COMPLETED and p.epochs):
            curves.setdefault(p.settings["norm"], []).append(p.epochs or [])
    if "batch" not in curves or "none" not in curves:
        return _missing("seeds")
    lrs = sorted({p.settings["max_lr"] for p in res.points})
    paper = CLAIM_BY_ID["bn-speed"].paper
    shared, times, bn_never = _speed_row(curves, 0.70)
    verdict, why = _judged(shared, paper, 1, "epochs")
    if bn_never and verdict == Verdict.HOLDS:
        verdict, why = Verdict.INCONCLUSIVE, f"{bn_never} BN seed(s) never reached 70%"
    secondary = []
    sixty, t60, _ = _speed_row(curves, 0.60)
    secondary.append(_secondary("epochs to 60%, shared LR (none − BN)", sixty, 1, "epochs"))
    secs = {n: [reach(ep, 0.70, "seconds") for ep in runs] for n, runs in curves.items()}
    if not all(x is not None for n in ("batch", "none") for x in secs[n]):
        secondary.append(
            {
                "label": "seconds to 70%",
                "comparison": None,
                "scale": 1,
                "unit": "s",
                "text": "seconds to 70%: not compared (a seed never got there)",
            }
        )
    else:
        secondary.append(
            _secondary(
                "seconds to 70%, shared LR (none − BN; load-dependent)",
                welch(secs["none"], secs["batch"]),
                1,
                "s",
            )
        )
    figure = (
        f"epochs to 70% at the shared LR {', '.join(f'{x:g}' for x in lrs)} (seeds preset): BN "
        f"{_ms(_c(times['batch']), 1, '.1f')}, "
        f"none {_ms(_c(times['none']), 1, '.1f')} (none − BN {_say(shared, 1, 'epochs')})"
    )
    notes = [why]
    own = _own_best_lr_speed(ev)
    if own is not None:
        own_cmp, own_lrs, own_times = own
        own_verdict, _ = decide(own_cmp, "epochs", None, 1)
        secondary.append(
            _secondary(
                f"epochs to {PROXY_TARGET:.0%} at each norm's own best LR "
                f"(learning-rate preset: BN {own_lrs['batch']:g}, none "
                f"{own_lrs['none']:g}; none − BN)",
                own_cmp,
                1,
                "epochs",
            )
        )
        figure += (
            f"; at each norm's own best LR (learning-rate preset, {PROXY_TARGET:.0%}): BN "
            f"{_ms(own_times['batch'], 1, '.2f')}, none {_ms(own_times['none'], 1, '.2f')} epochs"
        )
        if own_verdict == Verdict.DOES_NOT_HOLD and verdict == Verdict.HOLDS:
            verdict = Verdict.INCONCLUSIVE
            notes.append("the own-best-LR row disagrees (none faster there)")
        elif own_verdict != Verdict.HOLDS and verdict == Verdict.HOLDS:
            notes.append("the own-best-LR row alone is inconclusive")
    else:
        notes.append("own-best-LR row: not measured yet (learning-rate preset)")
    return Finding(
        verdict,
        figure,
        {"epochs_to_70": times, "epochs_to_60": t60, "seconds_to_70": secs},
        res.experiment,
        _runs(res),
        note=_notes(*notes, ev.source("seeds")),
        comparison=shared,
        decided_by="none − BN, epochs to 70% test accuracy, seeds preset "
        "(shared LR); the own-best-LR row must not contradict it",
        scale=1,
        unit="epochs",
        arms={"BN": _c(times["batch"]), "none": _c(times["none"])},
        axis="epochs to 70% test accuracy",
        secondary=secondary,
    )


def _c(xs: list[float | None]) -> list[float]:
    return [x for x in xs if x is not None]


def _lr_table(res: ExperimentResults) -> dict[str, dict[float, list[float]]]:
    """norm -> max_lr -> per-seed accuracies (a failed point at chance)."""
    out: dict[str, dict[float, list[float]]] = {}
    for p in res.points:
        if (a := _accuracy(p)) is not None:
            out.setdefault(p.settings["norm"], {}).setdefault(p.settings["max_lr"], []).append(a)
    return out


def _own_best_lr_speed(ev: Evidence) -> tuple[Comparison | None, dict, dict] | None:
    res = ev.experiments.get("learning-rate")
    if res is None:
        return None
    table = _lr_table(res)
    if "batch" not in table or "none" not in table:
        return None
    best = {n: max(lrs, key=lambda lr: statistics.fmean(lrs[lr])) for n, lrs in table.items()}
    times: dict[str, list[float]] = {}
    for n in ("batch", "none"):
        curves = [  # a failed seed never gets there: an empty curve
            p.epochs or []
            for p in res.points
            if p.settings["norm"] == n
            and p.settings["max_lr"] == best[n]
            and (p.state == RunState.FAILED or (p.state == RunState.COMPLETED and p.epochs))
        ]
        limit = 1 + max((e["epoch"] for ep in curves for e in ep), default=0)
        times[n], _ = _censored([reach(ep, PROXY_TARGET) for ep in curves], limit)
    return welch(times["none"], times["batch"]), best, times


# ---------------------------------------------------------------------------- ICS and landscape


def probe_summary(records: list[dict], max_lr: float) -> dict | None:
    """Per run, the median over its probes after step 0 whose learning rate is at least
    ``PROBE_MIN_LR`` of the peak: the internal covariate shift per unit step (‖G − G′‖ / ‖G‖ per
    block, averaged over the C blocks, divided by the length of the whole network's step, η‖g‖:
    the earlier layers' own share of it is not recorded per layer), its
    plain 1 − cos(G, G′), the effective β (already per unit distance) and the loss range per unit
    distance. None when no probe qualifies."""
    kept = [r for r in records if r["step"] > 0 and r["lr"] >= PROBE_MIN_LR * max_lr and r["grad_norm"] > 0]
    if not kept:
        return None

    def rel_ics(r: dict) -> float:
        blocks = [b for b in r["blocks"].values() if b["grad_norm"] > 0]
        if not blocks:
            return 0.0
        return statistics.fmean(b["ics_l2"] / b["grad_norm"] for b in blocks) / (r["lr"] * r["grad_norm"])

    def cos(r: dict) -> float:
        return statistics.fmean(1 - b["ics_cos"] for b in r["blocks"].values()) if r["blocks"] else 0.0

    def rng(r: dict) -> float:
        return r["loss_range"] / (max(r.get("multipliers") or [2.0]) * r["lr"] * r["grad_norm"])

    med = statistics.median
    return {
        "ics_per_step": med(rel_ics(r) for r in kept),
        "ics_1_minus_cos": med(cos(r) for r in kept),
        "beta": med(r["beta"] for r in kept),
        "loss_range_per_step": med(rng(r) for r in kept),
        "step_length": med(r["lr"] * r["grad_norm"] for r in kept),
        "probes": len(kept),
        "probes_left_out": len(records) - len(kept),
    }


def _landscape_by_norm(ev: Evidence) -> dict[str, list[dict]] | None:
    res = ev.experiments.get("landscape")
    if res is None:
        return None
    out: dict[str, list[dict]] = {}
    for p in res.completed():
        if p.landscape and (s := probe_summary(p.landscape, p.settings["max_lr"])) is not None:
            out.setdefault(p.settings["norm"], []).append(s)
    return out if "batch" in out and "none" in out else None


def _ics(ev: Evidence) -> Finding:
    by = _landscape_by_norm(ev)
    if by is None:
        return _missing("landscape")
    res = ev.experiments["landscape"]
    paper = CLAIM_BY_ID["bn-ics"].paper

    def arm(n: str, k: str) -> list[float]:
        return [s[k] for s in by.get(n, [])]

    cmp = welch(arm("none", "ics_per_step"), arm("batch", "ics_per_step"))
    verdict, why = _judged(cmp, paper, 1, "")
    beta = welch(arm("none", "beta"), arm("batch", "beta"))
    cos = welch(arm("none", "ics_1_minus_cos"), arm("batch", "ics_1_minus_cos"))
    figure = (
        f"ICS per unit step, ‖G − G′‖/‖G‖ ÷ η‖g‖: BN {_ms(arm('batch', 'ics_per_step'), 1, '.3g')}, "
        f"none {_ms(arm('none', 'ics_per_step'), 1, '.3g')}; 1 − cos(G, G′): BN "
        f"{_ms(arm('batch', 'ics_1_minus_cos'), 1, '.3f')}, "
        f"none {_ms(arm('none', 'ics_1_minus_cos'), 1, '.3f')}; "
        f"effective β: BN {_ms(arm('batch', 'beta'), 1, '.3g')}, none {_ms(arm('none', 'beta'), 1, '.3g')}"
    )
    left_out = sum(s["probes_left_out"] for ss in by.values() for s in ss)
    return Finding(
        verdict,
        figure,
        {"summaries": by},
        res.experiment,
        _runs(res),
        note=_notes(
            why,
            f"{left_out} probe(s) at step 0 or below {PROBE_MIN_LR:g} of the peak LR left out",
            ev.source("landscape"),
        ),
        comparison=cmp,
        decided_by="none − BN, median ICS per unit step over the probes, per seed",
        scale=1,
        unit="",
        arms={_short(n): arm(n, "ics_per_step") for n in by},
        axis="ICS per unit step",
        secondary=[
            _secondary("1 − cos(G, G′) (none − BN)", cos, 1, ""),
            _secondary(
                "effective β-smoothness, per unit distance (none − BN; > 0: smoother "
                "with BN, Santurkar et al.'s finding)",
                beta,
                1,
                "",
            ),
        ],
    )


# ---------------------------------------------------------------------------- regularization


def train_test_gap(p: PointResult) -> float | None:
    """Final train accuracy (the last epoch's, measured as it trained) minus final test accuracy;
    None for a run that collapsed to chance or kept no curve."""
    if not p.epochs or p.final_test_acc is None or p.final_test_acc <= COLLAPSED:
        return None
    last = p.epochs[-1]
    return (last.get("train_eval_acc") or last["train_acc"]) - p.final_test_acc


def matched_fit_gap(epochs: list[dict], level: float, train: str = "train_acc") -> float | None:
    """The train − test gap when the run's train accuracy (the epoch records' field ``train``)
    first reaches ``level``: the test accuracy interpolated linearly in train accuracy between the
    epochs around it (from chance); None when it never reaches it."""
    prev_tr, prev_te = CHANCE, CHANCE
    for e in epochs:
        tr, te = e[train], e["test_acc"]
        if tr >= level:
            frac = (level - prev_tr) / (tr - prev_tr) if tr > prev_tr else 1.0
            return level - (prev_te + frac * (te - prev_te))
        prev_tr, prev_te = tr, te
    return None


def _regularizes(ev: Evidence) -> Finding:
    res = ev.experiments.get("regularization")
    if res is None:
        return _missing("regularization")
    paper = CLAIM_BY_ID["bn-regularizes"].paper
    learned = [p for p in res.completed() if p.epochs and p.final_test_acc > COLLAPSED]
    failed = {
        n: sum(1 for p in res.points if p.settings["norm"] == n and (_accuracy(p) or 1.0) <= COLLAPSED)
        for n in dict.fromkeys(p.settings["norm"] for p in res.points)
    }
    curves: dict[str, list[list[dict]]] = {}
    for p in learned:
        curves.setdefault(p.settings["norm"], []).append(p.epochs)
    if len(curves.get("batch", [])) < 2 or len(curves.get("none", [])) < 2:
        return Finding(
            Verdict.INCONCLUSIVE,
            "",
            {"failed": failed},
            res.experiment,
            _runs(res),
            note=_notes(
                "fewer than 2 runs of BN or of none learned (a collapse is a failure, with no fit "
                "to compare)",
                ev.source("regularization"),
            ),
        )
    # eval-mode train accuracy when every run recorded it (settings.train_eval), else the running one
    evaluated = all(e.get("train_eval_acc") is not None for cs in curves.values() for ep in cs for e in ep)
    field_ = "train_eval_acc" if evaluated else "train_acc"
    level = min(max(e[field_] for e in ep) for n in ("batch", "none") for ep in curves[n])
    gaps = {
        n: [g for ep in cs if (g := matched_fit_gap(ep, level, field_)) is not None]
        for n, cs in curves.items()
    }
    final = {n: [ep[-1][field_] - ep[-1]["test_acc"] for ep in cs] for n, cs in curves.items()}
    cmp = welch(gaps["none"], gaps["batch"])
    notes = [f"{k} run(s) of {_short(n)} collapsed, left out" for n, k in failed.items() if k]
    if not evaluated:
        notes.append(
            "train accuracy as it trained (train mode, a running average): not scored like the "
            "test accuracy, so the gaps of different norms are not strictly comparable"
        )
    verdict, why = _judged(cmp, paper, 100, "points", tuple(notes))
    train_final = {n: [ep[-1][field_] for ep in cs] for n, cs in curves.items()}
    how = "eval mode" if evaluated else "as it trained"
    figure = (
        f"train − test gap at matched fit (train accuracy, {how}, {100 * level:.1f}%: the highest every BN "
        "and none run reaches): "
        + ", ".join(f"{_short(n)} {_ms(gaps[n])}" for n in curves)
        + "; at the end: "
        + ", ".join(f"{_short(n)} {_ms(final[n])} (train {_ms(train_final[n])}%)" for n in curves)
    )
    return Finding(
        verdict,
        figure,
        {
            "matched_level": level,
            "train_accuracy": field_,
            "gap_matched": gaps,
            "gap_final": final,
            "train_final": train_final,
            "failed": failed,
        },
        res.experiment,
        _runs(res),
        note=_notes(why, ev.source("regularization")),
        comparison=cmp,
        decided_by="none − BN, train − test gap at matched train accuracy, per seed",
        arms={_short(n): [100 * g for g in gaps[n]] for n in curves},
        axis="gap at matched fit (points)",
        secondary=[
            _secondary(
                "final gap (none − BN; unmatched fit)", welch(final["none"], final["batch"]), 100, "points"
            )
        ],
    )


# ---------------------------------------------------------------------------- higher learning rates


def largest_lr(table: dict[float, list[float]], margin: float = LR_MARGIN) -> list[float | None]:
    """Per seed (the order of the points), the largest LR at which the run trains: it did not fail
    and its accuracy is within ``margin`` of the norm's best mean accuracy over the grid; None when
    no LR of the grid does."""
    best = max(statistics.fmean(v) for v in table.values())
    seeds = max(len(v) for v in table.values())
    out: list[float | None] = []
    for k in range(seeds):
        ok = [lr for lr, v in table.items() if k < len(v) and v[k] > COLLAPSED and v[k] >= best - margin]
        out.append(max(ok) if ok else None)
    return out


def _higher_lr(ev: Evidence) -> Finding:
    res = ev.experiments.get("learning-rate")
    if res is None:
        return _missing("learning-rate")
    table = _lr_table(res)
    if "batch" not in table or "none" not in table:
        return _missing("learning-rate")
    paper = CLAIM_BY_ID["bn-higher-lr"].paper
    grid = sorted({lr for t in table.values() for lr in t})
    lmax = {n: largest_lr(t) for n, t in table.items()}

    def log2(xs: list[float | None]) -> list[float]:
        return [math.log2(x) if x is not None else math.log2(grid[0]) - 1 for x in xs]

    def step_up(lr: float | None) -> float:
        """How far (log2) the true largest LR may lie above the measured one: up to the next LR."""
        if lr is None:
            return 1.0
        i = grid.index(lr)
        return math.log2(grid[i + 1] / lr) if i + 1 < len(grid) else math.inf

    bn, none = log2(lmax["batch"]), log2(lmax["none"])
    finest = min(math.log2(b / a) for a, b in zip(grid, grid[1:])) if len(grid) > 1 else 1.0
    # grid values: the exact permutation test (no spread needed); the interval widened by how far
    # each arm's true largest LR may lie above the grid value measured
    cmp = permutation(bn, none, finest)
    if cmp is not None:
        cmp = Comparison(
            cmp.effect,
            cmp.low - max(step_up(x) for x in lmax["none"]),
            cmp.high + max(step_up(x) for x in lmax["batch"]),
            cmp.p,
            cmp.n_a,
            cmp.n_b,
            cmp.df,
            cmp.se,
            cmp.mde,
            test=cmp.test + ", interval widened by the LR grid's resolution",
            p_adjusted=cmp.p,
        )
    verdict, why = _judged(cmp, paper, 1, "doublings (log2 LR)")
    if cmp is not None and verdict != Verdict.INCONCLUSIVE and cmp.p >= 0.05:
        verdict = Verdict.INCONCLUSIVE
        why = f"the exact permutation test gives p = {cmp.p:.3g}" + (
            f": {cmp.n_a} vs {cmp.n_b} seeds cannot reach p < 0.05" if math.isinf(cmp.mde) else ""
        )
    diverged = {
        n: sum(1 for p in res.points if p.settings["norm"] == n and p.state == RunState.FAILED) for n in table
    }
    best = {n: max(t, key=lambda lr: statistics.fmean(t[lr])) for n, t in table.items()}

    def lrs(n: str) -> str:
        return ", ".join("<" + f"{grid[0]:g}" if x is None else f"{x:g}" for x in lmax[n])

    figure = (
        f"largest LR that trains, per seed (within {100 * LR_MARGIN:g} points of the norm's best): "
        f"BN {lrs('batch')}, none {lrs('none')}; "
        + ", ".join(
            f"{_short(n)} best at {best[n]:g} ({100 * statistics.fmean(table[n][best[n]]):.1f}%)"
            for n in table
        )
        + "; diverged points: "
        + ", ".join(f"{_short(n)} {k}" for n, k in diverged.items())
    )
    return Finding(
        verdict,
        figure,
        {
            "largest_lr": lmax,
            "best_lr": best,
            "diverged": diverged,
            "accuracy": {n: {str(lr): v for lr, v in t.items()} for n, t in table.items()},
        },
        res.experiment,
        _runs(res),
        note=_notes(why, ev.source("learning-rate")),
        comparison=cmp,
        decided_by="BN − none, log2 of the largest LR that trains, per seed",
        scale=1,
        unit="doublings (log2 LR)",
        arms={_short(n): log2(lmax[n]) for n in table},
        axis="log2 largest LR that trains",
    )


# ---------------------------------------------------------------------------- no norm struggles


def _struggles_without(ev: Evidence) -> Finding:
    res = ev.experiments.get("seeds")
    if res is None:
        return _missing("seeds")
    acc = _values(res, lambda s: s["norm"])
    if "batch" not in acc or "none" not in acc:
        return _missing("seeds")
    cmp = welch(acc["batch"], acc["none"])
    collapsed = sum(a <= COLLAPSED for a in acc["none"])
    verdict, why = _judged(cmp, None, 100, "points")
    figure = (
        f"final test accuracy: BN {_ms(acc['batch'])}%, none {_ms(acc['none'])}% "
        f"({collapsed} of {len(acc['none'])} seeds without a norm at chance); BN − none "
        f"{_say(cmp, 100, 'points')}"
    )
    return Finding(
        verdict,
        figure,
        {"accuracy": acc},
        res.experiment,
        _runs(res),
        note=_notes(why, ev.source("seeds")),
        comparison=cmp,
        decided_by="BN − none, final test accuracy per seed (a collapse counts at chance)",
        arms={_short(n): [100 * a for a in v] for n, v in acc.items()},
        axis="final test accuracy (%)",
    )


# ---------------------------------------------------------------------------- batch size


def batch_drops(res: ExperimentResults) -> tuple[dict[str, list[float]], int, int]:
    """Per norm, per seed: the accuracy at the largest batch size minus at the smallest (a linear
    contrast: unbiased, unlike a range of noisy points); a failed point counts at chance, a seed
    missing either end is left out. Returns (drops, largest, smallest)."""
    sizes = sorted({p.settings["batch_size"] for p in res.points})
    table: dict[tuple[str, int], dict[int, float]] = {}
    for p in res.points:
        if (a := _accuracy(p)) is not None:
            table.setdefault((p.settings["norm"], p.settings["seed"]), {})[p.settings["batch_size"]] = a
    out: dict[str, list[float]] = {}
    if len(sizes) < 2:
        return out, 0, 0
    big, small = sizes[-1], sizes[0]
    for (norm, _seed), accs in sorted(table.items()):
        if big in accs and small in accs:
            out.setdefault(norm, []).append(accs[big] - accs[small])
    return out, big, small


def _less_batch_dependent(norm: str) -> Callable[[Evidence], Finding]:
    """The batch-size claims, on the change of accuracy from the largest batch size to the smallest
    (Wu & He's 32 → 2), per seed. GN, "effective for small batch sizes": BN loses more than GN. LN,
    "stable" (two-sided): BN's loss exceeds LN's change in either direction, i.e. both BN − LN and
    BN + LN above 0 (intersection-union: each at α); a jump up counts as much as a fall."""
    short = _short(norm)
    cid = "gn-small-batches" if norm == "group" else "ln-stable"

    def judge(ev: Evidence) -> Finding:
        res = ev.experiments.get("batch-size")
        if res is None:
            return _missing("batch-size")
        drops, big, small = batch_drops(res)
        if "batch" not in drops or norm not in drops:
            return _missing("batch-size", f"no seed has both ends of the batch sizes for BN and {short}")
        paper = CLAIM_BY_ID[cid].paper
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


def _groups(ev: Evidence) -> Finding:
    res = ev.experiments.get("groups")
    if res is None:
        return _missing("groups")
    paper = CLAIM_BY_ID["gn-channels"].paper

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


def _ln_invariant(ev: Evidence) -> Finding:
    from cifar_app.lab.batchdep import BatchDependence

    construction = (
        "LayerNorm normalizes each image over its own channels and pixels: no other image of "
        "the batch enters its output, in training or at test"
    )
    for run in ev.store.list():
        try:
            settings = run.settings()
            if settings.norm != "layer" or (cached := run.load_result("batchdep")) is None:
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


def _ln_params(ev: Evidence) -> Finding:
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
        _speed,
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
        _ics,
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
        _regularizes,
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
        _higher_lr,
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
        _struggles_without,
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
        _less_batch_dependent("group"),
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
        _groups,
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
        _ln_invariant,
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
        _less_batch_dependent("layer"),
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
        _ln_params,
        None,
        "count",
        ("seed-layernorm",),
    ),
    Claim(
        "ln-rnn",
        "LN: suitable for RNNs and LLMs",
        "none",
        "not testable with this CNN: the lab has no recurrent or language model",
        lambda ev: Finding(Verdict.NOT_TESTABLE, "", note="the lab trains one CNN on images"),
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
    ``experiments.shipped_folder``; None: only this store's)."""
    ev = Evidence.gather(store, shipped)
    rows = []
    for c in CLAIMS:
        damaged = [f"evidence damaged: {ev.damaged[p]}" for p in c.feeds if p in ev.damaged]
        f = c.judge(ev)
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
