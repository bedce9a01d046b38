"""The seed's claims about BN, GN and LN, each with a verdict computed from what the store holds.

Every claim is one ``Claim``: the seed's words, the experiment that tests it, the rule in plain words
and the function that applies that rule to the evidence (``Evidence``: the newest experiment of each
preset with completed points, the seed noise of the ``seeds`` preset, the runs' cached batch
dependence, the model registry). Nothing is typed in: change the stored results and the verdict
changes. A claim with no evidence yet is *not measured yet* and names the preset (or CLI command)
that measures it; one measured with a single seed says so and compares against the seeds preset's
noise when there is one.

The noise: for a difference between two norms measured with one seed each, 2 standard errors are
2·sqrt(s_a² + s_b²) with s the per-norm standard deviation over seeds (seeds preset); for means of
n_a and n_b seeds, 2·sqrt(s_a²/n_a + s_b²/n_b).
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

from . import norms
from .experiments import (
    PRESETS,
    REFERENCE_EXPERIMENTS,
    ExperimentResults,
    ExperimentStore,
    PointResult,
    load_shipped_results,
)
from .landscape import summary as landscape_summary
from .runstore import RunDamaged, RunStore
from .settings import DEFAULT_RECIPE, TrainSettings, recipe_key, recipe_values

COLLAPSED = 0.15  # a final test accuracy at or below this is chance level: the run failed to learn


class Verdict(StrEnum):
    HOLDS = "holds"
    DOES_NOT_HOLD = "does not hold"
    WITHIN_NOISE = "within noise"
    NOT_MEASURED = "not measured yet"
    NOT_TESTABLE = "not testable here"


@dataclass
class Finding:
    """A claim's verdict: the key figure with its uncertainty, the evidence behind it (plain values,
    for ``claims --json`` and the plots), the experiment and runs it came from."""

    verdict: Verdict
    figure: str
    evidence: dict = field(default_factory=dict)
    experiment: str | None = None
    runs: list[str] = field(default_factory=list)
    note: str = ""          # e.g. "one seed per point"
    recipes: list[str] | None = None  # the named recipes of the runs it was computed from, when
    #                                   not an experiment's (whose points say it)


@dataclass
class Evidence:
    """What the claims are judged on, gathered once: for each preset, the newest experiment in the
    store with completed points, else the results shipped with the app (when the store shows the
    reference runs); the seed noise of the ``seeds`` results; the store for runs' own records."""

    store: RunStore
    experiments: dict[str, ExperimentResults]  # preset -> results
    noise: dict[str, tuple[float, int]]        # norm -> (std over seeds, seeds)

    @classmethod
    def gather(cls, store: RunStore, shipped: Path | None = REFERENCE_EXPERIMENTS) -> Evidence:
        exps = ExperimentStore(store)
        found: dict[str, ExperimentResults] = {}
        for exp in exps.list():  # newest first
            if exp.preset and exp.preset not in found:
                res = exps.results(exp)
                if res.completed():
                    found[exp.preset] = res
        if store.reference_root is not None:
            for preset, res in load_shipped_results(shipped).items():
                found.setdefault(preset, res)
        noise = {}
        if "seeds" in found:
            for norm, accs in _by(found["seeds"], "norm").items():
                learned = [a for a in accs if a > COLLAPSED]  # a collapse is not noise but failure
                if len(learned) > 1:
                    noise[norm] = (statistics.stdev(learned), len(learned))
        return cls(store, found, noise)

    def se_single(self, a: str, b: str) -> float | None:
        """One standard error of the difference of two single-seed results of norms a and b; a norm
        without its own estimate (fewer than two seeds that learned) takes the mean variance of the
        others. None without any estimate."""
        if not self.noise:
            return None
        pooled = statistics.fmean(sd ** 2 for sd, _ in self.noise.values())
        var = [self.noise[n][0] ** 2 if n in self.noise else pooled for n in (a, b)]
        return sum(var) ** 0.5

    def noise_source(self, res: ExperimentResults) -> str:
        """Where ``se_single``'s noise comes from, naming the seeds' recipe when ``res`` ran another."""
        seeds = self.experiments.get("seeds")
        if seeds is None or seeds.recipes() == res.recipes():
            return "seeds preset"
        return f"seeds preset, on the {', '.join(seeds.recipes())} recipe"

    def source(self, preset: str) -> str:
        """'' for an experiment of this store; a note for shipped results."""
        res = self.experiments[preset]
        return (f"shipped results of experiment {res.experiment} (run it here to replace them)"
                if res.shipped else "")


