"""What every claim's rule works with: the evidence gathered once (``Evidence``), what a rule
finds (``Finding``), a claim (``Claim``), and the helpers the rules share (failed points at chance,
notes, the compute a conclusive design would take)."""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from cifar_app.core import norms
from cifar_app.core.stats import (
    Comparison,
    Paper,
    Verdict,
    decide,
    seeds_for,
)
from cifar_app.lab.experiments import ExperimentStore
from cifar_app.store.results import ExperimentResults, PointResult, load_shipped_results
from cifar_app.store.runstore import RunStore
from cifar_app.store.states import RunState

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
    judge: Callable[[Evidence, Paper | None], Finding]  # given the claim's paper
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


def counted_accuracy(p: PointResult) -> float | None:
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
    value: Callable[[PointResult], float | None] = counted_accuracy,
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

