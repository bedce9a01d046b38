"""The statistics the verdicts rest on, on ``scipy.stats`` (and ``statsmodels`` for Holm): a leaf
module that knows nothing of runs, stores or experiments.

- ``welch``: two arms of independent values (seeds): the difference of the means with its 95%
  interval (Welch's t, unequal variances), the two-sided p, n per arm and the minimum detectable
  effect of that design;
- ``mde``: the smallest true difference a two-sided Welch test at α = 0.05 detects with 80% power,
  from the noncentral t distribution, for the standard error and degrees of freedom of the design;
- ``holm``: Holm's step-down correction, when a rule picks the best of several comparisons;
- ``decide``: the verdict a comparison supports for a claim that predicts a sign. Holds or does not
  hold only when the 95% interval excludes zero; otherwise inconclusive, saying what the design
  could have detected and, where the paper states an effect, whether it could have detected that.

No verdict without a noise estimate: fewer than two values in an arm, or no spread in either,
gives ``None`` (the caller says *inconclusive* and why).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from enum import StrEnum

import numpy as np
from scipy import optimize, stats

ALPHA = 0.05
POWER = 0.80


class Verdict(StrEnum):
    HOLDS = "holds"
    DOES_NOT_HOLD = "does not hold"
    INCONCLUSIVE = "inconclusive"
    NOT_MEASURED = "not measured yet"
    NOT_TESTABLE = "not testable here"
    BY_CONSTRUCTION = "by construction"
    DAMAGED = "evidence damaged"


@dataclass(frozen=True)
class Comparison:
    """Arm a minus arm b: ``effect`` (difference of the means) with its 95% interval ``low..high``,
    the two-sided ``p``, the arms' sizes, the Welch degrees of freedom and the minimum detectable
    effect ``mde`` (80% power, two-sided α = 0.05) of this design. ``p_adjusted``: after a
    correction for picking among several (Holm), else equal to ``p``."""

    effect: float
    low: float
    high: float
    p: float
    n_a: int
    n_b: int
    df: float
    se: float
    mde: float
    test: str = "Welch t"
    p_adjusted: float | None = None

    def to_dict(self) -> dict:
        return {k: _finite(v) for k, v in asdict(self).items()}

    def excludes_zero(self) -> bool:
        return self.low > 0 or self.high < 0


def _finite(v: object) -> object:
    """JSON-safe: a non-finite float becomes None (``claims --json`` is strict JSON)."""
    return None if isinstance(v, float) and not math.isfinite(v) else v


def clean(values: Sequence[float]) -> list[float]:
    """The finite values of a sequence, as floats."""
    return [float(v) for v in values if v is not None and math.isfinite(float(v))]


def mde(se: float, df: float, alpha: float = ALPHA, power: float = POWER) -> float:
    """The smallest true difference that a two-sided t test with standard error ``se`` and ``df``
    degrees of freedom rejects with probability ``power`` at level ``alpha`` (noncentral t)."""
    if not (se > 0 and df > 0):
        return math.inf
    crit = stats.t.ppf(1 - alpha / 2, df)

    def shortfall(delta: float) -> float:
        nc = delta / se
        lower = stats.nct.cdf(-crit, df, nc)  # the wrong-sign tail: negligible, NaN far out
        return stats.nct.sf(crit, df, nc) + (0.0 if math.isnan(lower) else lower) - power

    hi = se * 4
    while shortfall(hi) < 0:
        hi *= 2
    return float(optimize.brentq(shortfall, 0.0, hi, xtol=se * 1e-6))


def welch(a: Sequence[float], b: Sequence[float], alpha: float = ALPHA) -> Comparison | None:
    """Welch's t comparison of mean(a) − mean(b); None without a noise estimate (fewer than two
    values in an arm, or no spread in either)."""
    a, b = clean(a), clean(b)
    if len(a) < 2 or len(b) < 2:
        return None
    va, vb = np.var(a, ddof=1), np.var(b, ddof=1)
    if va == 0 and vb == 0:
        return None
    with warnings.catch_warnings():  # one arm without spread: scipy warns of cancellation, the result stands
        warnings.simplefilter("ignore", RuntimeWarning)
        res = stats.ttest_ind(a, b, equal_var=False)
        ci = res.confidence_interval(1 - alpha)
    se = float(math.sqrt(va / len(a) + vb / len(b)))
    df = float(res.df)
    return Comparison(
        effect=float(np.mean(a) - np.mean(b)),
        low=float(ci.low),
        high=float(ci.high),
        p=float(res.pvalue),
        n_a=len(a),
        n_b=len(b),
        df=df,
        se=se,
        mde=mde(se, df, alpha),
        p_adjusted=float(res.pvalue),
    )


def mean_interval(values: Sequence[float], alpha: float = ALPHA) -> dict:
    """One arm: its mean with the t-based 95% interval (None bounds with fewer than two values or
    no spread), and n."""
    xs = clean(values)
    if not xs:
        return {"mean": None, "low": None, "high": None, "n": 0}
    m = float(np.mean(xs))
    if len(xs) < 2 or np.var(xs) == 0:
        return {"mean": m, "low": None, "high": None, "n": len(xs)}
    low, high = stats.t.interval(1 - alpha, len(xs) - 1, loc=m, scale=stats.sem(xs))
    return {"mean": m, "low": float(low), "high": float(high), "n": len(xs)}


def divergence_rows(failed_a: int, n_a: int, failed_b: int, n_b: int, a: Sequence[float],
                    b: Sequence[float], names: tuple[str, str], scale: float, unit: str) -> list[str]:
    """What can be said of two arms when one has seeds that diverged (a bimodal arm, on which a
    t-test's interval is not interpretable): each arm's divergence rate with its exact (Clopper-
    Pearson) 95% interval and Fisher's exact test of the two; then the exact one-sided Mann-Whitney
    test of ``a`` > ``b`` on the values with a diverged seed ranked last (``a``, ``b``: the values
    as the verdict counts them), with the smallest p its sizes allow."""
    def rate(k: int, n: int) -> str:
        ci = stats.binomtest(k, n).proportion_ci(1 - ALPHA, method="exact")
        return f"{k} of {n} ({100 * ci.low:.0f}–{100 * ci.high:.0f}%)"

    fisher = stats.fisher_exact([[failed_a, n_a - failed_a], [failed_b, n_b - failed_b]]).pvalue
    rows = [f"diverged: {names[0]} {rate(failed_a, n_a)}, {names[1]} {rate(failed_b, n_b)}, exact "
            f"95% intervals; Fisher's exact p = {fisher:.2g}"]
    a, b = clean(a), clean(b)
    if a and b:
        if set(a) & set(b):  # ties across the arms: the exact null distribution by permutation
            pvalue = stats.permutation_test(
                (a, b), lambda x, y, axis: stats.mannwhitneyu(x, y, axis=axis).statistic,
                permutation_type="independent", alternative="greater", n_resamples=np.inf,
                vectorized=True).pvalue
        else:
            pvalue = stats.mannwhitneyu(a, b, alternative="greater", method="exact").pvalue
        best = 1 / math.comb(len(a) + len(b), len(a))
        rows.append(f"exact Mann-Whitney, {names[0]} > {names[1]} (a diverged seed ranked last): "
                    f"p = {pvalue:.2g} (the smallest {len(a)} vs {len(b)} seeds allow: {best:.2g})")
    return rows


def permutation(a: Sequence[float], b: Sequence[float], step: float,
                alpha: float = ALPHA) -> Comparison | None:
    """mean(a) − mean(b) for values on a grid (e.g. log2 of the largest learning rate that trains,
    ``step`` apart at the finest): the exact two-sided permutation test of the difference of means
    (every split of the pooled values), which needs no spread within an arm. The interval is
    Welch's when the arms vary, else the point itself (the grid's resolution is the caller's to
    add); the MDE is one grid step when the design can reach p < alpha at all (the arms' sizes
    allow a split that rare), else infinite. None with fewer than two values in an arm."""
    a, b = clean(a), clean(b)
    if len(a) < 2 or len(b) < 2:
        return None
    res = stats.permutation_test((a, b), lambda x, y, axis: np.mean(x, axis=axis) - np.mean(y, axis=axis),
                                 permutation_type="independent", alternative="two-sided", n_resamples=np.inf,
                                 vectorized=True)
    best_p = 2 / math.comb(len(a) + len(b), len(a))  # complete separation, two-sided
    effect = float(np.mean(a) - np.mean(b))
    w = welch(a, b, alpha)
    low, high, se, df = (w.low, w.high, w.se, w.df) if w else (effect, effect, 0.0, math.nan)
    return Comparison(effect=effect, low=low, high=high, p=float(res.pvalue), n_a=len(a), n_b=len(b), df=df,
                      se=se, mde=step if best_p < alpha else math.inf, test="exact permutation test",
                      p_adjusted=float(res.pvalue))


def holm(pvalues: Sequence[float], alpha: float = ALPHA) -> list[float]:
    """Holm-adjusted p values, in the given order."""
    from statsmodels.stats.multitest import multipletests

    if not pvalues:
        return []
    return [float(p) for p in multipletests(list(pvalues), alpha=alpha, method="holm")[1]]


def adjusted(cmp: Comparison, p_adjusted: float, alpha: float = ALPHA) -> Comparison:
    """``cmp`` with a corrected p and its interval widened to match (the Bonferroni-style level
    alpha·p/p_adjusted that gives the adjusted p the same decision)."""
    if p_adjusted <= cmp.p or cmp.p <= 0:
        return Comparison(**{**asdict(cmp), "p_adjusted": p_adjusted})
    level = alpha * cmp.p / p_adjusted
    half = stats.t.ppf(1 - level / 2, cmp.df) * cmp.se
    return Comparison(
        **{
            **asdict(cmp),
            "low": float(cmp.effect - half),
            "high": float(cmp.effect + half),
            "p_adjusted": min(1.0, p_adjusted),
        }
    )


@dataclass(frozen=True)
class Paper:
    """The effect a paper reports for a claim, in the comparison's units, and where it says so."""

    effect: float | None
    text: str
    source: str

    def to_dict(self) -> dict:
        return asdict(self)