@dataclass(frozen=True)
class Claim:
    id: str
    claim: str                 # the seed's words
    experiment: str            # what tests it (a preset name, or where the evidence comes from)
    rule: str                  # the rule in plain words
    judge: Callable[[Evidence], Finding]
    measure: str = ""          # how to measure it, when it is not measured yet


def _by(res: ExperimentResults, key: str, value: Callable[[PointResult], float | None] | None = None) -> dict:
    """``value`` (default: the final test accuracy) of completed points grouped by the setting
    ``key``; points whose value is None are left out."""
    out: dict = {}
    for p in res.completed():
        v = p.final_test_acc if value is None else value(p)
        if v is not None:
            out.setdefault(p.settings[key], []).append(v)
    return out


def _mean_sd(xs: list[float]) -> tuple[float, float]:
    return statistics.fmean(xs), (statistics.stdev(xs) if len(xs) > 1 else 0.0)


def _short(norm: str) -> str:
    """'BN', 'GN', ... (the registry's short name)."""
    return norms.get(norm).short if norm in norms.REGISTRY else norm


def se_of_means(a: list[float], b: list[float]) -> float | None:
    """One standard error of the difference of the means of ``a`` and ``b``, sqrt(s_a²/n_a +
    s_b²/n_b) (None without two of each)."""
    if len(a) < 2 or len(b) < 2:
        return None
    return (statistics.stdev(a) ** 2 / len(a) + statistics.stdev(b) ** 2 / len(b)) ** 0.5


def _runs(res: ExperimentResults) -> list[str]:
    return [] if res.shipped else [p.run_id for p in res.completed() if p.run_id]


def _pct(x: float) -> str:
    return f"{100 * x:.2f}%"


def _missing(preset: str) -> Finding:
    return Finding(Verdict.NOT_MEASURED, "", note=f"run the {preset} preset: Experiments page, or "
                   f"`python -m cifar_app sweep --preset {preset}`")


def _judge_difference(diff: float, se: float | None, better: bool, source: str = "seeds preset"
                      ) -> tuple[Verdict, str]:
    """``better``: the claim's direction holds on the point estimates."""
    if se is None:
        return (Verdict.HOLDS if better else Verdict.DOES_NOT_HOLD), "one seed, no noise estimate yet"
    noise = f"2 SE = {200 * se:.2f} points ({source})"
    if abs(diff) <= 2 * se:
        return Verdict.WITHIN_NOISE, noise
    return (Verdict.HOLDS if better else Verdict.DOES_NOT_HOLD), noise


def _notes(*parts: str) -> str:
    return "; ".join(p for p in parts if p)


# ---------------------------------------------------------------------------- the rules

SPEED_TARGETS = (0.60, 0.70)


def _curves(ev: Evidence) -> tuple[dict[str, list[list[dict]]], str, list[str], str | None]:
    """Per-norm epoch records of default-recipe runs: the seeds results' points when they kept their
    curves, else the store's reference runs (one seed each). Returns (curves, where from, run ids,
    experiment)."""
    res = ev.experiments.get("seeds")
    with_curves = [p for p in res.completed() if p.epochs] if res else []
    if with_curves:
        out: dict[str, list[list[dict]]] = {}
        for p in with_curves:
            out.setdefault(p.settings["norm"], []).append(p.epochs)
        return out, "seeds preset", _runs(res), res.experiment
    default = recipe_key(TrainSettings().to_dict())
    out, runs = {}, []
    for run in ev.store.list():
        try:
            s = run.settings().to_dict()
            if not run.reference or recipe_key(s) != default:
                continue
            out.setdefault(s["norm"], []).append([e.to_record() for e in run.metrics().epochs])
            runs.append(run.id)
        except RunDamaged:
            continue
    where = ("the reference runs of the default recipe (one seed each: the seeds results here kept "
             "no curves; they were trained at different times and loads, so compare their epochs, "
             "not their seconds)")
    return out, where, runs, None


