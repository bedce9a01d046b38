"""The verdicts' statistics (cifar_app/core/stats.py) against scipy's and statsmodels' own answers."""

from __future__ import annotations

import math
import random

import pytest
from scipy import stats as sps

from cifar_app.core import stats


def test_welch_is_scipys_welch_t_with_its_interval():
    a, b = [0.84, 0.845, 0.846], [0.806, 0.814, 0.806]
    c = stats.welch(a, b)
    ref = sps.ttest_ind(a, b, equal_var=False)
    ci = ref.confidence_interval(0.95)
    assert c.effect == pytest.approx(sum(a) / 3 - sum(b) / 3)
    assert (c.low, c.high, c.p, c.df) == pytest.approx((ci.low, ci.high, ref.pvalue, ref.df))
    assert (c.n_a, c.n_b) == (3, 3)


def test_no_noise_estimate_is_no_comparison():
    assert stats.welch([0.5], [0.4, 0.41]) is None
    assert stats.welch([0.5, 0.5], [0.4, 0.4]) is None
    assert stats.welch([0.5, float("nan"), None], [0.4, 0.41]) is None  # non-finite values are not data
    assert stats.decide(None)[0] == stats.Verdict.INCONCLUSIVE


def test_the_mde_is_statsmodels_power_solution_for_equal_arms():
    from statsmodels.stats.power import TTestIndPower

    for n in (3, 5, 10):
        se = math.sqrt(2 / n)  # sigma = 1
        d = TTestIndPower().solve_power(nobs1=n, alpha=0.05, power=0.8, ratio=1.0)
        assert stats.mde(se, 2 * n - 2) == pytest.approx(d, rel=1e-3)


def test_holm_matches_its_definition_and_adjusted_widens_the_interval():
    assert stats.holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    c = stats.welch([0.84, 0.845, 0.846], [0.806, 0.814, 0.806])
    wide = stats.adjusted(c, c.p * 3)
    assert wide.low < c.low and wide.high > c.high and wide.p_adjusted == pytest.approx(c.p * 3)


def test_decide_never_says_holds_or_not_while_the_interval_includes_zero():
    rng = random.Random(0)
    for _ in range(300):
        a = [rng.gauss(0.0, 1.0) for _ in range(rng.randint(2, 5))]
        b = [rng.gauss(rng.choice([0.0, 1.0, -2.0]), rng.uniform(0.1, 2)) for _ in range(rng.randint(2, 5))]
        c = stats.welch(a, b)
        verdict, _ = stats.decide(c)
        if verdict in (stats.Verdict.HOLDS, stats.Verdict.DOES_NOT_HOLD):
            assert c.excludes_zero()
            assert (c.low > 0) == (verdict == stats.Verdict.HOLDS)


def test_underpowered_says_what_the_paper_needs():
    c = stats.welch([0.50, 0.53, 0.47], [0.49, 0.52, 0.48])
    verdict, why = stats.decide(c, paper=stats.Paper(1.2, "x", "y"), scale=100)
    assert verdict == stats.Verdict.INCONCLUSIVE and "underpowered" in why
    assert stats.seeds_for(1.2, 2.0) > stats.seeds_for(2.4, 2.0) >= 2


def test_permutation_on_a_grid_needs_no_spread_but_enough_seeds():
    four = stats.permutation([0.68] * 4, [-4.3] * 4, 1.0)
    assert four.p == pytest.approx(2 / 70) and four.mde == 1.0 and four.low == four.effect
    three = stats.permutation([0.68] * 3, [-4.3] * 3, 1.0)
    assert three.p == pytest.approx(0.1) and math.isinf(three.mde)


def test_an_arms_mean_interval():
    iv = stats.mean_interval([1.0, 2.0, 3.0])
    lo, hi = sps.t.interval(0.95, 2, loc=2.0, scale=sps.sem([1.0, 2.0, 3.0]))
    assert (iv["mean"], iv["low"], iv["high"], iv["n"]) == pytest.approx((2.0, lo, hi, 3))
    assert stats.mean_interval([1.0])["low"] is None
