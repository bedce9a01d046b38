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

from .experiments import Experiment, ExperimentStore, PointStatus
from .runstore import RunDamaged, RunNotFound, RunStore
from .states import RunState

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


@dataclass
class Evidence:
    """What the claims are judged on, gathered once from the stores."""

    exps: ExperimentStore
    experiments: dict[str, tuple[Experiment, list[PointStatus]]]  # preset -> newest with results
    noise: dict[str, tuple[float, int]]                            # norm -> (std over seeds, seeds)

    @classmethod
    def gather(cls, store: RunStore) -> Evidence:
        exps = ExperimentStore(store)
        found: dict[str, tuple[Experiment, list[PointStatus]]] = {}
        for exp in exps.list():  # newest first
            if exp.preset and exp.preset not in found:
                points = exps.point_statuses(exp)
                if any(p.state == RunState.COMPLETED for p in points):
                    found[exp.preset] = (exp, points)
        noise = {}
        if "seeds" in found:
            for norm, accs in _by(found["seeds"][1], "norm").items():
                if len(accs) > 1:
                    noise[norm] = (statistics.stdev(accs), len(accs))
        return cls(exps, found, noise)

    def se_single(self, a: str, b: str) -> float | None:
        """One standard error of the difference of two single-seed results of norms a and b."""
        if a in self.noise and b in self.noise:
            return (self.noise[a][0] ** 2 + self.noise[b][0] ** 2) ** 0.5
        return None


@dataclass(frozen=True)
class Claim:
    id: str
    claim: str                 # the seed's words
    experiment: str            # what tests it (a preset name, or where the evidence comes from)
    rule: str                  # the rule in plain words
    judge: Callable[[Evidence], Finding]
    measure: str = ""          # how to measure it, when it is not measured yet


def _completed(points: list[PointStatus]) -> list[PointStatus]:
    return [p for p in points if p.state == RunState.COMPLETED and p.final_test_acc is not None]


def _by(points: list[PointStatus], key: str) -> dict:
    """Final test accuracies of completed points grouped by the setting ``key``."""
    out: dict = {}
    for p in _completed(points):
        out.setdefault(p.settings[key], []).append(p.final_test_acc)
    return out


def _pct(x: float) -> str:
    return f"{100 * x:.2f}%"


def _missing(preset: str) -> Finding:
    return Finding(Verdict.NOT_MEASURED, "", note=f"run the {preset} preset: Experiments page, or "
                   f"`python -m cifar_app sweep --preset {preset}`")


def _judge_difference(diff: float, se: float | None, better: bool) -> tuple[Verdict, str]:
    """``better``: the claim's direction holds on the point estimates."""
    if se is None:
        return (Verdict.HOLDS if better else Verdict.DOES_NOT_HOLD), "one seed, no noise estimate yet"
    noise = f"2 SE = {200 * se:.2f} points (seeds preset)"
    if abs(diff) <= 2 * se:
        return Verdict.WITHIN_NOISE, noise
    return (Verdict.HOLDS if better else Verdict.DOES_NOT_HOLD), noise


# ---------------------------------------------------------------------------- the rules


def _speed(ev: Evidence) -> Finding:
    if "seeds" not in ev.experiments:
        return _missing("seeds")
    exp, points = ev.experiments["seeds"]
    reach: dict[str, list[float]] = {}
    per_epoch: dict[str, list[float]] = {}
    runs = []
    for p in _completed(points):
        try:
            epochs = ev.exps.runs.get(p.run_id).metrics().epochs
        except (RunNotFound, RunDamaged):
            continue
        runs.append(p.run_id)
        first = next((e.epoch for e in epochs if e.test_acc >= 0.70), None)
        reach.setdefault(p.settings["norm"], []).append(float(first) if first else float("inf"))
        per_epoch.setdefault(p.settings["norm"], []).append(statistics.fmean(e.seconds for e in epochs))
    if "batch" not in reach or "none" not in reach:
        return _missing("seeds")
    bn, none = reach["batch"], reach["none"]
    bn_mean = statistics.fmean(bn)
    none_reached = [x for x in none if x != float("inf")]
    faster = bn_mean < (statistics.fmean(none) if len(none_reached) == len(none) else float("inf"))
    figure = (f"BN reaches 70% at epoch {bn_mean:.1f} on average; without a norm "
              f"{len(none_reached)} of {len(none)} seeds reach it"
              + (f" (at epoch {statistics.fmean(none_reached):.1f})" if none_reached else "")
              + f"; s/epoch BN {statistics.fmean(per_epoch['batch']):.1f}, none "
              f"{statistics.fmean(per_epoch['none']):.1f}")
    return Finding(Verdict.HOLDS if faster else Verdict.DOES_NOT_HOLD, figure,
                   {"epochs_to_70": {k: [None if x == float("inf") else x for x in v]
                                     for k, v in reach.items()},
                    "seconds_per_epoch": {k: statistics.fmean(v) for k, v in per_epoch.items()}},
                   exp.id, runs, note="fewer epochs; wall time per epoch is shown beside it")