def _reach(epochs: list[dict], target: float) -> tuple[float, float]:
    """(epochs, seconds) until the test accuracy first reaches ``target``; inf when it never does."""
    seconds = 0.0
    for e in epochs:
        seconds += e["seconds"]
        if e["test_acc"] >= target:
            return float(e["epoch"]), seconds
    return float("inf"), float("inf")


def _speed(ev: Evidence) -> Finding:
    curves, source, runs, exp = _curves(ev)
    if "batch" not in curves or "none" not in curves:
        return _missing("seeds")
    n_train = 50_000
    table: dict[str, dict] = {}
    for norm, runs_epochs in curves.items():
        row: dict = {"seconds_per_epoch": statistics.fmean(e["seconds"] for ep in runs_epochs for e in ep),
                     "seeds": len(runs_epochs)}
        for t in SPEED_TARGETS:
            reached = [_reach(ep, t) for ep in runs_epochs]
            row[f"epochs_to_{round(100 * t)}"] = [None if r[0] == float("inf") else r[0] for r in reached]
            row[f"seconds_to_{round(100 * t)}"] = [None if r[1] == float("inf") else r[1] for r in reached]
            row[f"images_to_{round(100 * t)}"] = [None if r[0] == float("inf") else r[0] * n_train
                                                  for r in reached]
        table[norm] = row

    def mean_or_never(xs: list) -> float:
        return statistics.fmean(xs) if all(x is not None for x in xs) else float("inf")

    bn, none = table["batch"], table["none"]
    fewer_epochs = mean_or_never(bn["epochs_to_70"]) < mean_or_never(none["epochs_to_70"])
    less_time = mean_or_never(bn["seconds_to_70"]) < mean_or_never(none["seconds_to_70"])

    def say(norm: str, key: str) -> str:
        xs = table[norm][key]
        got = [x for x in xs if x is not None]
        if not got:
            return f"never ({len(xs)} of {len(xs)} seeds)"
        m, sd = _mean_sd(got)
        never = len(xs) - len(got)
        return f"{m:.1f} ± {sd:.1f}" + (f" ({never} of {len(xs)} never)" if never else "")

    figure = (f"epochs to 60% / 70%: BN {say('batch', 'epochs_to_60')} / {say('batch', 'epochs_to_70')}, "
              f"none {say('none', 'epochs_to_60')} / {say('none', 'epochs_to_70')}; seconds per epoch: "
              f"BN {bn['seconds_per_epoch']:.0f}, none {none['seconds_per_epoch']:.0f} — "
              f"{'fewer' if fewer_epochs else 'not fewer'} epochs, {'less' if less_time else 'not less'} "
              f"time to 70%")
    return Finding(Verdict.HOLDS if fewer_epochs else Verdict.DOES_NOT_HOLD, figure,
                   {"speed": table, "fewer_epochs": fewer_epochs, "less_time": less_time}, exp, runs,
                   note=_notes(f"curves from {source}", ev.source("seeds") if exp else ""),
                   recipes=None if exp else [DEFAULT_RECIPE])  # _curves keeps default-recipe runs


def _landscape_by_norm(ev: Evidence) -> dict[str, list[dict]] | None:
    """Per norm, each landscape-probed point's ``landscape.summary``."""
    res = ev.experiments.get("landscape")
    if res is None:
        return None
    out: dict[str, list[dict]] = {}
    for p in res.completed():
        if p.landscape:
            out.setdefault(p.settings["norm"], []).append(landscape_summary(p.landscape))
    return out if "batch" in out and "none" in out else None


