"""The rules about optimization: speed, internal covariate shift (per unit step), regularization at
matched fit, the largest learning rate that trains, and whether the net struggles without a norm."""

from __future__ import annotations

import math
import statistics

from cifar_app.core.stats import (
    Comparison,
    Paper,
    Verdict,
    decide,
    divergence_rows,
    permutation,
    welch,
)
from cifar_app.lab.claims.evidence import (
    CHANCE,
    COLLAPSED,
    LR_MARGIN,
    PROBE_MIN_LR,
    PROXY_TARGET,
    Evidence,
    Finding,
    _judged,
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
from cifar_app.store.results import ExperimentResults, PointResult
from cifar_app.store.states import RunState

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


def _failed(res, norms: tuple[str, ...]) -> dict[str, int]:
    """How many points of each norm failed (diverged) or ended at chance (collapsed): seeds that make
    an arm bimodal."""
    return {n: sum(1 for p in res.points if p.settings["norm"] == n and (
        p.state == RunState.FAILED or (p.state == RunState.COMPLETED and p.final_test_acc is not None
                                       and p.final_test_acc <= COLLAPSED))) for n in norms}


EXPLORATORY = "exploratory: added after the seeds re-run of 2026-12-06, not the deciding rule"


def _exploratory(failed: dict[str, int], values: dict[str, list[float]], scale: float, unit: str,
                 larger: str = "batch") -> list[dict]:
    """Secondary rows for arms with diverged seeds: divergence rates and an exact rank test
    (``stats.divergence_rows``), labelled as exploratory."""
    other = "none" if larger == "batch" else "batch"
    rows = divergence_rows(failed[larger], len(values[larger]), failed[other], len(values[other]),
                           values[larger], values[other], (_short(larger), _short(other)), scale, unit)
    return [{"label": EXPLORATORY, "comparison": None, "scale": scale, "unit": unit,
             "text": f"{text} — {EXPLORATORY}"} for text in rows]


def judge_speed(ev: Evidence, paper: Paper | None) -> Finding:
    res = ev.experiments.get("seeds")
    curves: dict[str, list[list[dict]]] = {}
    for p in res.points if res else []:  # a failed (diverged) seed never gets there: an empty curve
        if p.state == RunState.FAILED or (p.state == RunState.COMPLETED and p.epochs):
            curves.setdefault(p.settings["norm"], []).append([] if p.state == RunState.FAILED else p.epochs)
    if "batch" not in curves or "none" not in curves:
        return _missing("seeds")
    lrs = sorted({p.settings["max_lr"] for p in res.points})
    shared, times, bn_never = _speed_row(curves, 0.70)
    verdict, why = _judged(shared, paper, 1, "epochs")
    if bn_never and verdict == Verdict.HOLDS:
        verdict, why = Verdict.INCONCLUSIVE, f"{bn_never} BN seed(s) never reached 70%"
    secondary = []
    failed = _failed(res, ("batch", "none"))
    sixty, t60, _ = _speed_row(curves, 0.60)
    if any(failed.values()):
        why = f"the rule's t-test gives p = {shared.p:.2g}" if shared else why
        secondary.append({"label": "epochs to 60%", "comparison": None, "scale": 1, "unit": "epochs",
                          "text": "epochs to 60%, shared LR: not compared (an arm with seeds that diverged "
                                  "or collapsed; see the rank test)"})
    else:
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
    def arm(n: str) -> str:
        got = _c(times[n])
        text = _ms(got, 1, ".1f")
        if len(got) < len(times[n]):
            text += (f" ({len(got)} of {len(times[n])} seeds got there"
                     + (f"; {failed[n]} diverged before" if failed[n] else "") + ")")
        return text

    figure = (f"epochs to 70% at the shared LR {', '.join(f'{x:g}' for x in lrs)} (seeds preset): BN "
              f"{arm('batch')}, none {arm('none')}")
    if any(failed.values()):  # a seed that never got there enters at run length + 1: the numbers mislead
        figure += (". The t-test, with a seed that never got there at the run's length + 1, decides as "
                   "the rule says; its effect and interval are set by that placeholder, not "
                   "interpretable, and not shown")
    else:
        figure += f" (none − BN {_say(shared, 1, 'epochs')})"
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
    shown = shared
    if any(failed.values()):
        limit = 1 + max((e["epoch"] for runs in curves.values() for ep in runs for e in ep), default=0)
        never = {n: _censored(times[n], limit)[0] for n in ("batch", "none")}  # ranked last
        rows = divergence_rows(failed["none"], len(times["none"]), failed["batch"], len(times["batch"]),
                               never["none"], never["batch"], ("none", "BN"), 1, "epochs")
        rows = [t.replace("a diverged seed ranked last", "epochs to 70%, a seed that never got there last")
                for t in rows]
        secondary += [{"label": EXPLORATORY, "comparison": None, "scale": 1, "unit": "epochs",
                       "text": f"{t} — {EXPLORATORY}"} for t in rows]
        shown = None
    return Finding(
        verdict,
        figure,
        {"epochs_to_70": times, "epochs_to_60": t60, "seconds_to_70": secs},
        res.experiment,
        _runs(res),
        note=_notes(*notes, ev.source("seeds")),
        comparison=shown,
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
        if (a := counted_accuracy(p)) is not None:
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
        curves = [  # a failed seed never gets there (its epochs before it diverged do not count)
            [] if p.state == RunState.FAILED else p.epochs or []
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


def judge_ics(ev: Evidence, paper: Paper | None) -> Finding:
    by = _landscape_by_norm(ev)
    if by is None:
        return _missing("landscape")
    res = ev.experiments["landscape"]

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
    None for a run that failed, collapsed to chance or kept no curve."""
    if p.state != RunState.COMPLETED or not p.epochs or p.final_test_acc is None:
        return None
    if p.final_test_acc <= COLLAPSED:
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


def matched_fit(curves: dict[str, list[list[dict]]]) -> tuple[float, str, dict[str, list[float]]]:
    """Where the regularization rule compares the norms (``curves``: norm -> each run's epoch
    records): the level of train accuracy (the highest every BN and none run reaches), the field it
    is read from (eval mode, ``train_eval_acc``, when every run recorded it; else the running
    ``train_acc``), and each norm's train − test gaps at that level."""
    evaluated = all(e.get("train_eval_acc") is not None for cs in curves.values() for ep in cs for e in ep)
    field_ = "train_eval_acc" if evaluated else "train_acc"
    level = min(max(e[field_] for e in ep) for n in ("batch", "none") for ep in curves[n])
    gaps = {n: [g for ep in cs if (g := matched_fit_gap(ep, level, field_)) is not None]
            for n, cs in curves.items()}
    return level, field_, gaps


def judge_regularizes(ev: Evidence, paper: Paper | None) -> Finding:
    res = ev.experiments.get("regularization")
    if res is None:
        return _missing("regularization")
    learned = [p for p in res.completed() if p.epochs and p.final_test_acc > COLLAPSED]
    failed = {
        n: sum(1 for p in res.points if p.settings["norm"] == n and (counted_accuracy(p) or 1.0) <= COLLAPSED)
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
    level, field_, gaps = matched_fit(curves)
    evaluated = field_ == "train_eval_acc"
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


def judge_higher_lr(ev: Evidence, paper: Paper | None) -> Finding:
    res = ev.experiments.get("learning-rate")
    if res is None:
        return _missing("learning-rate")
    table = _lr_table(res)
    if "batch" not in table or "none" not in table:
        return _missing("learning-rate")
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


def judge_struggles_without(ev: Evidence, paper: Paper | None) -> Finding:
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
    failed = _failed(res, ("batch", "none"))
    secondary, notes = [], [why]
    if any(failed.values()):  # a bimodal arm: the t-test decides as the rule says, but its numbers mislead
        notes = [f"the rule's t-test gives p = {cmp.p:.2g}" if cmp else why]
        trained = {n: [p.final_test_acc for p in res.points if p.settings["norm"] == n
                       and p.state == RunState.COMPLETED] for n in ("batch", "none")}
        figure = (
            f"final test accuracy of the seeds that trained: BN {_ms(trained['batch'])}%, none "
            f"{_ms(trained['none'])}%; {failed['none']} of {len(acc['none'])} seeds without a norm "
            f"diverged ({failed['batch']} of {len(acc['batch'])} with BN). The t-test on arms with a "
            "diverged seed (at chance) decides, as the rule says; its effect and interval are not "
            "interpretable and are not shown"
        )
        secondary = _exploratory(failed, acc, 100, "points")
        cmp_shown = None
    else:
        cmp_shown = cmp
    notes.append(ev.source("seeds"))
    return Finding(
        verdict,
        figure,
        {"accuracy": acc},
        res.experiment,
        _runs(res),
        note=_notes(*notes),
        comparison=cmp_shown,
        secondary=secondary,
        decided_by="BN − none, final test accuracy per seed (a collapse counts at chance)",
        arms={_short(n): [100 * a for a in v] for n, v in acc.items()},
        axis="final test accuracy (%)",
    )