def _higher_lr(ev: Evidence) -> Finding:
    if "learning-rate" not in ev.experiments:
        return _missing("learning-rate")
    exp, points = ev.experiments["learning-rate"]
    best: dict[str, tuple[float, float]] = {}  # norm -> (best lr, accuracy there)
    for p in _completed(points):
        norm, lr, acc = p.settings["norm"], p.settings["max_lr"], p.final_test_acc
        if norm not in best or acc > best[norm][1]:
            best[norm] = (lr, acc)
    if "batch" not in best or "none" not in best:
        return _missing("learning-rate")
    (bn_lr, bn_acc), (no_lr, no_acc) = best["batch"], best["none"]
    diff = bn_acc - no_acc
    verdict, noise = _judge_difference(diff, ev.se_single("batch", "none"), bn_lr >= 2 * no_lr and diff > 0)
    if bn_lr < 2 * no_lr:
        verdict = Verdict.DOES_NOT_HOLD
    return Finding(verdict, f"best max LR: BN {bn_lr:g} ({_pct(bn_acc)}), none {no_lr:g} ({_pct(no_acc)}); "
                   f"{100 * diff:+.2f} points", {"best": best}, exp.id,
                   [p.run_id for p in _completed(points)], note=f"one seed per point; {noise}")


def _struggles_without(ev: Evidence) -> Finding:
    if "seeds" not in ev.experiments:
        return _missing("seeds")
    exp, points = ev.experiments["seeds"]
    groups = _by(points, "norm")
    if len(groups.get("batch", [])) < 2 or len(groups.get("none", [])) < 2:
        return _missing("seeds")
    bn, none = groups["batch"], groups["none"]
    diff = statistics.fmean(bn) - statistics.fmean(none)
    se = (statistics.stdev(bn) ** 2 / len(bn) + statistics.stdev(none) ** 2 / len(none)) ** 0.5
    collapsed = sum(a <= COLLAPSED for a in none)
    verdict, noise = _judge_difference(diff, se, diff > 0)
    if collapsed and verdict == Verdict.WITHIN_NOISE:
        verdict = Verdict.HOLDS  # a collapse is a struggle however wide the spread it makes
    return Finding(verdict, f"BN {_pct(statistics.fmean(bn))} ± {100 * statistics.stdev(bn):.2f}, none "
                   f"{_pct(statistics.fmean(none))} ± {100 * statistics.stdev(none):.2f}; {collapsed} of "
                   f"{len(none)} seeds without a norm collapse to chance", {"batch": bn, "none": none},
                   exp.id, [p.run_id for p in _completed(points)], note=noise)


def _batch_size_drop(ev: Evidence) -> dict[str, float] | None:
    if "batch-size" not in ev.experiments:
        return None
    by: dict[str, dict[int, float]] = {}
    for p in _completed(ev.experiments["batch-size"][1]):
        by.setdefault(p.settings["norm"], {})[p.settings["batch_size"]] = p.final_test_acc
    return {n: accs[max(accs)] - accs[min(accs)] for n, accs in by.items() if len(accs) > 1}


def _loses_less_than_bn(norm: str) -> Callable[[Evidence], Finding]:
    """The rule of the batch-size claims: ``norm`` loses less accuracy than BN from the largest
    batch to the smallest, beyond the seed noise."""
    short = {"group": "GN", "layer": "LN"}[norm]

    def judge(ev: Evidence) -> Finding:
        drops = _batch_size_drop(ev)
        if not drops or "batch" not in drops or norm not in drops:
            return _missing("batch-size")
        exp, points = ev.experiments["batch-size"]
        diff = drops["batch"] - drops[norm]
        verdict, noise = _judge_difference(diff, ev.se_single("batch", norm), diff > 0)
        return Finding(verdict, f"accuracy lost from the largest to the smallest batch: BN "
                       f"{100 * drops['batch']:+.2f}, {short} {100 * drops[norm]:+.2f} points",
                       {"drop": drops}, exp.id, [p.run_id for p in _completed(points)],
                       note=f"one seed per point; {noise}")

    return judge


def _ln_invariant(ev: Evidence) -> Finding:
    from .batchdep import BatchDependence

    for run in ev.exps.runs.list():
        try:
            if run.settings().norm != "layer" or (cached := run.load_result("batchdep")) is None:
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
                       None, [run.id])
    return Finding(Verdict.NOT_MEASURED, "", note="measure a LayerNorm run's batch dependence: Inside page, "
                   "or `python -m cifar_app batchdep RUN`")