def _ics(ev: Evidence) -> Finding:
    by = _landscape_by_norm(ev)
    if by is None:
        return _missing("landscape")
    res = ev.experiments["landscape"]
    ics = {n: [r["ics_1_minus_cos"] for r in rs] for n, rs in by.items()}
    rng = {n: [r["loss_range"] for r in rs] for n, rs in by.items()}
    beta = {n: [r["beta"] for r in rs] for n, rs in by.items()}
    bn, none = ics["batch"], ics["none"]
    diff = statistics.fmean(none) - statistics.fmean(bn)  # > 0: BN has less shift
    se = se_of_means(bn, none)
    if se is None:
        verdict = Verdict.HOLDS if diff > 0 else Verdict.DOES_NOT_HOLD
        noise = "one seed, no noise estimate"
    else:
        verdict = Verdict.WITHIN_NOISE if abs(diff) <= 2 * se else (
            Verdict.HOLDS if diff > 0 else Verdict.DOES_NOT_HOLD)
        noise = f"2 SE = {2 * se:.3f} (its {len(bn)} and {len(none)} seeds)"

    def ms(d: dict, n: str, fmt: str) -> str:
        m, sd = _mean_sd(d[n])
        return f"{m:{fmt}} ± {sd:{fmt}}"

    figure = (f"ICS, 1 − cos(G, G′): BN {ms(ics, 'batch', '.3f')}, none {ms(ics, 'none', '.3f')}; "
              f"loss range along the gradient: BN {ms(rng, 'batch', '.3f')}, none {ms(rng, 'none', '.3f')}; "
              f"effective β: BN {ms(beta, 'batch', '.1f')}, none {ms(beta, 'none', '.1f')}")
    return Finding(verdict, figure, {"ics": ics, "loss_range": rng, "beta": beta}, res.experiment,
                   _runs(res), note=_notes(noise, ev.source("landscape")))


def train_test_gap(p: PointResult) -> float | None:
    """Final train accuracy (the last epoch's, measured as it trained) minus final test accuracy;
    None for a run that collapsed to chance or kept no curve."""
    if not p.epochs or p.final_test_acc is None or p.final_test_acc <= COLLAPSED:
        return None
    return p.epochs[-1]["train_acc"] - p.final_test_acc


def _regularizes(ev: Evidence) -> Finding:
    res = ev.experiments.get("regularization")
    if res is None:
        return _missing("regularization")
    gaps = _by(res, "norm", train_test_gap)
    train = _by(res, "norm", lambda p: p.epochs[-1]["train_acc"] if p.epochs else None)
    test = _by(res, "norm", lambda p: p.final_test_acc)
    if len(gaps.get("batch", [])) < 1:
        return _missing("regularization")
    collapsed = {n: sum(a <= COLLAPSED for a in accs) for n, accs in test.items()}
    if len(gaps.get("none", [])) < 2:  # the runs without a norm collapsed: nothing to compare with
        return Finding(Verdict.NOT_MEASURED, "", {"gap": gaps}, res.experiment, _runs(res),
                       note=f"fewer than 2 runs without a norm learned ({collapsed.get('none', 0)} "
                            "collapsed)")
    bn, none = gaps["batch"], gaps["none"]
    diff = statistics.fmean(none) - statistics.fmean(bn)  # > 0: BN overfits less
    verdict, noise = _judge_difference(diff, se_of_means(bn, none), diff > 0, "the preset's seeds")

    def say(n: str) -> str:
        m, sd = _mean_sd(gaps[n])
        return (f"{_short(n)} {100 * m:.1f} ± {100 * sd:.1f} "
                f"(train {100 * statistics.fmean(train[n]):.1f}%, "
                f"test {100 * statistics.fmean([a for a in test[n] if a > COLLAPSED]):.1f}%)")

    figure = "train − test accuracy gap, points: " + ", ".join(say(n) for n in gaps)
    return Finding(verdict, figure, {"gap": gaps, "train_acc": train, "test_acc": test,
                                     "collapsed": collapsed}, res.experiment, _runs(res),
                   note=_notes(noise, (f"{collapsed['none']} run(s) without a norm collapsed to chance "
                                       "and are left out") if collapsed.get("none") else "",
                               ev.source("regularization")))