def decide(
    cmp: Comparison | None, unit: str = "points", paper: Paper | None = None, scale: float = 1.0
) -> tuple[Verdict, str]:
    """The verdict a comparison gives a claim that predicts ``effect > 0``, and why in words.
    ``scale`` turns the comparison's units into ``unit``'s (100 for accuracy as a fraction)."""
    if cmp is None:
        return Verdict.INCONCLUSIVE, "no noise estimate: fewer than two values in an arm, or none varies"
    lo, hi, m = cmp.low * scale, cmp.high * scale, cmp.mde * scale
    unit = f" {unit}" if unit else ""

    def num(x: float) -> str:
        return f"{x:+.3g}" if math.isfinite(x) else ("+∞" if x > 0 else "−∞")

    interval = f"95% interval [{num(lo)}, {num(hi)}]{unit}"
    if cmp.low > 0:
        return Verdict.HOLDS, f"{interval} excludes 0"
    if cmp.high < 0:
        return Verdict.DOES_NOT_HOLD, f"{interval} excludes 0, on the other side"
    if not math.isfinite(m):
        return Verdict.INCONCLUSIVE, f"{interval} includes 0; with these seeds no effect can reach p < 0.05"
    why = f"{interval} includes 0; this design detects ≥ {m:.3g}{unit} (80% power)"
    if paper is not None and paper.effect is not None:
        if m > abs(paper.effect):
            why += f": underpowered, the paper's effect is {paper.effect:.3g}{unit}"
        elif hi < paper.effect:
            why += f"; the paper's effect, {paper.effect:.3g}{unit}, lies above the interval"
    return Verdict.INCONCLUSIVE, why


def seeds_for(
    target_mde: float, sd: float, alpha: float = ALPHA, power: float = POWER, most: int = 1000
) -> int | None:
    """Seeds per arm (equal arms, spread ``sd`` in each) for a Welch test to detect ``target_mde``:
    what a row states as the compute an inconclusive design would need. None beyond ``most``."""
    if not (sd > 0 and target_mde > 0):
        return None
    for n in range(2, most + 1):
        se = sd * math.sqrt(2 / n)
        if mde(se, 2 * n - 2, alpha, power) <= target_mde:
            return n
    return None