def _ln_params(ev: Evidence) -> Finding:
    from .model import PARAM_BUDGET, norm_budget_rows

    rows = {r["normalization"]: r for r in norm_budget_rows()}
    seed, seed_off, ours = (rows["LayerNorm [C,H,W], affine (seed)"],
                            rows["LayerNorm [C,H,W], no affine (seed)"], rows["LayerNorm"])
    verdict = Verdict.HOLDS if not seed["fits the budget"] else Verdict.DOES_NOT_HOLD
    return Finding(verdict, f"nn.LayerNorm([C,H,W]) with its affine: {seed['network']:,} parameters "
                   f"({seed['parameters in the norm layers']:,} in the norms), over the {PARAM_BUDGET:,} "
                   f"budget; without: {seed_off['network']:,}; the lab's GroupNorm(1, C): "
                   f"{ours['network']:,}",
                   {"networks": {k: r["network"] for k, r in rows.items()}})


def _not_yet(what: str) -> Callable[[Evidence], Finding]:
    return lambda ev: Finding(Verdict.NOT_MEASURED, "", note=what)


CLAIMS: tuple[Claim, ...] = (
    Claim("bn-speed", "BN: improved training speed … faster convergence", "seeds",
          "holds when BN reaches 70% test accuracy in fewer epochs on average than no normalization "
          "(a seed that never reaches it counts as never)", _speed),
    Claim("bn-ics", "BN: reducing the internal covariate shift problem", "ICS probe (Santurkar et al.)",
          "not decided yet: needs the ICS and loss-landscape probes", _not_yet(
              "needs the internal-covariate-shift probe (Santurkar et al. 2018, Definition 2.1), not in "
              "the lab yet")),
    Claim("bn-regularizes", "BN: regularization effect … reducing overfitting", "regularization preset",
          "not decided yet: needs the small-data regularization preset", _not_yet(
              "needs the regularization preset (5,000 images, no augmentation), not in the lab yet")),
    Claim("bn-higher-lr", "BN: allows for higher learning rates … without causing the gradients to explode",
          "learning-rate", "holds when BN's best max LR is at least 2× none's and its accuracy there is "
          "above none's best by more than 2 SE of the seed noise", _higher_lr),
    Claim("no-norm-struggles", "without Batch Normalization the model was struggling", "seeds",
          "holds when BN's mean accuracy over seeds exceeds none's by more than 2 SE, or a seed "
          "without a norm collapses to chance", _struggles_without),
    Claim("gn-small-batches", "GN: reduced batch size dependency … effective for small batch sizes",
          "batch-size", "holds when BN loses more accuracy than GN from the largest batch to the "
          "smallest, by more than 2 SE of the seed noise", _loses_less_than_bn("group")),
    Claim("gn-channels", "GN: captures inter-channel correlations", "groups preset",
          "not decided yet: needs the groups preset (G from 1 = LN to C = IN)", _not_yet(
              "needs the groups preset (GroupNorm with G from 1 to C), not in the lab yet")),
    Claim("ln-batch-invariant", "LN: invariant to batch size", "batch dependence at inference",
          "holds when a LayerNorm run gives the same predictions in eval mode and at every test batch "
          "size (none differs)", _ln_invariant),
    Claim("ln-stable", "LN: stable performance across different batch sizes and training scenarios",
          "batch-size", "holds when LN loses less accuracy than BN from the largest batch to the "
          "smallest, by more than 2 SE of the seed noise", _loses_less_than_bn("layer")),
    Claim("ln-params", "LN: the number of parameters gone extremely high … made elementwise_affine=False",
          "the model registry", "holds when the seed's nn.LayerNorm([C, H, W]) with its affine puts the "
          "network over the 50,000-parameter budget", _ln_params),
    Claim("ln-rnn", "LN: suitable for RNNs and LLMs", "none",
          "not testable with this CNN: the lab has no recurrent or language model",
          lambda ev: Finding(Verdict.NOT_TESTABLE, "", note="the lab trains one CNN on images")),
)


def evaluate(store: RunStore) -> list[dict]:
    """Every claim with its computed verdict, in the seed's order: ``{"id", "claim", "verdict",
    "rule", "figure", "evidence", "experiment", "runs", "note"}``."""
    ev = Evidence.gather(store)
    rows = []
    for c in CLAIMS:
        f = c.judge(ev)
        rows.append({"id": c.id, "claim": c.claim, "tested_by": c.experiment, "verdict": f.verdict,
                     "rule": c.rule, "figure": f.figure, "evidence": f.evidence,
                     "experiment": f.experiment, "runs": f.runs, "note": f.note})
    return rows