def _higher_lr(ev: Evidence) -> Finding:
    if "learning-rate" not in ev.experiments:
        return _missing("learning-rate")
    res = ev.experiments["learning-rate"]
    best: dict[str, tuple[float, float]] = {}  # norm -> (best lr, accuracy there)
    for p in res.completed():
        norm, lr, acc = p.settings["norm"], p.settings["max_lr"], p.final_test_acc
        if norm not in best or acc > best[norm][1]:
            best[norm] = (lr, acc)
    if "batch" not in best or "none" not in best:
        return _missing("learning-rate")
    (bn_lr, bn_acc), (no_lr, no_acc) = best["batch"], best["none"]
    diff = bn_acc - no_acc
    verdict, noise = _judge_difference(diff, ev.se_single("batch", "none"), bn_lr >= 2 * no_lr and diff > 0,
                                       ev.noise_source(res))
    if bn_lr < 2 * no_lr:
        verdict = Verdict.DOES_NOT_HOLD
    figure = (f"best max LR: BN {bn_lr:g} ({_pct(bn_acc)}), none {no_lr:g} ({_pct(no_acc)}); "
              f"{100 * diff:+.2f} points")
    evidence: dict = {"best": best}
    gradients = "gradients: not measured yet (landscape preset)"
    by = _landscape_by_norm(ev)
    if by is not None:
        beta = {n: statistics.fmean(r["beta"] for r in rs) for n, rs in by.items()}
        evidence["beta"] = beta
        tame = beta["batch"] <= beta["none"]
        gradients = (f"gradients: BN's effective β {beta['batch']:.1f} against none's {beta['none']:.1f} "
                     f"(landscape preset, {'smoother' if tame else 'rougher'} with BN)")
        figure += f"; effective β: BN {beta['batch']:.1f}, none {beta['none']:.1f}"
        if not tame and verdict == Verdict.HOLDS:
            verdict = Verdict.DOES_NOT_HOLD
    return Finding(verdict, figure, evidence, res.experiment, _runs(res),
                   note=_notes("one seed per point", noise, gradients, ev.source("learning-rate")))


def _struggles_without(ev: Evidence) -> Finding:
    if "seeds" not in ev.experiments:
        return _missing("seeds")
    res = ev.experiments["seeds"]
    groups = _by(res, "norm")
    if len(groups.get("batch", [])) < 2 or len(groups.get("none", [])) < 2:
        return _missing("seeds")
    bn, none = groups["batch"], groups["none"]
    diff = statistics.fmean(bn) - statistics.fmean(none)
    collapsed = sum(a <= COLLAPSED for a in none)
    verdict, noise = _judge_difference(diff, se_of_means(bn, none), diff > 0, "the seeds' spread")
    if collapsed and verdict == Verdict.WITHIN_NOISE:
        verdict = Verdict.HOLDS  # a collapse is a struggle however wide the spread it makes
    return Finding(verdict, f"BN {_pct(statistics.fmean(bn))} ± {100 * statistics.stdev(bn):.2f}, none "
                   f"{_pct(statistics.fmean(none))} ± {100 * statistics.stdev(none):.2f}; {collapsed} of "
                   f"{len(none)} seeds without a norm collapse to chance", {"batch": bn, "none": none},
                   res.experiment, _runs(res), note=_notes(noise, ev.source("seeds")))


def _batch_size_drop(ev: Evidence) -> dict[str, float] | None:
    if "batch-size" not in ev.experiments:
        return None
    by: dict[str, dict[int, float]] = {}
    for p in ev.experiments["batch-size"].completed():
        by.setdefault(p.settings["norm"], {})[p.settings["batch_size"]] = p.final_test_acc
    return {n: accs[max(accs)] - accs[min(accs)] for n, accs in by.items() if len(accs) > 1}


def _loses_less_than_bn(norm: str) -> Callable[[Evidence], Finding]:
    """The rule of the batch-size claims: ``norm`` loses less accuracy than BN from the largest
    batch to the smallest, beyond the seed noise."""
    short = _short(norm)

    def judge(ev: Evidence) -> Finding:
        drops = _batch_size_drop(ev)
        if not drops or "batch" not in drops or norm not in drops:
            return _missing("batch-size")
        res = ev.experiments["batch-size"]
        diff = drops["batch"] - drops[norm]
        verdict, noise = _judge_difference(diff, ev.se_single("batch", norm), diff > 0, ev.noise_source(res))
        return Finding(verdict, f"accuracy lost from the largest to the smallest batch: BN "
                       f"{100 * drops['batch']:+.2f}, {short} {100 * drops[norm]:+.2f} points",
                       {"drop": drops}, res.experiment, _runs(res),
                       note=_notes("one seed per point", noise, ev.source("batch-size")))

    return judge


def _groups(ev: Evidence) -> Finding:
    res = ev.experiments.get("groups")
    if res is None:
        return _missing("groups")
    by: dict[str, list[float]] = {}  # "1", "2", ..., "C"
    for p in res.completed():
        key = str(p.settings["groups"]) if p.settings["norm"] == "group" else (
            "C" if p.settings["norm"] == "instance" else None)
        if key is not None:
            by.setdefault(key, []).append(p.final_test_acc)
    middle = [k for k in by if k not in ("1", "C")]
    if "1" not in by or "C" not in by or not middle:
        return _missing("groups")
    means = {k: statistics.fmean(v) for k, v in by.items()}
    best = max(middle, key=means.get)
    spread = [statistics.stdev(v) for v in by.values() if len(v) > 1]
    pooled = statistics.fmean(s ** 2 for s in spread) ** 0.5 if spread else None

    def se(a: str, b: str) -> float | None:
        return None if pooled is None else pooled * (1 / len(by[a]) + 1 / len(by[b])) ** 0.5

    margins = [means[best] - means[k] for k in ("1", "C")]
    ses = [se(best, k) for k in ("1", "C")]
    if pooled is None:
        verdict = Verdict.HOLDS if min(margins) > 0 else Verdict.DOES_NOT_HOLD
        noise = "one seed, no noise estimate"
    else:
        if all(m > 2 * e for m, e in zip(margins, ses)):
            verdict = Verdict.HOLDS
        elif any(m < -2 * e for m, e in zip(margins, ses)):
            verdict = Verdict.DOES_NOT_HOLD
        else:
            verdict = Verdict.WITHIN_NOISE
        noise = f"2 SE = {200 * max(ses):.2f} points (the pooled spread of the preset's seeds)"
    order = sorted(by, key=lambda k: (k == "C", int(k) if k != "C" else 0))
    figure = (", ".join(f"G = {k}{' (LN)' if k == '1' else ' (IN)' if k == 'C' else ''}: "
                        f"{100 * means[k]:.2f}%" for k in order)
              + f"; best between: G = {best}, {100 * margins[0]:+.2f} over LN, "
                f"{100 * margins[1]:+.2f} over IN")
    return Finding(verdict, figure, {"groups": {k: by[k] for k in order}}, res.experiment, _runs(res),
                   note=_notes(f"{max(len(v) for v in by.values())} seeds per G", noise, ev.source("groups")))


def _ln_invariant(ev: Evidence) -> Finding:
    from .batchdep import BatchDependence

    for run in ev.store.list():
        try:
            settings = run.settings()
            if settings.norm != "layer" or (cached := run.load_result("batchdep")) is None:
                continue
        except RunDamaged:
            continue
        bd = BatchDependence.from_dict(cached)
        differ = sum(bd.differ_from_eval.values())
        spread = max(bd.batch_stats.values()) - min(bd.batch_stats.values())
        verdict = Verdict.HOLDS if differ == 0 else Verdict.DOES_NOT_HOLD
        return Finding(verdict, f"{run.label}: {_pct(bd.eval_acc)} in eval mode and at every test batch "
                       f"size {min(bd.batch_stats)}…{max(bd.batch_stats)} (spread {100 * spread:.2f} points, "
                       f"{differ} predictions differ)", {"batch_stats": bd.batch_stats,
                                                         "differ": bd.differ_from_eval},
                       None, [run.id], recipes=[settings.recipe()])
    return Finding(Verdict.NOT_MEASURED, "", note="measure a LayerNorm run's batch dependence: Inside page, "
                   "or `python -m cifar_app batchdep RUN`")


def _ln_params(ev: Evidence) -> Finding:
    from .model import PARAM_BUDGET, norm_budget_rows

    # the seed's network is the seed-plain recipe's; today's default is shown beside it
    rows = {r["normalization"]: r for r in norm_budget_rows(arch=recipe_values("seed-plain")["arch"])}
    seed, seed_off, ours = (rows["LayerNorm [C,H,W], affine (seed)"],
                            rows["LayerNorm [C,H,W], no affine (seed)"], rows["LayerNorm"])
    now = {r["normalization"]: r for r in norm_budget_rows()}["LayerNorm [C,H,W], affine (seed)"]
    verdict = Verdict.HOLDS if not seed["fits the budget"] else Verdict.DOES_NOT_HOLD
    figure = (f"in the seed's network, nn.LayerNorm([C,H,W]) with its affine: {seed['network']:,} "
              f"parameters ({seed['parameters in the norm layers']:,} in the norms), over the "
              f"{PARAM_BUDGET:,} budget; without: {seed_off['network']:,}; the lab's GroupNorm(1, C): "
              f"{ours['network']:,} (in today's default, separable, network: {now['network']:,} with "
              "the affine)")
    evidence: dict = {"networks": {k: r["network"] for k, r in rows.items()}, "default": now["network"]}
    res = ev.experiments.get("seed-layernorm")
    note, runs, exp = "accuracy: not measured yet (seed-layernorm preset)", [], None
    if res is not None:
        accs = _by(res, "norm")
        if "layer" in accs and "layer-chw" in accs:
            (m1, s1), (m2, s2) = _mean_sd(accs["layer-chw"]), _mean_sd(accs["layer"])
            figure += (f"; accuracy (seed-layernorm preset): the seed's without affine {100 * m1:.2f} ± "
                       f"{100 * s1:.2f}%, the lab's {100 * m2:.2f} ± {100 * s2:.2f}%")
            evidence["accuracy"] = accs
            note, runs, exp = ev.source("seed-layernorm"), _runs(res), res.experiment
    return Finding(verdict, figure, evidence, exp, runs, note=note)


CLAIMS: tuple[Claim, ...] = (
    Claim("bn-speed", "BN: improved training speed … faster convergence", "seeds",
          "holds when BN reaches 70% test accuracy in fewer epochs on average than no normalization "
          "(a seed that never reaches it counts as never); the time to get there, which also depends "
          "on each norm's cost per epoch, is shown beside it", _speed),
    Claim("bn-ics", "BN: reducing the internal covariate shift problem", "landscape",
          "holds when BN's internal covariate shift, 1 − cos(G, G′) (Santurkar et al.'s Definition "
          "2.1, median over the probe steps after step 0, mean over the C blocks), is below none's "
          "by more than 2 SE of the seeds; does not hold when it is above by as much", _ics),
    Claim("bn-regularizes", "BN: regularization effect … reducing overfitting", "regularization",
          "holds when BN's train − test accuracy gap (5,000 images, no augmentation) is smaller than "
          "none's by more than 2 SE of the seeds; GN's and LN's gaps are shown beside it", _regularizes),
    Claim("bn-higher-lr", "BN: allows for higher learning rates … without causing the gradients to explode",
          "learning-rate", "holds when BN's best max LR is at least 2× none's, its accuracy there is "
          "above none's best by more than 2 SE of the seed noise, and (when the landscape preset is "
          "measured) its effective β-smoothness is no larger than none's", _higher_lr),
    Claim("no-norm-struggles", "without Batch Normalization the model was struggling", "seeds",
          "holds when BN's mean accuracy over seeds exceeds none's by more than 2 SE, or a seed "
          "without a norm collapses to chance", _struggles_without),
    Claim("gn-small-batches", "GN: reduced batch size dependency … effective for small batch sizes",
          "batch-size", "holds when BN loses more accuracy than GN from the largest batch to the "
          "smallest, by more than 2 SE of the seed noise", _loses_less_than_bn("group")),
    Claim("gn-channels", "GN: captures inter-channel correlations", "groups",
          "holds when the best G strictly between 1 (LN) and C (IN) beats both by more than 2 SE "
          "(pooled spread of the seeds); does not hold when LN or IN beats it by as much", _groups),
    Claim("ln-batch-invariant", "LN: invariant to batch size", "batch dependence at inference",
          "holds when a LayerNorm run gives the same predictions in eval mode and at every test batch "
          "size (none differs)", _ln_invariant),
    Claim("ln-stable", "LN: stable performance across different batch sizes and training scenarios",
          "batch-size", "holds when LN loses less accuracy than BN from the largest batch to the "
          "smallest, by more than 2 SE of the seed noise", _loses_less_than_bn("layer")),
    Claim("ln-params", "LN: the number of parameters gone extremely high … made elementwise_affine=False",
          "seed-layernorm", "holds when the seed's nn.LayerNorm([C, H, W]) with its affine puts the "
          "network over the 50,000-parameter budget (the model registry); the accuracy of the variant "
          "that fits is shown beside it", _ln_params),
    Claim("ln-rnn", "LN: suitable for RNNs and LLMs", "none",
          "not testable with this CNN: the lab has no recurrent or language model",
          lambda ev: Finding(Verdict.NOT_TESTABLE, "", note="the lab trains one CNN on images")),
)


def evaluate(store: RunStore, shipped: Path | None = REFERENCE_EXPERIMENTS) -> list[dict]:
    """Every claim with its computed verdict, in the seed's order: ``{"id", "claim", "verdict",
    "rule", "figure", "evidence", "experiment", "runs", "note", "recipes"}`` (``recipes``: the named
    recipes the experiment that tests it ran, ``TrainSettings.recipe``). ``shipped``: the folder of
    shipped results (None: only this store's)."""
    ev = Evidence.gather(store, shipped)
    rows = []
    for c in CLAIMS:
        f = c.judge(ev)
        rows.append({"id": c.id, "claim": c.claim, "tested_by": c.experiment, "verdict": f.verdict,
                     "rule": c.rule, "figure": f.figure, "evidence": f.evidence,
                     "experiment": f.experiment, "runs": f.runs, "note": f.note,
                     "recipes": _recipes(ev, f)})
    return rows


def _recipes(ev: Evidence, f: Finding) -> list[str]:
    """The named recipes of what a finding was computed from: those its judge read from the runs,
    else its experiment's points; [] when nothing was measured."""
    if f.verdict in (Verdict.NOT_MEASURED, Verdict.NOT_TESTABLE):
        return []
    if f.recipes is not None:
        return sorted(set(f.recipes))
    res = next((r for r in ev.experiments.values() if f.experiment and r.experiment == f.experiment), None)
    return res.recipes() if res is not None else []


def other_recipes(row: dict) -> list[str]:
    """The recipes other than today's default that a claim's verdict was measured on (the preset
    ran before the default changed): [] when it was measured on the default."""
    return [r for r in row["recipes"] if r != DEFAULT_RECIPE]


def recipe_note(row: dict) -> str:
    """'' when a claim was measured on today's default recipe; else what it was measured on."""
    others = other_recipes(row)
    if not others:
        return ""
    preset = row["tested_by"]
    again = f": run the {preset} preset to measure it on the default" if preset in PRESETS else ""
    return f"measured on the {', '.join(others)} recipe, not today's default{again}"
